// Pure functions over /series answers and time ranges: no DOM, no fetch,
// so they are unit-tested under plain Node.

export const SECOND = 1000;
export const HOUR = 3600 * SECOND;
export const DAY = 24 * HOUR;
export const PRESETS = {
  "1h": HOUR,
  "24h": DAY,
  "7d": 7 * DAY,
  "30d": 30 * DAY,
  "1y": 365 * DAY,
  "5y": 1826 * DAY,
};
export const MIN_SPAN = 10 * SECOND;
export const MAX_SPAN = 10 * 366 * DAY;
export const MAX_POINTS = 5000;

/** Bucket count for a plot `pixels` wide: one per pixel, within what the API serves. */
export function pointsFor(pixels) {
  return Math.max(10, Math.min(MAX_POINTS, Math.round(pixels)));
}

/** uPlot columns from a /series answer: x at bucket centres (seconds), RTT in ms. */
export function toColumns(series) {
  const half = (series.bucket_s || 0) / 2;
  const n = series.points.length;
  const xs = new Array(n);
  const min = new Array(n);
  const max = new Array(n);
  const avg = new Array(n);
  const loss = new Array(n);
  for (let i = 0; i < n; i++) {
    const p = series.points[i];
    xs[i] = Date.parse(p.start) / SECOND + half;
    min[i] = p.min;
    max[i] = p.max;
    avg[i] = p.avg;
    loss[i] = p.count > 0 ? p.lost / p.count : null;
  }
  return { xs, min, max, avg, loss };
}

/** Where the hop count changes: between buckets, or inside one (hops_min != hops). */
export function hopChanges(series) {
  const out = [];
  const half = (series.bucket_s || 0) / 2;
  let prev = null;
  for (const p of series.points) {
    if (p.hops == null) continue;
    const t = Date.parse(p.start) / SECOND + half;
    const low = p.hops_min ?? p.hops;
    if (prev != null && low !== prev) out.push({ t, from: prev, to: low });
    if (low !== p.hops) out.push({ t, from: low, to: p.hops });
    prev = p.hops;
  }
  return out;
}

function lossPct(points) {
  let count = 0;
  let lost = 0;
  for (const p of points) {
    count += p.count;
    lost += p.lost;
  }
  return count === 0 ? null : (100 * lost) / count;
}

/** Loss % over the last hour and the last minute of an hour-long series ending at `nowMs`. */
export function recentLoss(series, nowMs) {
  const width = (series.bucket_s || 60) * SECOND;
  const minute = series.points.filter((p) => Date.parse(p.start) + width > nowMs - 60 * SECOND);
  return { hour: lossPct(series.points), minute: lossPct(minute) };
}

/** [from, to] of a preset ending now. */
export function presetRange(name, nowMs) {
  const span = PRESETS[name];
  if (span === undefined) throw new Error(`unknown range preset ${name}`);
  return [nowMs - span, nowMs];
}

/** Keep a range sane: at least MIN_SPAN, at most MAX_SPAN, never past now. */
export function clampRange(from, to, nowMs) {
  let span = Math.min(MAX_SPAN, Math.max(MIN_SPAN, to - from));
  const mid = (from + to) / 2;
  let lo = mid - span / 2;
  let hi = mid + span / 2;
  if (hi > nowMs) {
    hi = nowMs;
    lo = hi - span;
  }
  return [Math.round(lo), Math.round(hi)];
}

/** The range moved by `fraction` of its span (negative: into the past). */
export function panRange(from, to, fraction, nowMs) {
  const shift = (to - from) * fraction;
  return clampRange(from + shift, to + shift, nowMs);
}

/** The range widened (factor > 1) or narrowed around its middle. */
export function zoomRange(from, to, factor, nowMs) {
  const mid = (from + to) / 2;
  const half = ((to - from) * factor) / 2;
  return clampRange(mid - half, mid + half, nowMs);
}

export function formatMs(v) {
  if (v == null || Number.isNaN(v)) return "–";
  if (v >= 100) return `${v.toFixed(0)} ms`;
  if (v >= 10) return `${v.toFixed(1)} ms`;
  return `${v.toFixed(2)} ms`;
}

export function formatPct(v) {
  if (v == null || Number.isNaN(v)) return "–";
  if (v === 0) return "0 %";
  if (v < 0.1) return "<0.1 %";
  return `${v.toFixed(v < 10 ? 1 : 0)} %`;
}

export function formatSpan(ms) {
  const units = [
    [365 * DAY, "y"],
    [DAY, "d"],
    [HOUR, "h"],
    [60 * SECOND, "min"],
    [SECOND, "s"],
  ];
  for (const [size, unit] of units) {
    if (ms >= size) {
      const n = ms / size;
      return `${n >= 10 || Number.isInteger(n) ? n.toFixed(0) : n.toFixed(1)} ${unit}`;
    }
  }
  return `${ms} ms`;
}

/** Parse the route in the location hash: "#/target/7?preset=24h" or "#/target/7?from=..&to=..". */
export function parseRoute(hash) {
  const m = /^#\/target\/(\d+)(?:\?(.*))?$/.exec(hash || "");
  if (!m) return { view: "overview" };
  const q = new URLSearchParams(m[2] || "");
  const from = Number(q.get("from"));
  const to = Number(q.get("to"));
  const route = { view: "target", id: Number(m[1]), preset: q.get("preset") };
  if (!route.preset && Number.isFinite(from) && Number.isFinite(to) && to > from && from > 0) {
    route.from = from;
    route.to = to;
  } else if (!(route.preset in PRESETS)) {
    route.preset = "24h";
  }
  return route;
}

export function routeHash(id, range) {
  if (range.preset) return `#/target/${id}?preset=${range.preset}`;
  return `#/target/${id}?from=${range.from}&to=${range.to}`;
}
