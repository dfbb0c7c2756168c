// Corral page snapshot: a compact, accessibility-style outline of what is visible on the page,
// with a stable reference (e1, e2, ...) on every interactive element. The reference is stored
// in a data-corral-ref attribute, so a later click/fill finds the same element (until the page
// navigates). Called as a function: (maxChars) => {text, refs, truncated}.
(maxChars) => {
  const INTERACTIVE_ROLES = new Set([
    "button", "link", "checkbox", "radio", "switch", "tab", "menuitem", "option",
    "textbox", "combobox", "searchbox", "slider", "spinbutton", "listbox",
  ]);
  const SKIP = new Set(["SCRIPT", "STYLE", "NOSCRIPT", "TEMPLATE", "SVG", "HEAD", "META", "LINK"]);
  const clean = (s, n = 120) => {
    s = (s || "").replace(/\s+/g, " ").trim();
    return s.length > n ? s.slice(0, n - 1) + "…" : s;
  };
  const visible = (el) => {
    if (el.checkVisibility && !el.checkVisibility({ visibilityProperty: true })) return false;
    const r = el.getBoundingClientRect();
    return r.width > 0 || r.height > 0 || el.tagName === "OPTION";
  };
  const roleOf = (el) => {
    const explicit = el.getAttribute("role");
    if (explicit) return explicit.split(" ")[0];
    const tag = el.tagName;
    if (tag === "A" && el.hasAttribute("href")) return "link";
    if (tag === "BUTTON" || tag === "SUMMARY") return "button";
    if (tag === "SELECT") return el.multiple ? "listbox" : "combobox";
    if (tag === "TEXTAREA") return "textbox";
    if (tag === "INPUT") {
      const t = (el.getAttribute("type") || "text").toLowerCase();
      if (t === "hidden") return null;
      if (["button", "submit", "reset", "image"].includes(t)) return "button";
      if (t === "checkbox" || t === "radio") return t;
      if (t === "range") return "slider";
      if (t === "number") return "spinbutton";
      if (t === "search") return "searchbox";
      return "textbox";
    }
    if (el.isContentEditable) return "textbox";
    if (el.hasAttribute("onclick") || el.tabIndex >= 0 && el.hasAttribute("tabindex")) return "button";
    return null;
  };
  const nameOf = (el) => {
    const aria = el.getAttribute("aria-label");
    if (aria) return clean(aria);
    const by = el.getAttribute("aria-labelledby");
    if (by) {
      const t = by.split(" ").map((id) => document.getElementById(id)?.innerText || "").join(" ");
      if (clean(t)) return clean(t);
    }
    if (el.labels && el.labels.length) return clean(el.labels[0].innerText);
    if (el.tagName === "INPUT" && ["submit", "button", "reset"].includes(el.type)) return clean(el.value);
    if (el.tagName === "IMG") return clean(el.alt);
    const text = clean(el.innerText || el.textContent);
    if (text) return text;
    return clean(el.getAttribute("title") || el.getAttribute("placeholder") || el.getAttribute("name") || "");
  };
  if (window.__corralRefSeq === undefined) window.__corralRefSeq = 0;
  const lines = [];
  let size = 0;
  let truncated = false;
  let refs = 0;
  const emit = (depth, line) => {
    if (truncated) return;
    const s = "  ".repeat(Math.min(depth, 6)) + line;
    if (size + s.length + 1 > maxChars) { truncated = true; return; }
    lines.push(s);
    size += s.length + 1;
  };
  const describe = (el, role) => {
    let ref = el.getAttribute("data-corral-ref");
    if (!ref) {
      ref = "e" + (++window.__corralRefSeq);
      el.setAttribute("data-corral-ref", ref);
    }
    refs++;
    let s = `[${ref}] ${role}`;
    const name = nameOf(el);
    if (name) s += ` "${name}"`;
    if (role === "link") {
      const href = el.getAttribute("href") || "";
      if (href && !href.startsWith("javascript:")) s += ` -> ${clean(href, 200)}`;
    }
    if (["textbox", "searchbox", "combobox", "spinbutton", "slider"].includes(role)) {
      if (el.tagName === "SELECT") {
        const opts = Array.from(el.options).slice(0, 20).map((o) => clean(o.label, 40));
        s += ` options=[${opts.join(" | ")}]` + (el.options.length > 20 ? " …" : "");
        s += ` selected="${clean(el.selectedOptions[0]?.label || "", 60)}"`;
      } else if (el.value !== undefined && el.value !== "") {
        s += ` value="${clean(el.type === "password" ? "••••" : el.value, 80)}"`;
      } else if (el.getAttribute("placeholder")) {
        s += ` placeholder="${clean(el.getAttribute("placeholder"), 60)}"`;
      }
    }
    if (role === "checkbox" || role === "radio" || role === "switch") s += el.checked ? " checked" : " unchecked";
    if (el.disabled) s += " disabled";
    return s;
  };
  const walk = (node, depth) => {
    if (truncated) return;
    for (const child of node.childNodes) {
      if (truncated) return;
      if (child.nodeType === Node.TEXT_NODE) {
        const t = clean(child.textContent, 300);
        if (t) emit(depth, t);
        continue;
      }
      if (child.nodeType !== Node.ELEMENT_NODE || SKIP.has(child.tagName.toUpperCase())) continue;
      const el = child;
      if (el.getAttribute("aria-hidden") === "true" || !visible(el)) continue;
      const tag = el.tagName;
      const role = roleOf(el);
      if (role && INTERACTIVE_ROLES.has(role)) {
        emit(depth, describe(el, role));
        continue;
      }
      if (/^H[1-6]$/.test(tag)) {
        emit(depth, `${"#".repeat(Number(tag[1]))} ${clean(el.innerText, 200)}`);
        continue;
      }
      if (tag === "IMG") {
        if (el.alt) emit(depth, `img "${clean(el.alt)}"`);
        continue;
      }
      if (tag === "IFRAME") {
        emit(depth, `iframe ${clean(el.getAttribute("src") || "", 120)}`);
        continue;
      }
      const block = ["FORM", "NAV", "MAIN", "ARTICLE", "SECTION", "TABLE", "UL", "OL", "DIALOG"].includes(tag);
      if (block) emit(depth, tag.toLowerCase() + (el.getAttribute("aria-label") ? ` "${clean(el.getAttribute("aria-label"))}"` : ""));
      walk(el.shadowRoot || el, block ? depth + 1 : depth);
    }
  };
  if (document.body) walk(document.body, 0);
  return { text: lines.join("\n"), refs, truncated };
}
