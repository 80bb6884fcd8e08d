// Fleet overview: the summary in numbers, a tile per host coloured by its state (grouped or filtered by a
// host label), findings flagged, and a live feed of the latest fleet events.

import { get } from "../api.js";
import { h, replace, badge, link } from "../dom.js";
import { num, hostState, clock } from "../format.js";

const FEED_MAX = 50;
const STATES = ["up", "down", "error", "stale", "duplicate", "disabled", "unknown"];

function findingBadges(host) {
  const out = [];
  for (const f of host.findings || []) {
    const word = f.code === "insecure_transport" ? "plaintext TCP"
      : f.code === "tls_cert_expiring" ? "cert expiring"
      : f.code === "tls_verify_disabled" ? "TLS unverified" : f.code;
    const b = badge(word, "finding");
    b.title = f.message || word;
    out.push(b);
  }
  return out;
}

function tile(host) {
  const state = hostState(host); // the colour: the most important thing about the host
  const badges = [badge(host.enabled ? host.state : "disabled")];
  if (host.stale) badges.push(badge("stale", "stale"));
  if (host.duplicate_engine_id) badges.push(badge("duplicate engine id", "duplicate"));
  badges.push(...findingBadges(host));
  const a = link(`/ui/hosts/${encodeURIComponent(host.name)}`,
    h("div", { class: "name" }, host.name),
    h("div", { class: "meta" }, `${num(host.running)} running / ${num(host.containers)} containers`),
    h("div", { class: "badges" }, badges));
  a.className = `tile state-${state}`;
  a.dataset.host = host.name;
  a.dataset.state = state;
  const title = [`${host.name}: ${state}`];
  if (host.duplicate_engine_id) title.push(`same engine id as ${host.duplicate_of.join(", ")}`);
  if (host.last_error) title.push(host.last_error);
  a.title = title.join("\n");
  return h("li", {}, a);
}

function numbers(summary) {
  const hs = summary.hosts, cs = summary.containers, sec = summary.security || {};
  const items = [
    ["hosts", hs.total], ["up", hs.by_state.up], ["down", hs.by_state.down], ["error", hs.by_state.error],
    ["stale hosts", hs.stale], ["duplicate engine id", hs.duplicate_engine_id], ["disabled", hs.by_state.disabled],
    ["containers", cs.total], ["running", cs.by_state.running || 0], ["stale containers", cs.stale],
    ["hosts flagged", sec.hosts_flagged || 0],
  ];
  return h("ul", { class: "numbers", id: "summary" },
    items.map(([k, v]) => h("li", { dataset: { key: k } }, h("span", { class: "n" }, num(v || 0)), h("span", { class: "k" }, k))));
}

function feedItem(time, text, kind) {
  return h("li", { class: kind ? `diff-${kind}` : "" }, h("time", {}, clock(time)), text);
}

function describe(evt) {
  const d = evt.data || {};
  const c = d.container;
  switch (evt.type) {
    case "host.changed": return [`${d.host}: ${d.before} → ${d.after}`, d.after === "up" ? "added" : "removed"];
    case "host.resynced": return [`${d.host}: resynced${d.gap ? " (events may be missing)" : ""}`, ""];
    case "container.added": return [`${d.host}: ${c ? c.name : "?"} created (${c ? c.state : ""})`, "added"];
    case "container.removed": return [`${d.host}: ${c ? c.name : "?"} removed`, "removed"];
    case "container.changed": {
      const what = d.action ? `${d.action}${d.exit_code !== undefined && d.exit_code !== null ? ` (exit ${d.exit_code})` : ""}` : (d.fields || []).join(", ");
      return [`${d.host}: ${c ? c.name : "?"} ${what} → ${c ? c.state : ""}`, "changed"];
    }
    case "reset": return [`stream reset: ${d.reason || ""}`, ""];
    default: return null;
  }
}

export function mount(root, ctx, _params, query) {
  const groupSel = h("select", { id: "group" }, h("option", { value: "" }, "no grouping"));
  const labelIn = h("input", { id: "host-label", type: "search", placeholder: "env=prod", value: query.get("label") || "" });
  const stateSel = h("select", { id: "host-state" }, h("option", { value: "" }, "any"),
    STATES.map((s) => h("option", { value: s }, s)));
  stateSel.value = query.get("state") || "";
  const summaryBox = h("div", {});
  const tilesBox = h("div", { id: "tiles", "aria-live": "off" });
  const feed = h("ol", { class: "feed", id: "feed", reversed: true });
  const feedNote = h("p", { class: "muted", id: "feed-note" });
  replace(root,
    h("h1", {}, "Fleet overview"),
    summaryBox,
    h("div", { class: "cols" },
      h("section", { "aria-labelledby": "hosts-h" },
        h("h2", { id: "hosts-h" }, "Hosts"),
        h("div", { class: "filters" },
          h("div", {}, h("label", { for: "group" }, "Group by host label"), groupSel),
          h("div", {}, h("label", { for: "host-label" }, "Host label"), labelIn),
          h("div", {}, h("label", { for: "host-state" }, "State"), stateSel)),
        tilesBox),
      h("section", { class: "panel", "aria-labelledby": "feed-h" },
        h("h2", { id: "feed-h" }, "Latest fleet events"), feedNote, feed)));

  let hosts = [];
  let known = new Map(); // name → displayed state, to report changes seen by polling
  let groupKey = query.get("group") || "";
  let stop = false;

  function syncUrl() {
    const q = new URLSearchParams();
    if (groupSel.value) q.set("group", groupSel.value);
    if (labelIn.value.trim()) q.set("label", labelIn.value.trim());
    if (stateSel.value) q.set("state", stateSel.value);
    ctx.setQuery(q);
  }

  function matches(host) {
    const sel = labelIn.value.trim();
    if (sel) {
      const [k, ...rest] = sel.split("=");
      const v = rest.join("=");
      if (!(k in host.labels) || (rest.length && host.labels[k] !== v)) return false;
    }
    return !stateSel.value || hostState(host) === stateSel.value;
  }

  function drawTiles() {
    const keys = new Set(hosts.flatMap((x) => Object.keys(x.labels)));
    const current = groupSel.value || groupKey;
    replace(groupSel, h("option", { value: "" }, "no grouping"), [...keys].sort().map((k) => h("option", { value: k }, k)));
    groupSel.value = keys.has(current) ? current : "";
    const shown = hosts.filter(matches);
    const groups = new Map();
    for (const x of shown) {
      const g = groupSel.value ? (x.labels[groupSel.value] ?? "(none)") : "";
      if (!groups.has(g)) groups.set(g, []);
      groups.get(g).push(x);
    }
    const parts = [];
    for (const g of [...groups.keys()].sort()) {
      const list = h("ul", { class: "tiles" }, groups.get(g).map(tile));
      parts.push(groupSel.value
        ? h("section", { class: "group" }, h("h2", {}, `${groupSel.value}=${g} (${groups.get(g).length})`), list)
        : list);
    }
    if (!shown.length) parts.push(h("p", { class: "muted" }, hosts.length ? "No host matches." : "No hosts in the inventory."));
    replace(tilesBox, parts);
  }

  function addFeed(time, text, kind) {
    feed.prepend(feedItem(time, text, kind));
    while (feed.children.length > FEED_MAX) feed.lastChild.remove();
  }

  async function load() {
    const [summary, list] = await Promise.all([get("/api/v1/summary"), get("/api/v1/hosts")]);
    if (stop) return;
    hosts = list.hosts;
    replace(summaryBox, numbers(summary));
    // Changes a re-read finds that no event announced (or all of them, without a stream).
    for (const x of hosts) {
      const s = hostState(x), before = known.get(x.name);
      if (before !== undefined && before !== s) addFeed(null, `${x.name}: ${before} → ${s}`, s === "up" ? "added" : "removed");
    }
    known = new Map(hosts.map((x) => [x.name, hostState(x)]));
    drawTiles();
  }

  let pending = null;
  function soon(delay = 250) {
    if (pending) return;
    pending = setTimeout(() => { pending = null; load().catch(showError); }, delay);
  }
  function showError(err) { replace(summaryBox, h("p", { class: "error", role: "alert" }, err.message)); }

  const off = ctx.events.on((evt) => {
    if (evt.type === "tick" || evt.type === "connected" || evt.type === "reset") soon(0);
    else if (evt.type.startsWith("host.") || evt.type.startsWith("container.")) soon(500);
    const line = describe(evt);
    if (line) addFeed(evt.data.time, line[0], line[1]);
    if (evt.type === "host.changed" && evt.data.record) known.set(evt.data.host, hostState(evt.data.record));
    note();
  });
  function note() {
    feedNote.textContent = ctx.events.mode === "live" ? "" : "No event stream here: host state changes seen by this page.";
  }
  note();
  for (const el of [groupSel, labelIn, stateSel]) el.addEventListener("input", () => { syncUrl(); drawTiles(); });
  load().catch(showError);
  return () => { stop = true; off(); clearTimeout(pending); };
}
