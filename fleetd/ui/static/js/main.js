// The dashboard's entry point: who am I, the event stream, and a small router over history.pushState.

import { auth, get, ApiError } from "./api.js";
import { FleetEvents } from "./events.js";
import { h, replace } from "./dom.js";
import * as overview from "./views/overview.js";
import * as containers from "./views/containers.js";
import * as hostView from "./views/host.js";
import * as containerView from "./views/container.js";
import * as snapshots from "./views/snapshots.js";
import * as diff from "./views/diff.js";
import * as actions from "./views/actions.js";

const ROUTES = [
  [/^\/(?:ui\/?)?$/, overview, "overview"],
  [/^\/ui\/containers\/?$/, containers, "containers"],
  [/^\/ui\/hosts\/([^/]+)\/?$/, hostView, "overview"],
  [/^\/ui\/containers\/([^/]+)\/([^/]+)\/?$/, containerView, "containers"],
  [/^\/ui\/snapshots\/?$/, snapshots, "snapshots"],
  [/^\/ui\/snapshots\/diff\/?$/, diff, "snapshots"],
  [/^\/ui\/actions\/?$/, actions, "actions"],
];

const main = document.getElementById("main");
const ctx = {
  me: null,
  events: null,
  can(action) { return !!this.me && this.me.allowed.includes(action); },
  navigate(url, { replace: rep = false } = {}) {
    if (rep) history.replaceState(null, "", url); else history.pushState(null, "", url);
    render();
  },
  /** Updates the URL's query without a new history entry or a re-render (filters). */
  setQuery(params) {
    const q = params.toString();
    history.replaceState(null, "", location.pathname + (q ? `?${q}` : ""));
  },
  confirm(text, yes = "Yes") {
    const dlg = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-yes").textContent = yes;
    dlg.returnValue = "";
    dlg.showModal();
    document.getElementById("confirm-no").focus();
    return new Promise((resolve) => dlg.addEventListener("close", () => resolve(dlg.returnValue === "yes"), { once: true }));
  },
};

let unmount = null;

function render() {
  if (unmount) { try { unmount(); } catch (err) { console.warn(err); } }
  unmount = null;
  const path = decodeURI(location.pathname);
  for (const [re, view, section] of ROUTES) {
    const m = re.exec(location.pathname);
    if (!m) continue;
    for (const a of document.querySelectorAll("nav a[data-section]")) {
      if (a.dataset.section === section) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
    replace(main);
    const params = m.slice(1).map(decodeURIComponent);
    unmount = view.mount(main, ctx, params, new URLSearchParams(location.search)) || null;
    return;
  }
  replace(main, h("h1", {}, "Not found"), h("p", {}, `Nothing at ${path}.`));
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-nav]");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin) return;
  e.preventDefault();
  ctx.navigate(url.pathname + url.search);
  main.focus({ preventScroll: true });
});
window.addEventListener("popstate", render);

// -- sign-in ----------------------------------------------------------------------------------------

const dialog = document.getElementById("signin");
const form = document.getElementById("signin-form");
const tokenInput = document.getElementById("signin-token");
const errorEl = document.getElementById("signin-error");

function openSignIn(message) {
  errorEl.textContent = message || "";
  if (!dialog.open) dialog.showModal();
  tokenInput.focus();
}

let signingIn = false;
auth.onRequired = (message) => {
  if (!signingIn) openSignIn(auth.token ? `The token was refused: ${message}` : "");
};

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const token = tokenInput.value.trim();
  if (!token) return;
  auth.set(token);
  signingIn = true;
  try {
    await start();
    dialog.close();
    tokenInput.value = "";
  } catch (err) {
    auth.clear();
    errorEl.textContent = err.status === 401 ? `The token was refused: ${err.message}` : err.message;
  } finally {
    signingIn = false;
  }
});
document.getElementById("signin-cancel").addEventListener("click", () => dialog.close());
document.getElementById("signin-open").addEventListener("click", () => openSignIn(""));
function quiesce() {
  // Nothing may ask the API once the token is gone: stop the stream and timers, unmount the view.
  if (ctx.events) ctx.events.stop();
  ctx.events = null;
  if (unmount) { try { unmount(); } catch (err) { console.warn(err); } }
  unmount = null;
  replace(main);
}

document.getElementById("signout").addEventListener("click", () => {
  quiesce();
  auth.clear();
  boot();
});

function showWho() {
  const me = ctx.me;
  const who = document.getElementById("who");
  who.textContent = me ? (me.role ? `${me.name} (${me.role})` : "anonymous, read-only") : "";
  document.getElementById("signout").hidden = !auth.token;
  document.getElementById("signin-open").hidden = !!auth.token || !(me && me.auth);
  document.getElementById("nav-actions").hidden = !ctx.can("batch");
}

async function start() {
  const me = await get("/api/v1/whoami");
  if (!me.reads) throw new ApiError(401, "sign_in", "This fleetd needs an API token to read the fleet.");
  ctx.me = me;
  if (ctx.events) ctx.events.stop();
  ctx.events = new FleetEvents(me.refresh, document.getElementById("live"), me.features.events);
  ctx.events.start();
  showWho();
  render();
}

async function boot() {
  try {
    await start();
  } catch (err) {
    ctx.me = null;
    showWho();
    if (err instanceof ApiError && err.status === 401) {
      replace(main, h("h1", {}, "Sign in"), h("p", {}, "This fleetd needs an API token to read the fleet."),
        h("button", { type: "button", class: "primary", on: { click: () => openSignIn("") } }, "Sign in"));
      openSignIn("");
    } else {
      replace(main, h("h1", {}, "fleetd is not answering"), h("p", { class: "error" }, err.message));
    }
  }
}

boot();
