// The list of every target: one request for the list, sparklines fetched
// lazily as rows scroll into view, a few at a time.

import { actionsFor, adminAction, fetchSeries, limiter, listTargets } from "./api.js";
import { drawSparkline } from "./sparkline.js";
import { HOUR, formatMs, formatPct, recentLoss } from "./timeseries.js";

const SPARK_POINTS = 61; // one-minute buckets over the last hour
const SPARK_MAX_AGE = 60_000;
const LIST_EVERY = 10_000;

export class Overview {
  constructor(root, { notify }) {
    this.root = root;
    this.body = root.querySelector("tbody");
    this.count = root.querySelector("#count");
    this.filter = root.querySelector("#filter");
    this.notify = notify;
    this.rows = new Map(); // id -> {tr, cells, target, sparkAt}
    this.queue = limiter(4);
    this.visible = new Set();
    this.observer = new IntersectionObserver((entries) => this.onVisible(entries), {
      rootMargin: "200px 0px",
    });
    this.filter.addEventListener("input", () => this.applyFilter());
    this.body.addEventListener("click", (e) => this.onClick(e));
    this.timer = null;
  }

  async show() {
    this.root.hidden = false;
    await this.refresh();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.tick(), LIST_EVERY);
  }

  hide() {
    this.root.hidden = true;
    clearInterval(this.timer);
    this.timer = null;
  }

  async tick() {
    await this.refresh();
    for (const id of this.visible) this.loadSpark(id);
  }

  async refresh() {
    let list;
    try {
      list = await listTargets();
    } catch (err) {
      this.notify(`Cannot list targets: ${err.message}`, "error");
      return;
    }
    const started = performance.now();
    const seen = new Set();
    const fragment = document.createDocumentFragment();
    for (const target of list.items) {
      seen.add(target.id);
      let row = this.rows.get(target.id);
      if (!row) {
        row = this.makeRow(target);
        this.rows.set(target.id, row);
        fragment.append(row.tr);
        this.observer.observe(row.tr);
      }
      this.update(row, target);
    }
    this.body.append(fragment);
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        this.observer.unobserve(row.tr);
        row.tr.remove();
        this.rows.delete(id);
        this.visible.delete(id);
      }
    }
    this.applyFilter();
    this.root.dataset.rows = String(this.rows.size);
    this.root.dataset.renderMs = (performance.now() - started).toFixed(1);
    performance.mark("pingtrack:overview-rendered");
  }

  makeRow(target) {
    const tr = document.createElement("tr");
    tr.dataset.id = String(target.id);
    tr.innerHTML =
      '<td class="num"></td><td><a class="open"></a><small></small></td>' +
      '<td><span class="state"></span></td><td class="num rtt"></td>' +
      '<td class="num loss1m"></td><td class="num loss1h"></td>' +
      '<td><canvas class="spark" width="120" height="28"></canvas></td>' +
      '<td class="admin actions">' +
      '<button data-action="pause">pause</button>' +
      '<button data-action="resume">resume</button>' +
      '<button data-action="stop" class="danger">stop</button></td>';
    const cells = tr.children;
    return {
      tr,
      target,
      sparkAt: 0,
      id: cells[0],
      link: cells[1].querySelector("a"),
      address: cells[1].querySelector("small"),
      state: cells[2].firstChild,
      rtt: cells[3],
      loss1m: cells[4],
      loss1h: cells[5],
      canvas: cells[6].firstChild,
      buttons: [...cells[7].querySelectorAll("button")],
    };
  }

  update(row, target) {
    row.target = target;
    row.id.textContent = String(target.id);
    row.link.href = `#/target/${target.id}`;
    const probed = target.address || target.hostname || target.url;
    row.link.textContent = target.name || probed;
    row.address.textContent = target.name ? ` ${probed}` : "";
    row.state.textContent = target.state;
    row.state.className = `state ${target.state}`;
    const last = target.last_ping;
    row.rtt.textContent = !last ? "–" : last.lost ? "lost" : formatMs(last.rtt_ms);
    row.rtt.title = last ? new Date(last.ts).toLocaleString() : "no ping yet";
    const allowed = actionsFor(target.state);
    for (const b of row.buttons) b.disabled = !allowed.includes(b.dataset.action);
    row.tr.dataset.search = `${target.id} ${target.name || ""} ${probed} ${target.tags.join(" ")}`.toLowerCase();
  }

  applyFilter() {
    const words = this.filter.value.trim().toLowerCase();
    let shown = 0;
    for (const row of this.rows.values()) {
      const hide = words !== "" && !row.tr.dataset.search.includes(words);
      row.tr.hidden = hide;
      if (!hide) shown++;
    }
    this.count.textContent =
      shown === this.rows.size ? `${shown} targets` : `${shown} of ${this.rows.size} targets`;
  }

  onVisible(entries) {
    for (const entry of entries) {
      const id = Number(entry.target.dataset.id);
      if (entry.isIntersecting) {
        this.visible.add(id);
        this.loadSpark(id);
      } else {
        this.visible.delete(id);
      }
    }
  }

  loadSpark(id) {
    const row = this.rows.get(id);
    if (!row || row.loading || Date.now() - row.sparkAt < SPARK_MAX_AGE) return;
    row.loading = true;
    this.queue(async () => {
      const now = Date.now();
      if (!this.visible.has(id)) return; // scrolled away while waiting
      const series = await fetchSeries(id, now - HOUR, now, SPARK_POINTS);
      const loss = recentLoss(series, now);
      row.loss1m.textContent = formatPct(loss.minute);
      row.loss1h.textContent = formatPct(loss.hour);
      row.loss1h.classList.toggle("bad", (loss.hour ?? 0) > 0);
      drawSparkline(row.canvas, series);
      row.sparkAt = Date.now();
      row.tr.dataset.spark = "drawn";
    })
      .catch((err) => {
        row.loss1h.textContent = "?";
        row.loss1h.title = err.message;
      })
      .finally(() => {
        row.loading = false;
      });
  }

  async onClick(event) {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const row = this.rows.get(Number(button.closest("tr").dataset.id));
    const action = button.dataset.action;
    // Stopping is final: ask for a second click instead of a modal dialog.
    if (action === "stop" && button.dataset.armed !== "yes") {
      button.dataset.armed = "yes";
      button.textContent = "confirm stop";
      setTimeout(() => {
        button.dataset.armed = "";
        button.textContent = "stop";
      }, 4000);
      return;
    }
    button.disabled = true;
    try {
      this.update(row, await adminAction(row.target.id, action));
      this.notify(`${action}: target ${row.target.id} is now ${row.target.state}`, "ok");
    } catch (err) {
      this.notify(`${action} refused for target ${row.target.id}: ${err.message}`, "error");
      this.update(row, row.target);
    }
  }
}
