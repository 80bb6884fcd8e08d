// The diff of two snapshots, grouped by host: hosts added / removed / changed, then each host's
// containers added / removed / changed with every field's old and new value.

import { get } from "../api.js";
import { h, replace, link } from "../dom.js";
import { when } from "../format.js";

function val(v) {
  if (v === null || v === undefined) return "–";
  return typeof v === "string" ? v : JSON.stringify(v);
}

function changesList(changes) {
  return h("ul", {}, changes.map((c) => h("li", { class: "diff-changed" }, `${c.field}: `, h("del", {}, val(c.old)), " → ", h("ins", {}, val(c.new)))));
}

export function mount(root, _ctx, _params, query) {
  const oldId = query.get("old"), newId = query.get("new");
  const out = h("div", { id: "diff" });
  replace(root, h("h1", {}, `Changes from snapshot ${oldId} to ${newId}`), h("p", {}, link("/ui/snapshots", "← all snapshots")), out);
  if (!oldId || !newId) { replace(out, h("p", { class: "error" }, "pick two snapshots")); return null; }
  get(`/api/v1/snapshots/${encodeURIComponent(newId)}/diff`, { against: oldId }).then((d) => {
    const parts = [h("p", { class: "muted" }, `${d.old.id} (${when(d.old.taken_at)}) → ${d.new.id} (${when(d.new.taken_at)})`)];
    const hostsBox = [];
    for (const x of d.hosts_added) hostsBox.push(h("li", { class: "diff-added" }, `host ${x.name || x} added`));
    for (const x of d.hosts_removed) hostsBox.push(h("li", { class: "diff-removed" }, `host ${x.name || x} removed`));
    for (const x of d.hosts_changed) hostsBox.push(h("li", {}, `host ${x.name} changed`, changesList(x.changes)));
    if (hostsBox.length) parts.push(h("h2", {}, "Hosts"), h("ul", { id: "diff-hosts" }, hostsBox));
    for (const group of d.containers) {
      const items = [];
      for (const c of group.added) items.push(h("li", { class: "diff-added", dataset: { kind: "added", name: c.name } }, `+ ${c.name} added (${c.image}, ${c.state})`));
      for (const c of group.removed) items.push(h("li", { class: "diff-removed", dataset: { kind: "removed", name: c.name } }, `− ${c.name} removed (${c.image}, ${c.state})`));
      for (const c of group.changed) items.push(h("li", { dataset: { kind: "changed", name: c.name } }, `~ ${c.name} changed`, changesList(c.changes)));
      parts.push(h("section", { class: "panel", dataset: { host: group.host } }, h("h2", {}, group.host), h("ul", {}, items)));
    }
    if (!hostsBox.length && !d.containers.length) parts.push(h("p", {}, "Nothing changed."));
    replace(out, parts);
  }).catch((err) => replace(out, h("p", { class: "error", role: "alert" }, err.message)));
  return null;
}
