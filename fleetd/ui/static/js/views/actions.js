// Batch actions by selector (POST /api/v1/actions): the dry run is always shown first, then the
// per-target results of the real run.

import { post } from "../api.js";
import { h, replace } from "../dom.js";
import { ACTIONS, resultsTable } from "./selection.js";

function field(id, label, input) {
  input.id = id;
  return h("div", {}, h("label", { for: id }, label), input);
}

export function mount(root, ctx, _params, query) {
  if (!ctx.can("batch")) {
    replace(root, h("h1", {}, "Batch actions"), h("p", {}, "Your role may not run actions across the fleet."));
    return null;
  }
  const f = {
    action: h("select", {}, ACTIONS.map((a) => h("option", { value: a }, a))),
    host: h("input", { type: "search", placeholder: "d1, d2" }),
    label: h("input", { type: "search", placeholder: "app=web" }),
    name: h("input", { type: "search", placeholder: "web-* (exact or glob)" }),
    state: h("input", { type: "search", placeholder: "running" }),
  };
  for (const k of Object.keys(f)) if (query.get(k)) f[k].value = query.get(k);
  const out = h("div", { class: "result", id: "batch-result", "aria-live": "polite" });

  function body(dryRun) {
    const selector = {};
    const hosts = f.host.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (hosts.length) selector.host = hosts;
    const labels = f.label.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (labels.length) selector.label = labels;
    if (f.name.value.trim()) selector.name = f.name.value.trim();
    if (f.state.value.trim()) selector.state = f.state.value.trim();
    const b = { action: f.action.value, selector, dry_run: dryRun };
    if (f.action.value === "remove") b.force = true;
    return b;
  }

  async function dryRun(e) {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, el] of Object.entries(f)) if (el.value.trim()) q.set(k, el.value.trim());
    ctx.setQuery(q);
    const request = body(true);
    try {
      const res = await post("/api/v1/actions", request);
      replace(out,
        h("p", {}, `Dry run: ${request.action} would be sent to ${res.targets.length} container(s); nothing was touched.`),
        resultsTable(res.targets, { dry: true }),
        h("button", { type: "button", class: "danger", id: "batch-run", on: { click: () => run(res.targets.length) } },
          `${request.action} ${res.targets.length} container(s)`));
    } catch (err) {
      replace(out, h("p", { class: "error", role: "alert" }, err.message));
    }
  }

  async function run(count) {
    const request = body(false);
    if (!(await ctx.confirm(`${request.action} ${count} container(s) across the fleet?`, request.action))) return;
    replace(out, h("p", {}, "working…"));
    try {
      const res = await post("/api/v1/actions", request);
      const s = res.summary;
      replace(out, h("p", { role: "status" }, `${request.action}: ${s.ok} of ${s.targets} ok, ${s.failed} failed`), resultsTable(res.targets));
    } catch (err) {
      replace(out, h("p", { class: "error", role: "alert" }, err.message));
    }
  }

  replace(root,
    h("h1", {}, "Batch actions"),
    h("p", { class: "muted" }, "Selector fields combine with AND; the name matches exactly or as a glob, never as a substring. A dry run always comes first."),
    h("form", { class: "filters", on: { submit: dryRun } },
      field("b-action", "Action", f.action), field("b-host", "Hosts (comma-separated)", f.host),
      field("b-label", "Labels (comma-separated)", f.label), field("b-name", "Name", f.name),
      field("b-state", "State", f.state),
      h("div", {}, h("button", { type: "submit", class: "primary", id: "batch-dry" }, "Dry run"))),
    out);
  return null;
}
