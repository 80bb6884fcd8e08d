// One host: its state and since when, the last error, engine facts, images, its containers, and the
// daemon's last /info on demand.

import { get } from "../api.js";
import { h, replace, badge, dl, link } from "../dom.js";
import { num, when, hostState, bytes, shortId } from "../format.js";

export function mount(root, ctx, [name]) {
  const head = h("div", {});
  const facts = h("div", {});
  const images = h("div", {});
  const info = h("pre", { id: "host-info" });
  const details = h("details", {}, h("summary", {}, "The daemon's last /info, verbatim"), info);
  replace(root, head, facts,
    h("h2", {}, "Images"), images,
    h("h2", {}, "Daemon"), details);
  let stop = false;

  async function load() {
    const x = await get(`/api/v1/hosts/${encodeURIComponent(name)}`);
    if (stop) return;
    const state = hostState(x);
    const e = x.engine || {};
    replace(head,
      h("h1", {}, `Host ${x.name} `, badge(state, state)),
      h("p", {}, link(`/ui/containers?host=${encodeURIComponent(x.name)}`, `${num(x.containers)} containers, ${num(x.running)} running`)));
    const findings = (x.findings || []).map((f) => f.message || f.code).join("; ");
    replace(facts, h("div", { class: "panel" }, dl([
      ["state", `${x.state}${x.stale ? " (data is stale)" : ""}`],
      ["since", when(x.state_since)],
      ["last error", x.last_error],
      ["last seen", when(x.last_seen)],
      ["last attempt", when(x.last_attempt)],
      ["failures in a row", String(x.consecutive_failures)],
      ["url", x.url],
      ["labels", Object.entries(x.labels).map(([k, v]) => `${k}=${v}`).join(", ")],
      ["engine id", x.engine_id],
      ["duplicate engine id", x.duplicate_engine_id ? `shared with ${x.duplicate_of.join(", ")}` : "no"],
      ["findings", findings],
      ["name", e.name], ["server version", e.server_version], ["API version", e.api_version],
      ["OS", e.operating_system], ["kernel", e.kernel_version], ["architecture", e.architecture],
      ["CPUs", e.ncpu !== undefined ? String(e.ncpu) : undefined], ["memory", e.mem_total !== undefined ? bytes(e.mem_total) : undefined],
      ["storage driver", e.storage_driver],
      ["poll interval", `${x.interval}s (timeout ${x.timeout}s)`],
    ])));
    info.textContent = x.info ? JSON.stringify(x.info, null, 2) : "no answer yet";
  }

  async function loadImages() {
    try {
      const b = await get(`/api/v1/hosts/${encodeURIComponent(name)}/images`);
      if (stop) return;
      const list = b.images || [];
      replace(images, list.length ? h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Tags", "Id", "Size", "Created"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, list.map((i) => h("tr", {}, h("td", {}, (i.tags || []).join(", ") || "<none>"),
          h("td", {}, shortId(i.id)), h("td", {}, bytes(i.size)), h("td", {}, i.created || "")))))) : h("p", { class: "muted" }, "No images listed yet."));
    } catch (err) {
      replace(images, h("p", { class: "error" }, err.message));
    }
  }

  const off = ctx.events.on((evt) => {
    if (evt.type === "tick" || evt.type === "connected" || (evt.data && evt.data.host === name)) load().catch(() => {});
  });
  load().catch((err) => replace(head, h("h1", {}, `Host ${name}`), h("p", { class: "error", role: "alert" }, err.message)));
  loadImages();
  return () => { stop = true; off(); };
}
