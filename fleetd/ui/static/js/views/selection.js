// Actions on many containers: the targets are shown first (a dry run), then, once confirmed, each
// target's own result. Used by the containers table (a selection) and the batch page (a selector).

import { post, del } from "../api.js";
import { h, replace, badge } from "../dom.js";

export const ACTIONS = ["start", "stop", "restart", "remove"];

export function resultsTable(targets, { dry } = {}) {
  const rows = targets.map((t) => {
    const outcome = dry ? "would act" : t.outcome;
    const message = t.error ? `${t.error.code}: ${t.error.message}` : t.changed === false ? "already in that state" : "";
    return h("tr", { dataset: { host: t.host, name: t.name, outcome: outcome || "" } },
      h("td", {}, t.host), h("td", {}, t.name), h("td", {}, t.state ? badge(t.state) : ""),
      h("td", {}, outcome ? badge(outcome, outcome === "ok" ? "ok" : outcome === "failed" ? "failed" : "none") : ""),
      h("td", {}, message));
  });
  return h("div", { class: "table-wrap" }, h("table", { class: "results" },
    h("thead", {}, h("tr", {}, ["Host", "Container", "State", dry ? "Dry run" : "Outcome", "Message"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows)));
}

function summaryLine(targets) {
  const ok = targets.filter((t) => t.outcome === "ok").length;
  return `${ok} of ${targets.length} ok, ${targets.length - ok} failed`;
}

async function one(action, c) {
  const path = `/api/v1/containers/${encodeURIComponent(c.host)}/${encodeURIComponent(c.id)}`;
  const base = { host: c.host, id: c.id, name: c.name, state: c.state };
  try {
    const body = action === "remove" ? await del(path, { force: "true" }) : await post(`${path}/${action}`);
    return { ...base, outcome: "ok", changed: body && body.changed };
  } catch (err) {
    return { ...base, outcome: "failed", error: { code: err.code, message: err.message } };
  }
}

async function pool(items, limit, fn) {
  const out = new Array(items.length);
  let i = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (i < items.length) { const k = i++; out[k] = await fn(items[k]); }
  }));
  return out;
}

/** A panel for the selected containers: pick an action, see the targets, confirm, see each result. */
export function selectionPanel(ctx, containers, done) {
  const allowed = ACTIONS.filter((a) => ctx.can(`container.${a}`));
  const sel = h("select", { id: "sel-action" }, allowed.map((a) => h("option", { value: a }, a)));
  const out = h("div", { class: "result", id: "sel-result", "aria-live": "polite" });
  const dry = h("button", { type: "button", id: "sel-dry", on: { click: () => {
    replace(out, h("p", {}, `Dry run: ${sel.value} would be sent to ${containers.length} container(s):`),
      resultsTable(containers, { dry: true }),
      h("button", { type: "button", class: "danger", id: "sel-run", on: { click: run } }, `${sel.value} ${containers.length} container(s)`));
  } } }, "Dry run");
  async function run() {
    const action = sel.value;
    if (!(await ctx.confirm(`${action} ${containers.length} container(s)? This acts on the daemons now.`, action))) return;
    replace(out, h("p", {}, `${action}: working…`));
    const results = await pool(containers, 8, (c) => one(action, c));
    replace(out, h("p", { role: "status" }, `${action}: ${summaryLine(results)}`), resultsTable(results),
      h("button", { type: "button", on: { click: done } }, "Clear selection"));
  }
  return h("section", { class: "panel", "aria-labelledby": "sel-h" },
    h("h2", { id: "sel-h" }, `${containers.length} selected`),
    h("div", { class: "actions" }, h("label", { for: "sel-action" }, "Action"), sel, dry,
      h("button", { type: "button", on: { click: done } }, "Clear")),
    out);
}

export { summaryLine };
