// Unit tests of the dashboard's pure functions (plain `node --test`, no packages).

import assert from "node:assert/strict";
import { test } from "node:test";

import { actionsFor } from "../../api_service/web/static/api.js";
import {
  HOUR,
  MIN_SPAN,
  clampRange,
  hopChanges,
  panRange,
  parseRoute,
  pointsFor,
  presetRange,
  recentLoss,
  routeHash,
  toColumns,
  zoomRange,
} from "../../api_service/web/static/timeseries.js";

const T0 = Date.parse("2024-05-01T10:00:00Z");
const point = (i, fields) => ({
  start: new Date(T0 + i * 60_000).toISOString(),
  count: 60,
  lost: 0,
  min: 10,
  avg: 11,
  max: 12,
  hops: 7,
  hops_min: 7,
  ...fields,
});
const series = (points) => ({ tier: "raw", bucket_s: 60, points });

test("columns put x at bucket centres and keep gaps as nulls", () => {
  const cols = toColumns(
    series([point(0), point(1, { count: 0, min: null, avg: null, max: null, hops: null })]),
  );
  assert.deepEqual(cols.xs, [T0 / 1000 + 30, T0 / 1000 + 90]);
  assert.deepEqual(cols.avg, [11, null]);
  assert.deepEqual(cols.loss, [0, null]);
});

test("loss is the share of pings lost in a bucket", () => {
  const cols = toColumns(series([point(0, { lost: 15 })]));
  assert.equal(cols.loss[0], 0.25);
});

test("hop changes are found between buckets and inside one, across gaps", () => {
  const changes = hopChanges(
    series([
      point(0),
      point(1, { count: 0, hops: null, hops_min: null }),
      point(2, { hops: 8, hops_min: 8 }),
      point(3, { hops: 9, hops_min: 8 }),
    ]),
  );
  assert.deepEqual(
    changes.map((c) => [c.from, c.to]),
    [
      [7, 8],
      [8, 9],
    ],
  );
});

test("recent loss covers the hour and the buckets of the last minute", () => {
  const pts = Array.from({ length: 60 }, (_, i) => point(i, { lost: i === 59 ? 30 : 0 }));
  const now = T0 + 60 * 60_000;
  const loss = recentLoss(series(pts), now);
  assert.equal(loss.minute, 50);
  assert.ok(Math.abs(loss.hour - (100 * 30) / 3600) < 1e-9);
  assert.deepEqual(recentLoss(series([]), now), { hour: null, minute: null });
});

test("ranges are clamped to now, to a minimum span, and pan and zoom keep their span", () => {
  const now = T0;
  assert.deepEqual(clampRange(now - 5000, now + 5000, now), [now - MIN_SPAN, now]);
  assert.deepEqual(panRange(now - 2 * HOUR, now - HOUR, -0.5, now), [
    now - 2.5 * HOUR,
    now - 1.5 * HOUR,
  ]);
  assert.deepEqual(panRange(now - 2 * HOUR, now - HOUR, 2, now), [now - HOUR, now]);
  assert.deepEqual(zoomRange(now - 2 * HOUR, now - HOUR, 2, now), [
    now - 2.5 * HOUR,
    now - 0.5 * HOUR,
  ]);
  assert.deepEqual(presetRange("1h", now), [now - HOUR, now]);
  assert.throws(() => presetRange("2h", now));
});

test("points follow the plot width within what the API serves", () => {
  assert.equal(pointsFor(1234.4), 1234);
  assert.equal(pointsFor(0), 10);
  assert.equal(pointsFor(99999), 5000);
});

test("routes round-trip through the location hash", () => {
  assert.deepEqual(parseRoute(""), { view: "overview" });
  assert.deepEqual(parseRoute("#/target/12"), { view: "target", id: 12, preset: "24h" });
  assert.deepEqual(parseRoute(routeHash(3, { preset: "5y" })), {
    view: "target",
    id: 3,
    preset: "5y",
  });
  assert.deepEqual(parseRoute(routeHash(3, { from: 1000, to: 2000 })), {
    view: "target",
    id: 3,
    preset: null,
    from: 1000,
    to: 2000,
  });
  assert.equal(parseRoute("#/target/3?preset=bogus").preset, "24h");
});

test("admin actions offered follow the target's state", () => {
  assert.deepEqual(actionsFor("active"), ["pause", "stop"]);
  assert.deepEqual(actionsFor("paused"), ["resume", "stop"]);
  assert.deepEqual(actionsFor("stopped"), []);
});
