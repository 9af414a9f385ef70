// Entry point: the token form, the status line and the two views, routed by
// the location hash so a view can be bookmarked.

import { storeToken, storedToken } from "./api.js";
import { Overview } from "./overview.js";
import { TargetView } from "./target.js";
import { parseRoute } from "./timeseries.js";

const status = document.querySelector("#status");
let statusTimer = null;

function notify(message, kind = "ok") {
  status.textContent = message;
  status.className = kind;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(
    () => {
      status.textContent = "";
      status.className = "";
    },
    kind === "error" ? 15_000 : 5_000,
  );
}

function showMode() {
  const admin = storedToken() !== "";
  document.body.classList.toggle("read-only", !admin);
  document.querySelector("#mode").textContent = admin ? "admin token set" : "read-only";
}

const form = document.querySelector("#token-form");
form.addEventListener("submit", (event) => {
  event.preventDefault();
  const input = form.querySelector("#token");
  storeToken(input.value.trim());
  input.value = "";
  showMode();
  notify(storedToken() ? "Token saved in this browser." : "Token forgotten.");
  route();
});
document.querySelector("#token-clear").addEventListener("click", () => {
  storeToken("");
  showMode();
  notify("Token forgotten.");
});

const overview = new Overview(document.querySelector("#overview-view"), { notify });
const targetView = new TargetView(document.querySelector("#target-view"), { notify });

function route() {
  const r = parseRoute(location.hash);
  if (r.view === "target") {
    overview.hide();
    return targetView.show(r);
  }
  targetView.hide();
  return overview.show();
}

window.addEventListener("hashchange", route);
showMode();
route();
