// Every container of the fleet in one table: filtered, sorted and paged by the server (limit/offset), so
// 40,000 rows cost one page of DOM. Rows are patched in place from the event stream (or a timer where
// there is none); the URL holds the filters, the sort and the page.

import { get } from "../api.js";
import { h, replace, badge, link } from "../dom.js";
import { num, ago, ports } from "../format.js";
import { selectionPanel } from "./selection.js";

const FILTERS = ["host", "host_label", "label", "state", "health", "image", "name"];
const STATES = ["created", "restarting", "running", "removing", "paused", "exited", "dead"];
const HEALTH = ["healthy", "unhealthy", "starting", "none"];
const COLUMNS = [
  ["host", "Host", "host"], ["name", "Name", "name"], ["image", "Image", "image"], ["state", "State", "state"],
  ["health", "Health", "health"], ["status", "Status", "status"], ["ports", "Ports", null], ["age", "Age", "created"],
];
const PAGE_SIZES = [50, 100, 250, 500];

function field(id, label, input) {
  input.id = id;
  return h("div", {}, h("label", { for: id }, label), input);
}

function cellValues(c) {
  return {
    host: c.host, name: c.name, image: c.image, state: c.state, health: c.health, status: c.status,
    ports: ports(c.ports), age: ago(c.created),
  };
}

export function mount(root, ctx, _params, query) {
  const inputs = {
    host: h("input", { type: "search", list: "host-names", placeholder: "d1" }),
    host_label: h("input", { type: "search", placeholder: "env=prod" }),
    label: h("input", { type: "search", placeholder: "app=web" }),
    state: h("select", {}, h("option", { value: "" }, "any"), STATES.map((s) => h("option", { value: s }, s))),
    health: h("select", {}, h("option", { value: "" }, "any"), HEALTH.map((s) => h("option", { value: s }, s))),
    image: h("input", { type: "search", placeholder: "nginx:1.27" }),
    name: h("input", { type: "search", placeholder: "part of a name, or a glob (web-*)" }),
  };
  for (const k of FILTERS) inputs[k].value = query.get(k) || "";
  let sort = query.get("sort") || "";
  let offset = Number(query.get("offset")) || 0;
  const sizeSel = h("select", { id: "page-size" }, PAGE_SIZES.map((n) => h("option", { value: String(n) }, String(n))));
  sizeSel.value = PAGE_SIZES.includes(Number(query.get("limit"))) ? query.get("limit") : "100";
  const hostList = h("datalist", { id: "host-names" });
  const operate = ctx.can("batch");
  const selected = new Map(); // key → container

  const headRow = h("tr", {});
  if (operate) headRow.append(h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Select")));
  for (const [key, title, sortKey] of COLUMNS) {
    const th = h("th", { scope: "col", class: ["ports", "status"].includes(key) ? "opt" : "", dataset: { col: key } });
    if (sortKey) {
      th.append(h("button", { type: "button", on: { click: () => toggleSort(sortKey) } }, title));
    } else th.textContent = title;
    headRow.append(th);
  }
  const tbody = h("tbody", { id: "rows" });
  const info = h("span", { id: "page-info", role: "status" });
  const prev = h("button", { type: "button", id: "prev", on: { click: () => page(-1) } }, "← Previous");
  const next = h("button", { type: "button", id: "next", on: { click: () => page(1) } }, "Next →");
  const errorBox = h("p", { class: "error", role: "alert" });
  const selBox = h("div", {});

  replace(root,
    h("h1", {}, "Containers"),
    h("form", { class: "filters", role: "search", on: { submit: (e) => e.preventDefault() } },
      field("f-host", "Host", inputs.host), field("f-host_label", "Host label", inputs.host_label),
      field("f-label", "Container label", inputs.label), field("f-state", "State", inputs.state),
      field("f-health", "Health", inputs.health), field("f-image", "Image", inputs.image),
      field("f-name", "Name", inputs.name), hostList),
    errorBox,
    selBox,
    h("div", { class: "pager" }, prev, next, info, h("label", { for: "page-size" }, "per page"), sizeSel),
    h("div", { class: "table-wrap" }, h("table", { id: "containers" }, h("thead", {}, headRow), tbody)));

  function params() {
    const p = {};
    for (const k of FILTERS) if (inputs[k].value.trim()) p[k] = inputs[k].value.trim();
    if (sort) p.sort = sort;
    return p;
  }

  // The API's name is exact or a glob (as in batch selectors); the search box finds part of a name
  // unless a glob is typed.
  function apiParams() {
    const p = params();
    if (p.name && !/[*?[]/.test(p.name)) p.name = `*${p.name}*`;
    return p;
  }

  function syncUrl() {
    const q = new URLSearchParams(params());
    if (offset) q.set("offset", String(offset));
    if (sizeSel.value !== "100") q.set("limit", sizeSel.value);
    ctx.setQuery(q);
  }

  function markSort() {
    for (const th of headRow.querySelectorAll("th[data-col]")) {
      const col = COLUMNS.find((c) => c[0] === th.dataset.col);
      const key = col && col[2];
      if (key && sort.replace(/^-/, "") === key) th.setAttribute("aria-sort", sort.startsWith("-") ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    }
  }

  function toggleSort(key) {
    const firstDesc = key === "created"; // "age" ascending = newest first = created descending
    if (sort.replace(/^-/, "") !== key) sort = firstDesc ? `-${key}` : key;
    else sort = sort.startsWith("-") ? key : `-${key}`;
    offset = 0;
    syncUrl();
    markSort();
    load();
  }

  function page(dir) {
    offset = Math.max(0, offset + dir * Number(sizeSel.value));
    syncUrl();
    load();
  }

  function newRow(key, c) {
    const tr = h("tr", { dataset: { key } });
    if (operate) {
      const box = h("input", { type: "checkbox", "aria-label": `select ${c.host}/${c.name}` });
      box.checked = selected.has(key);
      box.addEventListener("change", () => {
        if (box.checked) selected.set(key, tr._container); else selected.delete(key);
        drawSelection();
      });
      tr.append(h("td", {}, box));
    }
    for (const [col] of COLUMNS) tr.append(h("td", { dataset: { col }, class: ["ports", "status"].includes(col) ? "opt" : "" }));
    return tr;
  }

  function fill(tr, c, flash) {
    tr._container = c;
    const v = cellValues(c);
    let changed = false;
    tr.classList.toggle("stale", !!c.stale);
    tr.dataset.state = c.state;
    tr.dataset.host = c.host;
    tr.dataset.name = c.name;
    for (const td of tr.querySelectorAll("td[data-col]")) {
      const col = td.dataset.col;
      const text = col === "state" && c.stale ? `${v.state} (stale)` : v[col];
      if (td.dataset.text === text) continue;
      changed = changed || td.dataset.text !== undefined;
      td.dataset.text = text;
      if (col === "name") replace(td, link(`/ui/containers/${encodeURIComponent(c.host)}/${encodeURIComponent(c.id)}`, c.name));
      else if (col === "host") replace(td, link(`/ui/hosts/${encodeURIComponent(c.host)}`, c.host));
      else if (col === "state") replace(td, badge(c.state), c.stale ? [" ", badge("stale")] : []);
      else if (col === "health") replace(td, c.health === "none" ? "" : badge(c.health));
      else td.textContent = text;
    }
    if (changed && flash) {
      tr.classList.remove("flash");
      void tr.offsetWidth; // restart the animation
      tr.classList.add("flash");
    }
  }

  function draw(list) {
    const old = new Map([...tbody.children].map((tr) => [tr.dataset.key, tr]));
    const rows = list.map((c) => {
      const key = `${c.host}/${c.id}`;
      const tr = old.get(key) || newRow(key, c);
      fill(tr, c, old.has(key));
      return tr;
    });
    rows.forEach((tr, i) => { if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null); });
    while (tbody.children.length > rows.length) tbody.lastChild.remove();
  }

  let seq = 0, stop = false, total = 0;
  async function load() {
    const mine = ++seq;
    try {
      const body = await get("/api/v1/containers", { ...apiParams(), limit: sizeSel.value, offset });
      if (stop || mine !== seq) return;
      errorBox.textContent = "";
      total = body.total;
      if (offset && offset >= total) { offset = Math.max(0, Math.floor((total - 1) / Number(sizeSel.value)) * Number(sizeSel.value)); syncUrl(); return load(); }
      draw(body.containers);
      const end = offset + body.containers.length;
      info.textContent = total ? `${num(offset + 1)}–${num(end)} of ${num(total)}` : "no containers match";
      prev.disabled = offset === 0;
      next.disabled = end >= total;
    } catch (err) {
      if (mine === seq && !stop) errorBox.textContent = err.message;
    }
  }

  function drawSelection() {
    if (!operate) return;
    replace(selBox, selected.size ? selectionPanel(ctx, [...selected.values()], () => { selected.clear(); drawSelection(); load(); for (const b of tbody.querySelectorAll("input[type=checkbox]")) b.checked = false; }) : []);
  }

  let timer = null;
  for (const k of FILTERS) {
    inputs[k].addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => { offset = 0; syncUrl(); load(); }, 250);
    });
  }
  sizeSel.addEventListener("change", () => { offset = 0; syncUrl(); load(); });

  let pending = null;
  function soon(delay) {
    if (pending) return;
    pending = setTimeout(() => { pending = null; load(); }, delay);
  }
  const off = ctx.events.on((evt) => {
    if (evt.type === "tick" || evt.type === "connected" || evt.type === "reset") return soon(0);
    if (!evt.type.startsWith("container.") && !evt.type.startsWith("host.")) return;
    const c = evt.data && evt.data.container;
    if (evt.type === "container.changed" && c) {
      const tr = tbody.querySelector(`tr[data-key="${CSS.escape(`${c.host}/${c.id}`)}"]`);
      if (tr) fill(tr, c, true);
    }
    soon(300); // membership and order may have changed: re-read the page (cheap, server-side)
  });

  // Host names for the host filter's suggestions: only when it is used (1,000 hosts are 1 MB of JSON).
  inputs.host.addEventListener("focus", () => {
    if (hostList.childElementCount) return;
    get("/api/v1/hosts").then((b) => replace(hostList, b.hosts.map((x) => h("option", { value: x.name })))).catch(() => {});
  }, { once: true });
  markSort();
  load();
  return () => { stop = true; off(); clearTimeout(pending); clearTimeout(timer); };
}
