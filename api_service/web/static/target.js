// One target: range presets, the chart, statistics and events of the range.

import { fetchEvents, fetchSeries, fetchStats, getTarget } from "./api.js";
import { RttChart } from "./chart.js";
import {
  PRESETS,
  clampRange,
  formatMs,
  formatPct,
  formatSpan,
  hopChanges,
  panRange,
  pointsFor,
  presetRange,
  routeHash,
  toColumns,
  zoomRange,
} from "./timeseries.js";

const MAX_EVENTS_LISTED = 200;
const EVENT_NAMES = {
  loss: "packet loss",
  hop_change: "hop change",
  latency_shift: "latency shift",
  address_change: "address change",
};

export class TargetView {
  constructor(root, { notify }) {
    this.root = root;
    this.notify = notify;
    this.$ = (sel) => root.querySelector(sel);
    this.chart = null;
    this.id = null;
    this.range = null; // {preset} or {from, to}
    this.seq = 0;
    this.abort = null;
    for (const name of Object.keys(PRESETS)) {
      const b = document.createElement("button");
      b.textContent = name;
      b.dataset.preset = name;
      b.addEventListener("click", () => this.go({ preset: name }));
      this.$(".presets").append(b);
    }
    this.$("#pan-back").addEventListener("click", () =>
      this.step((f, t, n) => panRange(f, t, -0.5, n)),
    );
    this.$("#pan-fwd").addEventListener("click", () =>
      this.step((f, t, n) => panRange(f, t, 0.5, n)),
    );
    this.$("#zoom-out").addEventListener("click", () =>
      this.step((f, t, n) => zoomRange(f, t, 2, n)),
    );
    this.$("#events").addEventListener("click", (e) => this.onEventClick(e));
  }

  async show(route) {
    this.root.hidden = false;
    if (!this.chart) {
      this.chart = new RttChart(this.$("#chart"), {
        onRange: (from, to) => this.go({ from, to }),
        onReset: () => this.go({ preset: this.lastPreset || "24h" }),
      });
    }
    const range = route.preset ? { preset: route.preset } : { from: route.from, to: route.to };
    if (route.id !== this.id) {
      this.id = route.id;
      this.$("#target-title").textContent = `target ${route.id}`;
      getTarget(route.id).then(
        (t) => {
          const probed = t.address || t.hostname || t.url;
          this.$("#target-title").textContent = t.name ? `${t.name} (${probed})` : probed;
          this.$("#target-state").textContent = `${t.state}, every ${t.interval_s} s`;
        },
        (err) => this.notify(`Target ${route.id}: ${err.message}`, "error"),
      );
    }
    await this.load(range);
  }

  hide() {
    this.root.hidden = true;
    this.abort?.abort();
  }

  /** The current [from, to] in ms. */
  bounds(now = Date.now()) {
    if (this.range.preset) return presetRange(this.range.preset, now);
    return [this.range.from, this.range.to];
  }

  go(range) {
    const now = Date.now();
    const next = range.preset
      ? range
      : (([from, to]) => ({ from, to }))(clampRange(range.from, range.to, now));
    history.replaceState(null, "", routeHash(this.id, next));
    return this.load(next);
  }

  step(move) {
    const [from, to] = this.bounds();
    const [lo, hi] = move(from, to, Date.now());
    return this.go({ from: lo, to: hi });
  }

  async load(range) {
    this.range = range;
    if (range.preset) this.lastPreset = range.preset;
    for (const b of this.$(".presets").children)
      b.classList.toggle("on", b.dataset.preset === range.preset);
    const seq = ++this.seq;
    this.abort?.abort();
    this.abort = new AbortController();
    const signal = this.abort.signal;
    const [from, to] = this.bounds();
    const points = pointsFor(this.chart.plotWidth);
    this.$("#range-label").textContent =
      `${new Date(from).toLocaleString()} – ${new Date(to).toLocaleString()} (${formatSpan(to - from)})`;
    const chartEl = this.$("#chart");
    chartEl.dataset.state = "loading";
    const started = performance.now();
    const events = this.loadEvents(from, to, signal, seq);
    const stats = this.loadStats(from, to, signal, seq);
    try {
      const series = await fetchSeries(this.id, from, to, points, signal);
      if (seq !== this.seq) return;
      this.chart.show(toColumns(series), hopChanges(series), from, to);
      Object.assign(chartEl.dataset, {
        state: "drawn",
        from: String(from),
        to: String(to),
        points: String(series.points.length),
        tier: series.tier,
        drawMs: (performance.now() - started).toFixed(1),
      });
      performance.mark("pingtrack:chart-drawn");
      const pings = series.points.reduce((n, p) => n + p.count, 0);
      this.$("#tier-label").textContent = pings
        ? `${series.points.length} points of ${formatSpan(series.bucket_s * 1000)} from ${series.tier}`
        : "no pings in this range";
    } catch (err) {
      if (err.name === "AbortError") return;
      chartEl.dataset.state = "error";
      this.notify(`Series: ${err.message}`, "error");
    }
    await Promise.allSettled([events, stats]);
    // Everything of this range is shown: tests and tools wait on this mark.
    if (seq === this.seq) this.root.dataset.settled = String(from);
  }

  async loadStats(from, to, signal, seq) {
    const out = this.$("#stats");
    try {
      const s = await fetchStats(this.id, from, to, signal);
      if (seq !== this.seq) return;
      const figures = [
        ["pings", s.count.toLocaleString()],
        ["availability", formatPct(s.availability_pct)],
        ["loss", formatPct(s.loss_pct)],
        [
          "min / avg / max",
          `${formatMs(s.min_ms)} / ${formatMs(s.avg_ms)} / ${formatMs(s.max_ms)}`,
        ],
        [
          "p50 / p95 / p99",
          `${formatMs(s.p50_ms)} / ${formatMs(s.p95_ms)} / ${formatMs(s.p99_ms)}`,
        ],
        ["jitter", formatMs(s.jitter_ms)],
        ["hop changes", s.hop_changes ?? "–"],
        ["loss runs", s.loss_runs ?? "–"],
      ];
      out.replaceChildren(...figures.flatMap(([k, v]) => [el("dt", k), el("dd", String(v))]));
    } catch (err) {
      if (err.name === "AbortError" || seq !== this.seq) return;
      out.replaceChildren(
        el("dd", err.status === 404 ? "Statistics are not available from this API." : err.message),
      );
    }
  }

  async loadEvents(from, to, signal, seq) {
    const out = this.$("#events");
    try {
      const answer = await fetchEvents(this.id, from, to, signal);
      if (seq !== this.seq) return;
      const events = answer.events
        .slice()
        .sort((a, b) => Date.parse(b.start) - Date.parse(a.start));
      if (events.length === 0) {
        out.replaceChildren(el("p", "No events in this range."));
        return;
      }
      const rows = events.slice(0, MAX_EVENTS_LISTED).map((e) => {
        const tr = el("tr");
        tr.dataset.start = String(Date.parse(e.start));
        tr.dataset.end = String(Date.parse(e.end));
        tr.className = e.kind;
        const size =
          e.kind === "address_change"
            ? `${e.old ?? "unresolved"} → ${e.new ?? "unresolved"}`
            : e.kind === "latency_shift" && e.magnitude > 0
              ? `+${e.magnitude} ${e.unit}`
              : `${e.magnitude} ${e.unit}`;
        tr.append(
          el("td", new Date(e.start).toLocaleString()),
          el("td", formatSpan(Math.max(0, Date.parse(e.end) - Date.parse(e.start)))),
          el("td", EVENT_NAMES[e.kind] ?? e.kind),
          el("td", size),
        );
        return tr;
      });
      const table = el("table");
      table.append(el("thead"), el("tbody"));
      table.tHead.append(el("tr"));
      for (const h of ["start", "lasted", "kind", "size"]) table.tHead.rows[0].append(el("th", h));
      table.tBodies[0].append(...rows);
      const hidden = events.length - MAX_EVENTS_LISTED;
      const more = hidden > 0 ? [el("p", `${hidden} older events not listed: zoom in.`)] : [];
      out.replaceChildren(table, ...more);
    } catch (err) {
      if (err.name === "AbortError" || seq !== this.seq) return;
      // A 404 here means an API without the events endpoint: say so, keep the rest.
      const text =
        err.status === 404 ? "Events are not available from this API." : `Events: ${err.message}`;
      out.replaceChildren(el("p", text));
    }
  }

  onEventClick(event) {
    const tr = event.target.closest("tr[data-start]");
    if (!tr) return;
    const start = Number(tr.dataset.start);
    const end = Number(tr.dataset.end);
    const pad = Math.max(60_000, (end - start) * 2);
    this.go({ from: start - pad, to: end + pad });
  }
}

function el(tag, text) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  return node;
}
