// Requests to the API on this page's own origin, with the stored token.

const TOKEN_KEY = "pingtrack.token";

export const ADMIN_ACTIONS = ["pause", "resume", "stop"];

/** Which admin actions make sense in a state (stopped and deleted are final here). */
export function actionsFor(state) {
  if (state === "active") return ["pause", "stop"];
  if (state === "paused") return ["resume", "stop"];
  return [];
}

export function storedToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

export function storeToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function errorOf(response) {
  let code = "error";
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    code = body?.error?.code ?? code;
    message = body?.error?.message ?? (typeof body?.detail === "string" ? body.detail : message);
  } catch {
    // Not JSON: keep the status line.
  }
  return new ApiError(response.status, code, message);
}

export async function request(path, { method = "GET", signal } = {}) {
  const headers = { Accept: "application/json" };
  const token = storedToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { method, headers, signal, cache: "no-store" });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

const iso = (ms) => new Date(ms).toISOString();

export function listTargets() {
  return request("/targets");
}

export function getTarget(id) {
  return request(`/targets/${id}`);
}

export function fetchSeries(id, from, to, points, signal) {
  return request(`/targets/${id}/series?from=${iso(from)}&to=${iso(to)}&points=${points}`, {
    signal,
  });
}

export function fetchEvents(id, from, to, signal) {
  return request(`/targets/${id}/events?from=${iso(from)}&to=${iso(to)}`, { signal });
}

export function fetchStats(id, from, to, signal) {
  return request(`/targets/${id}/stats?from=${iso(from)}&to=${iso(to)}`, { signal });
}

export function adminAction(id, action) {
  if (!ADMIN_ACTIONS.includes(action)) throw new Error(`unknown action ${action}`);
  return request(`/targets/${id}/${action}`, { method: "POST" });
}

/** Run async jobs at most `limit` at a time (sparklines must not flood the API). */
export function limiter(limit) {
  let active = 0;
  const waiting = [];
  const next = () => {
    if (active >= limit || waiting.length === 0) return;
    active++;
    const { job, resolve, reject } = waiting.shift();
    job()
      .then(resolve, reject)
      .finally(() => {
        active--;
        next();
      });
  };
  return (job) =>
    new Promise((resolve, reject) => {
      waiting.push({ job, resolve, reject });
      next();
    });
}
