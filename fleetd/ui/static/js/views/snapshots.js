// Snapshots: the list (pick any two to compare), export links, and the history of hosts and containers
// by state drawn from the list's counts.

import { get, post, download } from "../api.js";
import { h, replace, link } from "../dom.js";
import { num, when } from "../format.js";
import { lineChart } from "./chart.js";

const LIMIT = 200;

export function mount(root, ctx) {
  const charts = h("div", { class: "cols", id: "history" });
  const list = h("div", {});
  const status = h("p", { role: "status", id: "snap-status" });
  const compare = h("button", { type: "button", class: "primary", id: "compare", on: { click: go } }, "Compare selected");
  const tools = h("div", { class: "actions" }, compare);
  if (ctx.can("snapshot.take")) {
    tools.append(h("button", { type: "button", id: "take", on: { click: take } }, "Take a snapshot now"));
  }
  replace(root, h("h1", {}, "Snapshots"), charts, h("h2", {}, "Stored snapshots"),
    h("p", { class: "muted" }, "Pick an older and a newer snapshot to see what changed between them."), tools, status, list);
  let stop = false;

  function go() {
    const a = root.querySelector("input[name=old]:checked"), b = root.querySelector("input[name=new]:checked");
    if (!a || !b) { status.textContent = "pick one snapshot in each column"; return; }
    ctx.navigate(`/ui/snapshots/diff?old=${a.value}&new=${b.value}`);
  }

  async function take() {
    status.textContent = "taking a snapshot…";
    try {
      const s = await post("/api/v1/snapshots");
      status.textContent = `snapshot ${s.id} taken: ${num(s.counts.hosts)} hosts, ${num(s.counts.containers)} containers`;
      load();
    } catch (err) {
      status.textContent = err.message;
    }
  }

  function exportButtons(id) {
    return ["json", "yaml", "csv"].map((fmt) => h("button", { type: "button", class: "link", dataset: { format: fmt },
      on: { click: () => download(`/api/v1/snapshots/${id}`, { format: fmt }, `fleetd-snapshot-${id}.${fmt}`).catch((e) => { status.textContent = e.message; }) } }, fmt));
  }

  async function load() {
    let body;
    try {
      body = await get("/api/v1/snapshots", { limit: LIMIT });
    } catch (err) {
      replace(list, h("p", { class: "error", role: "alert" }, err.message));
      return;
    }
    if (stop) return;
    const snaps = body.snapshots;
    const older = [...snaps].reverse();
    const times = older.map((s) => s.taken_at);
    const c = older.map((s) => s.counts);
    replace(charts,
      lineChart("Hosts by state", times, [
        { key: "up", label: "up", values: c.map((x) => x.hosts_up) },
        { key: "failed", label: "down or error", values: c.map((x) => x.hosts_failed) },
        { key: "stale", label: "stale", values: c.map((x) => x.hosts_stale) },
      ]),
      lineChart("Containers by state", times, [
        { key: "running", label: "running", values: c.map((x) => x.running) },
        { key: "other", label: "not running", values: c.map((x) => x.containers - x.running) },
      ]));
    if (!snaps.length) { replace(list, h("p", { class: "muted" }, "No snapshots stored yet.")); return; }
    const rows = snaps.map((s, i) => {
      const oldBox = h("input", { type: "radio", name: "old", value: String(s.id), "aria-label": `compare from ${s.id}` });
      const newBox = h("input", { type: "radio", name: "new", value: String(s.id), "aria-label": `compare to ${s.id}` });
      if (i === 1) oldBox.checked = true;
      if (i === 0) newBox.checked = true;
      const prevId = snaps[i + 1] ? snaps[i + 1].id : null;
      return h("tr", { dataset: { id: String(s.id) } },
        h("td", {}, oldBox), h("td", {}, newBox), h("td", {}, String(s.id)), h("td", {}, when(s.taken_at)), h("td", { class: "opt" }, s.trigger),
        h("td", {}, `${num(s.counts.hosts_up)} / ${num(s.counts.hosts)}`), h("td", {}, `${num(s.counts.running)} / ${num(s.counts.containers)}`),
        h("td", {}, prevId !== null ? link(`/ui/snapshots/diff?old=${prevId}&new=${s.id}`, "changes") : ""),
        h("td", { class: "opt" }, exportButtons(s.id)));
    });
    replace(list, h("div", { class: "table-wrap" }, h("table", { id: "snapshots" },
      h("thead", {}, h("tr", {}, ["Old", "New", "Id", "Taken", "Trigger", "Hosts up", "Running", "Diff", "Export"]
        .map((t, i) => h("th", { scope: "col", class: [4, 8].includes(i) ? "opt" : "" }, t)))),
      h("tbody", {}, rows))),
    body.total > snaps.length ? h("p", { class: "muted" }, `showing the newest ${snaps.length} of ${num(body.total)}`) : "");
  }

  load();
  return () => { stop = true; };
}
