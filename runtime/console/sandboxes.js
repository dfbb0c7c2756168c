// The sandboxes page: the key's sandboxes as GET /v1beta/sandboxes lists them (gateway
// sandboxes and the ones kept for its runs), with why each is kept, and a delete button.

import { getJson, request } from "./api.js";
import { append, bytes, clear, errorBox, h, networkText, seconds, shortId, since } from "./dom.js";

const SHOWN = new Set(["id", "object", "state", "image", "cpus", "memory", "network", "ttl",
  "created", "last_used", "kept_for", "expires"]);

function keptFor(value) {
  if (value && typeof value === "object" && value.interaction) {
    return h("span", {}, "run ", h("a", { href: `/runs/${encodeURIComponent(value.interaction)}`, title: value.interaction }, shortId(value.interaction)));
  }
  if (value === "explicit") return "created over the API";
  if (value === null || value === undefined) return "–";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function resources(s) {
  const memory = typeof s.memory === "number" ? bytes(s.memory) : s.memory;
  return [s.cpus ? `${s.cpus} CPU` : null, memory || null].filter(Boolean).join(" · ") || "–";
}

function ttl(s) {
  const base = s.ttl ? seconds(s.ttl) : "–";
  if (!s.expires) return base;
  const left = (Date.parse(s.expires) - Date.now()) / 1000;
  return `${base} (${left > 0 ? `removed in ${seconds(left)}` : "due for removal"})`;
}

export function renderSandboxes(main) {
  const body = h("div", { id: "sandboxes" }, h("p", { class: "muted" }, "Loading…"));
  const reload = h("button", { type: "button", class: "quiet" }, "Refresh");
  main.append(h("div", { class: "title-row" }, h("h1", {}, "Sandboxes"), reload), body);

  async function load() {
    try {
      const { sandboxes } = await getJson("/v1beta/sandboxes");
      clear(body);
      if (!sandboxes.length) {
        body.append(h("p", { class: "muted" }, "No sandboxes."));
        return;
      }
      body.append(h("ul", { class: "cards-list" }, sandboxes.map(row)));
    } catch (err) {
      append(clear(body), errorBox(err));
    }
  }

  function row(s) {
    const remove = h("button", { type: "button", class: "danger" }, "Delete");
    const item = h(
      "li",
      { class: "card", "data-id": s.id },
      h("div", { class: "card-head" }, h("code", { title: s.id }, s.id), h("span", { class: "muted" }, s.state || "")),
      h(
        "dl",
        { class: "facts" },
        fact("Owner", keptFor(s.kept_for)),
        fact("Image", s.image || "–"),
        fact("Age", s.created ? since(s.created) : "–"),
        fact("Idle TTL", ttl(s)),
        fact("Last used", s.last_used ? `${since(s.last_used)} ago` : "–"),
        fact("Network", networkText(s.network)),
        fact("Resources", resources(s)),
        // fields this console does not know yet (the API grows): shown as they come
        Object.entries(s)
          .filter(([k, v]) => !SHOWN.has(k) && v !== null && typeof v !== "object")
          .map(([k, v]) => fact(k, String(v))),
      ),
      remove,
    );
    remove.addEventListener("click", async () => {
      if (!confirm(`Delete sandbox ${s.id}?`)) return;
      remove.disabled = true;
      try {
        await request(`/v1beta/sandboxes/${encodeURIComponent(s.id)}`, { method: "DELETE" });
        item.remove();
        if (!body.querySelector("li")) load();
      } catch (err) {
        remove.disabled = false;
        remove.after(errorBox(err));
      }
    });
    return item;
  }

  reload.addEventListener("click", load);
  load();
  const timer = setInterval(load, 10_000);
  return () => clearInterval(timer);
}

function fact(name, value) {
  return h("div", {}, h("dt", {}, name), h("dd", {}, value));
}
