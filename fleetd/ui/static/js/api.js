// fleetd's REST API from the page: the token (when signed in) lives in sessionStorage and goes in the
// Authorization header only, never in a URL.

const TOKEN_KEY = "fleetd.token";

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

export const auth = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set(token) { sessionStorage.setItem(TOKEN_KEY, token); },
  clear() { sessionStorage.removeItem(TOKEN_KEY); },
  onRequired: () => {},
};

export function headers(extra = {}) {
  const out = { Accept: "application/json", ...extra };
  const token = auth.token;
  if (token) out.Authorization = `Bearer ${token}`;
  return out;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === "") continue;
    for (const item of Array.isArray(v) ? v : [v]) if (item !== "") q.append(k, item);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

async function failure(resp) {
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON */ }
  const err = body && body.error ? body.error : {};
  if (resp.status === 401) auth.onRequired(err.message || "sign in needed");
  return new ApiError(resp.status, err.code || `http_${resp.status}`, err.message || `${resp.status} ${resp.statusText}`, body);
}

export async function request(method, path, { params, body, signal, raw } = {}) {
  const init = { method, headers: headers(), signal, cache: "no-store" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(path + query(params), init);
  if (!resp.ok) throw await failure(resp);
  if (raw) return resp;
  return resp.status === 204 ? null : resp.json();
}

export const get = (path, params, opts = {}) => request("GET", path, { ...opts, params });
export const post = (path, body, params) => request("POST", path, { body, params });
export const del = (path, params) => request("DELETE", path, { params });

/** Opens a streaming GET (SSE or NDJSON) with the bearer header; returns the Response. */
export async function stream(path, params, { signal, accept, lastEventId } = {}) {
  const h = headers({ Accept: accept });
  if (lastEventId) h["Last-Event-ID"] = lastEventId;
  const resp = await fetch(path + query(params), { headers: h, signal, cache: "no-store" });
  if (!resp.ok) throw await failure(resp);
  return resp;
}

/** Lines of a streamed body, decoded as UTF-8, as they arrive. */
export async function* lines(resp) {
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        yield buf.slice(0, i).replace(/\r$/, "");
        buf = buf.slice(i + 1);
      }
    }
    if (buf) yield buf;
  } finally {
    reader.releaseLock();
  }
}

/** Downloads an API answer as a file (the bearer header cannot ride on a plain link). */
export async function download(path, params, filename) {
  const resp = await request("GET", path, { params, raw: true });
  const blob = await resp.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
