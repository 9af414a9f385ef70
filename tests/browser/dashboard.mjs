// Drive the dashboard in headless Chromium: overview, open a target, zoom,
// admin action, and the time to first draw of a 5-year range.
//
//   node dashboard.mjs '{"base": "http://127.0.0.1:8666", "artifacts": "...", ...}'
//
// Prints one JSON object of observations; exits non-zero on a failed step.

import { chromium } from "playwright-core";

const cfg = JSON.parse(process.argv[2]);
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-domain-reliability",
  "--disable-client-side-phishing-detection",
  "--dns-prefetch-disable",
  "--no-pings",
  "--no-default-browser-check",
  // Chromium resolves its own service hosts even with background networking
  // off: every name fails here, so no DNS query leaves the machine.
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
];
// Fixed locale and zone: the test reads numbers and dates from the page.
const VIEW = { viewport: { width: 1400, height: 900 }, locale: "en-US", timezoneId: "UTC" };
const out = { console_errors: [], foreign_requests: [], series_requests: [] };

function watch(page) {
  page.on("console", (m) => m.type() === "error" && out.console_errors.push(m.text()));
  page.on("pageerror", (e) => out.console_errors.push(String(e)));
  page.on("request", (r) => {
    const url = new URL(r.url());
    if (url.origin !== cfg.base) out.foreign_requests.push(r.url());
    if (url.pathname.endsWith("/series")) {
      const q = url.searchParams;
      out.series_requests.push({
        path: url.pathname,
        span_ms: Date.parse(q.get("to")) - Date.parse(q.get("from")),
        points: Number(q.get("points")),
      });
    }
  });
}

const chartCanvas = (page) => page.$eval("#chart canvas", (c) => c.toDataURL());
const chartState = (page) => page.$eval("#chart", (c) => ({ ...c.dataset }));
const sinceNavigation = (page, mark) =>
  page.evaluate((m) => performance.getEntriesByName(m)[0]?.startTime ?? null, mark);

async function openTarget(page) {
  await page.fill("#filter", cfg.address);
  await page.click(`tr[data-id="${cfg.target}"] a.open`);
  await page.waitForSelector("#chart[data-state=drawn]");
  return chartState(page);
}

async function zoom(page) {
  const before = { state: await chartState(page), canvas: await chartCanvas(page) };
  const seriesBefore = out.series_requests.length;
  const box = await page.locator("#chart .u-over").boundingBox();
  const y = box.y + box.height / 2;
  await page.mouse.move(box.x + box.width * 0.88, y);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.94, y, { steps: 5 });
  await page.mouse.move(box.x + box.width * 0.999, y, { steps: 5 });
  await page.mouse.up();
  await page.waitForFunction((from) => {
    const c = document.querySelector("#chart").dataset;
    return c.state === "drawn" && c.from !== from;
  }, before.state.from);
  const after = { state: await chartState(page), canvas: await chartCanvas(page) };
  return {
    span_before_ms: Number(before.state.to) - Number(before.state.from),
    span_after_ms: Number(after.state.to) - Number(after.state.from),
    series_requests_after_zoom: out.series_requests.slice(seriesBefore),
    canvas_changed: before.canvas !== after.canvas,
    draws_before: Number(before.state.draws),
    draws_after: Number(after.state.draws),
    hash: await page.evaluate(() => location.hash),
  };
}

async function pan(page) {
  // Shift-drag to the right: the range moves into the past, same span.
  const before = await chartState(page);
  const box = await page.locator("#chart .u-over").boundingBox();
  const y = box.y + box.height / 2;
  await page.keyboard.down("Shift");
  await page.mouse.move(box.x + box.width * 0.4, y);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.6, y, { steps: 8 });
  await page.mouse.up();
  await page.keyboard.up("Shift");
  await page.waitForFunction((from) => {
    const c = document.querySelector("#chart").dataset;
    return c.state === "drawn" && c.from !== from;
  }, before.from);
  const after = await chartState(page);
  return {
    shift_ms: Number(before.from) - Number(after.from),
    span_before_ms: Number(before.to) - Number(before.from),
    span_after_ms: Number(after.to) - Number(after.from),
  };
}

async function pauseAsAdmin(page) {
  const actionsShownWithoutToken = await page.isVisible(
    `tr[data-id="${cfg.pause}"] button[data-action=pause]`,
  );
  await page.fill("#token", cfg.token);
  await page.click("#token-form button[type=submit]");
  await page.fill("#filter", String(cfg.pause_address));
  const row = `tr[data-id="${cfg.pause}"]`;
  await page.click(`${row} button[data-action=pause]`);
  await page.waitForSelector(`${row} .state.paused`);
  return {
    actions_shown_without_token: actionsShownWithoutToken,
    state_after_pause: await page.textContent(`${row} .state`),
    resume_enabled: await page.isEnabled(`${row} button[data-action=resume]`),
    token_stored: await page.evaluate(() => localStorage.getItem("pingtrack.token") !== null),
  };
}

async function timeFiveYears(browser) {
  const page = await browser.newPage(VIEW);
  watch(page);
  // First the overview with every target listed, then a 5-year chart, each from a cold load.
  await page.goto(`${cfg.base}/`);
  await page.waitForSelector(`#overview-view[data-rows]`);
  const overview = await sinceNavigation(page, "pingtrack:overview-rendered");
  await page.goto(`${cfg.base}/#/target/${cfg.five_years}?preset=5y`);
  await page.reload();
  await page.waitForSelector("#chart[data-state=drawn]");
  const drawn = await sinceNavigation(page, "pingtrack:chart-drawn");
  const state = await chartState(page);
  await page.screenshot({ path: `${cfg.artifacts}/dashboard-5y.png` });
  // A preset change on the open page: request, answer and redraw.
  const t0 = Date.now();
  await page.click(".presets button[data-preset='1y']");
  await page.waitForFunction(
    () =>
      document.querySelector("#chart").dataset.state === "drawn" &&
      document.querySelector(".presets button.on")?.dataset.preset === "1y",
  );
  await page.waitForFunction(
    (from) => document.querySelector("#chart").dataset.from !== from,
    state.from,
  );
  const presetSwitch = Date.now() - t0;
  await page.close();
  return {
    overview_rendered_ms: overview,
    first_draw_ms: drawn,
    series_and_draw_ms: Number(state.drawMs),
    points: Number(state.points),
    tier: state.tier,
    preset_switch_ms: presetSwitch,
  };
}

const browser = await chromium.launch({ executablePath: cfg.chromium, args: CHROMIUM_ARGS });
try {
  const page = await browser.newPage(VIEW);
  watch(page);
  await page.goto(`${cfg.base}/`);
  await page.waitForSelector("#overview-view[data-rows]");
  out.rows = Number(await page.getAttribute("#overview-view", "data-rows"));
  await page.waitForSelector("tr[data-spark=drawn]");
  out.overview_rendered_ms = await sinceNavigation(page, "pingtrack:overview-rendered");
  out.overview_dom_ms = Number(await page.getAttribute("#overview-view", "data-render-ms"));
  out.sparks_drawn_first_screen = await page.locator("tr[data-spark=drawn]").count();
  await page.screenshot({ path: `${cfg.artifacts}/dashboard-overview.png` });
  out.series_requests_overview = out.series_requests.length;

  out.opened = await openTarget(page);
  out.zoom = await zoom(page);
  out.pan = await pan(page);
  const panned = await chartState(page);
  await page.click("#pan-fwd");
  await page.waitForFunction(
    (from) => document.querySelector("#chart").dataset.from !== from,
    panned.from,
  );
  await page.waitForFunction(() => {
    const view = document.querySelector("#target-view").dataset;
    return view.settled === document.querySelector("#chart").dataset.from;
  });
  out.events_text = (await page.textContent("#events")).slice(0, 400);
  out.stats_text = await page.textContent("#stats");
  await page.screenshot({ path: `${cfg.artifacts}/dashboard-target.png`, fullPage: true });

  await page.click("text=← all targets");
  await page.waitForSelector("#overview-view:not([hidden])");
  out.admin = await pauseAsAdmin(page);
  await page.close();

  out.five_years = await timeFiveYears(browser);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out));
