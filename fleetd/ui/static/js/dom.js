// Building DOM nodes without HTML strings: every value is set as text (textContent / text nodes), so a
// daemon's names, labels or log lines can never become markup. The CSP also requires Trusted Types, so
// the browser itself refuses HTML-string sinks.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(el, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    else if (key === "text") el.textContent = String(value);
    else if (key === "on") for (const [type, fn] of Object.entries(value)) el.addEventListener(type, fn);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style" || key.startsWith("on")) throw new Error(`refusing attribute ${key}`);
    else if (key in el && typeof value !== "string" && !(el instanceof SVGElement)) el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** h("a", {href: "/x", class: "c"}, "text", otherNode) */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  apply(el, props);
  append(el, children);
  return el;
}

export function svg(tag, props, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, props);
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

/** A state badge: the word is always written, the colour only helps. */
export function badge(word, kind) {
  return h("span", { class: `badge b-${kind || word}` }, word);
}

export function dl(pairs) {
  const list = h("dl", { class: "facts" });
  for (const [k, v] of pairs) {
    if (v === undefined) continue;
    list.append(h("dt", {}, k), h("dd", {}, v === null || v === "" ? "–" : v));
  }
  return list;
}

/** A link handled by the page's router (no reload). */
export function link(href, ...children) {
  return h("a", { href, dataset: { nav: "" } }, ...children);
}
