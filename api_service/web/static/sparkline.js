// A tiny canvas drawing of an hour: min–max band, average line, loss ticks.

import { toColumns } from "./timeseries.js";

const BAND = "rgba(31, 111, 235, 0.22)";
const LINE = "#1f6feb";
const LOSS = "#d1242f";

export function drawSparkline(canvas, series) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width;
  const h = canvas.clientHeight || canvas.height;
  canvas.width = Math.round(w * ratio);
  canvas.height = Math.round(h * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const { min, max, avg, loss } = toColumns(series);
  const n = avg.length;
  let top = 0;
  for (const v of max) if (v != null && v > top) top = v;
  if (n === 0 || (top === 0 && !loss.some(Boolean))) {
    // Nothing in the hour: a faint dotted baseline says "loaded, no data".
    ctx.strokeStyle = "#d0d7de";
    ctx.setLineDash([2, 3]);
    ctx.beginPath();
    ctx.moveTo(0, h / 2);
    ctx.lineTo(w, h / 2);
    ctx.stroke();
    return;
  }
  const lossRow = 4; // bottom pixels kept for loss ticks
  const plotH = h - lossRow - 1;
  const x = (i) => ((i + 0.5) * w) / n;
  const y = (v) => 1 + plotH - (top > 0 ? (v / top) * plotH : 0);

  ctx.fillStyle = BAND;
  for (let i = 0; i < n; i++) {
    if (min[i] == null || max[i] == null) continue;
    const y1 = y(max[i]);
    ctx.fillRect(x(i) - w / n / 2, y1, Math.max(1, w / n), Math.max(1, y(min[i]) - y1));
  }
  ctx.strokeStyle = LINE;
  ctx.lineWidth = 1.25;
  ctx.beginPath();
  let pen = false;
  for (let i = 0; i < n; i++) {
    if (avg[i] == null) {
      pen = false;
      continue;
    }
    if (pen) ctx.lineTo(x(i), y(avg[i]));
    else ctx.moveTo(x(i), y(avg[i]));
    pen = true;
  }
  ctx.stroke();
  ctx.fillStyle = LOSS;
  for (let i = 0; i < n; i++) {
    if (loss[i]) ctx.fillRect(x(i) - 1, h - lossRow, Math.max(2, w / n), lossRow);
  }
}
