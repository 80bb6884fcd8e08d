// Small formatting helpers: times, ages, ports, numbers.

export function num(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en");
}

export function ago(iso, now = Date.now()) {
  if (!iso) return "–";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  let s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr}h`;
  return `${Math.floor(hr / 24)}d`;
}

export function when(iso) {
  if (!iso) return "–";
  return `${iso.replace("T", " ").replace(/\.\d+Z$|Z$/, "")} UTC (${ago(iso)} ago)`;
}

export function clock(iso) {
  const d = iso ? new Date(iso) : new Date();
  return d.toISOString().slice(11, 19);
}

export function ports(list) {
  if (!list || !list.length) return "";
  return list
    .map((p) => (p.public_port ? `${p.ip ? p.ip + ":" : ""}${p.public_port}→${p.private_port}/${p.type}` : `${p.private_port}/${p.type}`))
    .join(", ");
}

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function shortId(id) {
  return id ? id.replace(/^sha256:/, "").slice(0, 12) : "";
}

/** A host's displayed state: duplicate engine id and staleness override "up" (they are what matters). */
export function hostState(host) {
  if (!host.enabled || host.state === "disabled") return "disabled";
  if (host.state === "down" || host.state === "error") return host.state;
  if (host.stale) return "stale";
  if (host.duplicate_engine_id) return "duplicate";
  return host.state;
}
