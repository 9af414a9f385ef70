// The target chart: uPlot with the min–max band, the average, loss marks and
// hop-change markers. It reports range changes (drag zoom, shift-drag pan,
// double-click) to its owner, which re-queries /series.

import { formatMs } from "./timeseries.js";

const BLUE = "#1f6feb";
const BAND = "rgba(31, 111, 235, 0.2)";
const LOSS = "209, 36, 47";
const HOP = "#bc4c00";
const HEIGHT = 360;

export class RttChart {
  constructor(root, { onRange, onReset }) {
    this.root = root;
    this.onRange = onRange;
    this.onReset = onReset;
    this.cols = { xs: [], min: [], max: [], avg: [], loss: [] };
    this.hops = [];
    this.draws = 0;
    this.pan = null;
    this.plot = new globalThis.uPlot(this.options(), this.data(), root);
    new ResizeObserver(() => this.resize()).observe(root);
  }

  /** Width of the plotting area in CSS pixels: the number of points to ask for. */
  get plotWidth() {
    return this.plot.bbox.width / (window.devicePixelRatio || 1) || this.root.clientWidth;
  }

  data() {
    const c = this.cols;
    return [c.xs, c.min, c.max, c.avg];
  }

  options() {
    return {
      width: Math.max(300, this.root.clientWidth),
      height: HEIGHT,
      scales: { x: { time: true }, ms: { range: (u, lo, hi) => [0, hi > 0 ? hi * 1.08 : 1] } },
      series: [
        {},
        { label: "min", scale: "ms", stroke: "rgba(31,111,235,0.45)", width: 1, value: rtt },
        { label: "max", scale: "ms", stroke: "rgba(31,111,235,0.45)", width: 1, value: rtt },
        { label: "avg", scale: "ms", stroke: BLUE, width: 1.5, value: rtt },
      ],
      bands: [{ series: [2, 1], fill: BAND }],
      axes: [{}, { scale: "ms", size: 64, values: (u, vals) => vals.map((v) => `${v} ms`) }],
      cursor: {
        drag: { x: true, y: false, setScale: false },
        bind: {
          mousedown: (u, t, h) => (e) => this.mousedown(e, h),
          dblclick: () => () => {
            this.onReset();
            return null;
          },
        },
      },
      hooks: {
        setSelect: [(u) => this.selected(u)],
        draw: [(u) => this.drawMarks(u)],
      },
    };
  }

  /** New data for [from, to) (ms); the x scale shows exactly the asked range. */
  show(cols, hops, from, to) {
    this.cols = cols;
    this.hops = hops;
    this.plot.setData(this.data(), false);
    this.plot.setScale("x", { min: from / 1000, max: to / 1000 });
  }

  resize() {
    const width = Math.max(300, this.root.clientWidth);
    if (Math.abs(width - this.plot.width) > 1) this.plot.setSize({ width, height: HEIGHT });
  }

  selected(u) {
    if (u.select.width < 3) return;
    const from = u.posToVal(u.select.left, "x") * 1000;
    const to = u.posToVal(u.select.left + u.select.width, "x") * 1000;
    u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
    this.onRange(from, to);
  }

  mousedown(event, handler) {
    if (!event.shiftKey) return handler(event);
    // Shift-drag pans: slide the axis while dragging, query once on release.
    const u = this.plot;
    const start = { x: event.clientX, min: u.scales.x.min, max: u.scales.x.max };
    const perPixel = (start.max - start.min) / (u.bbox.width / (window.devicePixelRatio || 1));
    const move = (e) => {
      const shift = (start.x - e.clientX) * perPixel;
      u.setScale("x", { min: start.min + shift, max: start.max + shift });
    };
    const up = (e) => {
      window.removeEventListener("mousemove", move);
      window.removeEventListener("mouseup", up);
      const shift = (start.x - e.clientX) * perPixel;
      if (Math.abs(start.x - e.clientX) > 2)
        this.onRange((start.min + shift) * 1000, (start.max + shift) * 1000);
    };
    window.addEventListener("mousemove", move);
    window.addEventListener("mouseup", up);
    return null;
  }

  drawMarks(u) {
    const { ctx, bbox } = u;
    const { xs, loss } = this.cols;
    const ratio = window.devicePixelRatio || 1;
    const half = xs.length > 1 ? (xs[1] - xs[0]) / 2 : 0;
    ctx.save();
    ctx.beginPath();
    ctx.rect(bbox.left, bbox.top, bbox.width, bbox.height);
    ctx.clip();
    // Loss: a red bar along the bottom, as tall as the share of pings lost.
    const tall = bbox.height * 0.25;
    for (let i = 0; i < xs.length; i++) {
      if (!loss[i]) continue;
      const x0 = u.valToPos(xs[i] - half, "x", true);
      const x1 = u.valToPos(xs[i] + half, "x", true);
      const h = Math.max(3 * ratio, tall * loss[i]);
      ctx.fillStyle = `rgba(${LOSS}, ${0.35 + 0.55 * loss[i]})`;
      ctx.fillRect(x0, bbox.top + bbox.height - h, Math.max(2 * ratio, x1 - x0), h);
    }
    // Hop changes: a dashed line and the new count.
    ctx.strokeStyle = HOP;
    ctx.fillStyle = HOP;
    ctx.lineWidth = ratio;
    ctx.setLineDash([4 * ratio, 3 * ratio]);
    ctx.font = `${11 * ratio}px system-ui, sans-serif`;
    for (const change of this.hops) {
      const x = u.valToPos(change.t, "x", true);
      ctx.beginPath();
      ctx.moveTo(x, bbox.top);
      ctx.lineTo(x, bbox.top + bbox.height);
      ctx.stroke();
      ctx.fillText(`${change.from}→${change.to} hops`, x + 3 * ratio, bbox.top + 12 * ratio);
    }
    ctx.restore();
    this.draws++;
    this.root.dataset.draws = String(this.draws);
  }
}

function rtt(u, v) {
  return formatMs(v);
}
