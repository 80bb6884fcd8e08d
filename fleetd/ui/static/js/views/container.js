// One container: labels, ports, command; the daemon's inspect on demand; its logs followed live; and the
// start / stop / restart / remove buttons, only for roles that may use them, each confirmed first.

import { get, post, del, stream, lines, ApiError } from "../api.js";
import { h, replace, badge, dl, link } from "../dom.js";
import { when, ports, shortId } from "../format.js";

const LOG_KEEP = 2000;

export function mount(root, ctx, [host, ref]) {
  const base = `/api/v1/containers/${encodeURIComponent(host)}/${encodeURIComponent(ref)}`;
  const head = h("div", {});
  const facts = h("div", {});
  const labels = h("div", {});
  const buttons = h("div", { class: "actions", id: "container-actions" });
  const result = h("p", { class: "result", id: "action-result", role: "status" });
  const inspectOut = h("pre", { id: "inspect", hidden: true });
  const logBox = h("pre", { class: "logs", id: "logs", tabindex: "0", "aria-label": "log lines" });
  const logNote = h("p", { class: "muted", id: "logs-note" });
  let current = null;
  let stop = false;
  const aborter = new AbortController();

  for (const action of ["start", "stop", "restart", "remove"]) {
    if (!ctx.can(`container.${action}`)) continue;
    buttons.append(h("button", { type: "button", class: action === "remove" || action === "stop" ? "danger" : "",
      dataset: { action }, on: { click: () => act(action) } }, action));
  }
  const sections = [head, buttons, result, facts, h("h2", {}, "Labels"), labels];
  if (ctx.can("container.inspect")) {
    sections.push(h("h2", {}, "Inspect"),
      h("button", { type: "button", id: "inspect-btn", on: { click: inspect } }, "Ask the daemon (docker inspect)"), inspectOut);
  }
  if (ctx.can("container.logs")) sections.push(h("h2", {}, "Logs"), logNote, logBox);
  replace(root, ...sections);

  async function act(action) {
    const name = current ? current.name : ref;
    const warn = action === "remove" ? " It is removed with its anonymous volumes kept; a running container is killed first." : "";
    if (!(await ctx.confirm(`${action} ${name} on ${host}?${warn}`, action))) return;
    result.textContent = `${action}: working…`;
    try {
      const body = action === "remove" ? await del(base, { force: "true" }) : await post(`${base}/${action}`);
      result.textContent = action === "remove" ? `removed ${name} from ${host}`
        : `${action}: done${body && body.changed === false ? " (it already was in that state)" : ""}`;
      if (action === "remove") { setTimeout(() => ctx.navigate(`/ui/containers?host=${encodeURIComponent(host)}`), 1200); return; }
      load();
    } catch (err) {
      result.textContent = `${action} failed: ${err.message}`;
    }
  }

  async function inspect() {
    inspectOut.hidden = false;
    inspectOut.textContent = "asking the daemon…";
    try {
      inspectOut.textContent = JSON.stringify(await get(`${base}/inspect`), null, 2);
    } catch (err) {
      inspectOut.textContent = err.message;
    }
  }

  function draw(c) {
    current = c;
    replace(head,
      h("h1", {}, `${c.name} `, badge(c.state), c.stale ? [" ", badge("stale")] : []),
      h("p", {}, "on ", link(`/ui/hosts/${encodeURIComponent(c.host)}`, c.host), c.stale ? " — the host is not answering: this is its last known state" : ""));
    replace(facts, h("div", { class: "panel" }, dl([
      ["id", c.id], ["image", c.image], ["image id", shortId(c.image_id)], ["state", c.state], ["health", c.health],
      ["status", c.status], ["command", c.command], ["ports", ports(c.ports)], ["created", when(c.created)],
      ["observed", when(c.observed_at)], ["names", (c.names || []).join(", ")],
    ])));
    const entries = Object.entries(c.labels || {});
    replace(labels, entries.length ? h("div", { class: "table-wrap" }, h("table", { id: "labels" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Key"), h("th", { scope: "col" }, "Value"))),
      h("tbody", {}, entries.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, v)))))) : h("p", { class: "muted" }, "No labels."));
  }

  async function load() {
    try {
      const c = await get(base);
      if (!stop) draw(c);
    } catch (err) {
      if (!stop) replace(head, h("h1", {}, ref), h("p", { class: "error", role: "alert" }, err.message));
    }
  }

  function addLine(entry) {
    const line = h("span", { class: entry.stream === "stderr" ? "stderr" : "" }, `${entry.time ? entry.time + " " : ""}${entry.line}\n`);
    logBox.append(line);
    while (logBox.childNodes.length > LOG_KEEP) logBox.firstChild.remove();
    logBox.scrollTop = logBox.scrollHeight;
  }

  async function follow() {
    try {
      const resp = await stream(`${base}/logs`, { follow: "1", tail: "200", timestamps: "true" },
        { accept: "application/x-ndjson", signal: aborter.signal });
      logNote.textContent = "following live";
      for await (const line of lines(resp)) {
        if (!line.trim()) continue;
        const entry = JSON.parse(line);
        if (entry.end) { logNote.textContent = `stream ended: ${entry.reason || "the container stopped"}`; return; }
        addLine(entry);
      }
    } catch (err) {
      if (stop) return;
      if (err instanceof ApiError && err.status === 400 && err.code === "unknown_parameter") return pollLogs();
      logNote.textContent = `logs: ${err.message}`;
    }
  }

  // A fleetd without followed logs: re-read the tail on the refresh timer.
  async function pollLogs() {
    logNote.textContent = `re-read every ${ctx.events.refresh}s (this fleetd cannot follow logs)`;
    const read = async () => {
      try {
        const b = await get(`${base}/logs`, { tail: "200", timestamps: "true" });
        if (stop) return;
        replace(logBox);
        b.lines.forEach(addLine);
      } catch (err) {
        logNote.textContent = `logs: ${err.message}`;
      }
    };
    await read();
    const t = setInterval(() => (stop ? clearInterval(t) : read()), ctx.events.refresh * 1000);
  }

  const off = ctx.events.on((evt) => {
    const c = evt.data && evt.data.container;
    if (evt.type === "tick" || evt.type === "connected") load();
    else if (c && c.host === host && (c.id === ref || c.name === ref || c.id.startsWith(ref))) {
      if (evt.type === "container.removed") result.textContent = "this container was removed";
      else draw(c);
    }
  });
  load();
  if (ctx.can("container.logs")) (ctx.me.features.logs_follow ? follow() : pollLogs());
  return () => { stop = true; off(); aborter.abort(); };
}
