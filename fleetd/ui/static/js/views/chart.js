// A small line chart as inline SVG, drawn with DOM calls (no library, nothing inline for the CSP).

import { svg, h } from "../dom.js";

const W = 600, H = 170, L = 44, R = 8, T = 10, B = 24;

/** series: [{key, label, values: [number]}]; times: [iso] oldest first. */
export function lineChart(title, times, series) {
  const n = times.length;
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const x = (i) => L + (n <= 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (n - 1));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title },
    svg("title", {}, title),
    svg("line", { class: "axis", x1: L, y1: y(0), x2: W - R, y2: y(0) }),
    svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: y(0) }),
    svg("text", { x: L - 6, y: T + 4, "text-anchor": "end" }, String(max)),
    svg("text", { x: L - 6, y: y(0), "text-anchor": "end" }, "0"));
  if (n) {
    root.append(svg("text", { x: L, y: H - 6 }, times[0].slice(0, 16).replace("T", " ")));
    if (n > 1) root.append(svg("text", { x: W - R, y: H - 6, "text-anchor": "end" }, times[n - 1].slice(0, 16).replace("T", " ")));
  }
  for (const s of series) {
    const pts = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    root.append(svg("polyline", { class: `s-${s.key}`, points: n === 1 ? `${L},${y(s.values[0])} ${W - R},${y(s.values[0])}` : pts },
      svg("title", {}, `${s.label}: latest ${s.values[n - 1] ?? 0}`)));
  }
  const legend = h("ul", { class: "legend" },
    series.map((s) => h("li", {}, h("span", { class: `sw s-${s.key}` }), `${s.label} (${s.values[n - 1] ?? 0})`)));
  return h("figure", { class: "chart" }, root, h("figcaption", {}, title), legend);
}
