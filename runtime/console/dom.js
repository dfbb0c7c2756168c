// DOM helpers. Everything from the server (model text, tool output, names) enters the page
// through textContent or attribute values set here, never as markup: there is no innerHTML
// anywhere in the console.

/** Build an element: h("a", {href: "/x", class: "y"}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) {
      el.addEventListener(name.slice(2), value);
    } else if (name === "href" || name === "src") {
      el.setAttribute(name, safeUrl(String(value)));
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, ...children);
  return el;
}

/** Append strings (as text) and nodes. */
export function append(el, ...children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Links and images only to this origin or to blobs the page made itself. */
function safeUrl(value) {
  if (value.startsWith("/") && !value.startsWith("//")) return value;
  if (value.startsWith("blob:" + location.origin + "/")) return value;
  if (value === "#") return value;
  return "#";
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function seconds(value) {
  if (value === null || value === undefined) return "";
  const s = Math.max(0, Number(value));
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  const hours = Math.floor(m / 60);
  return `${hours} h ${m % 60} min`;
}

export function since(iso) {
  if (!iso) return "";
  return seconds((Date.now() - Date.parse(iso)) / 1000);
}

export function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

export function tokens(n) {
  if (n === null || n === undefined) return "–";
  return Number(n).toLocaleString("en");
}

export function statusBadge(status) {
  return h("span", { class: `status status-${String(status).replace(/[^a-z_]/g, "")}` }, status);
}

/** A short id for narrow screens: int_abcdef… */
export function shortId(id) {
  const text = String(id);
  return text.length > 16 ? `${text.slice(0, 14)}…` : text;
}

export function errorBox(err) {
  return h("p", { class: "error", role: "alert" }, String(err && err.message ? err.message : err));
}

/** A sandbox network setting: "none", "open", "allowlist: a.com, b.org". */
export function networkText(value) {
  if (!value) return "–";
  if (typeof value === "string") return value;
  const allow = Array.isArray(value.allow) && value.allow.length ? `: ${value.allow.join(", ")}` : "";
  return `${value.mode || "?"}${allow}`;
}
