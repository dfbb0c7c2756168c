// The console's shell: a small router over the History API (the server answers index.html for
// every page path), the API key dialog, and the navigation bar.

import { getKey, onUnauthorized, setKey } from "./api.js";
import { clear, errorBox } from "./dom.js";
import { renderAgents } from "./agents.js";
import { renderRun } from "./run.js";
import { renderRuns } from "./runs.js";
import { renderSandboxes } from "./sandboxes.js";

const routes = [
  { pattern: /^\/$/, nav: "runs", render: () => renderRuns },
  { pattern: /^\/runs\/([^/]+)$/, nav: "runs", render: () => renderRun },
  { pattern: /^\/sandboxes$/, nav: "sandboxes", render: () => renderSandboxes },
  { pattern: /^\/agents$/, nav: "agents", render: () => renderAgents },
];

let cleanup = null;

function show() {
  const main = document.getElementById("main");
  if (cleanup) cleanup();
  cleanup = null;
  clear(main);
  const path = location.pathname.replace(/\/+$/, "") || "/";
  for (const route of routes) {
    const match = path.match(route.pattern);
    if (!match) continue;
    for (const link of document.querySelectorAll("[data-nav]")) {
      link.classList.toggle("current", link.dataset.nav === route.nav);
    }
    const params = match.slice(1).map((p) => decodeURIComponent(p));
    try {
      cleanup = route.render()(main, ...params) || null;
    } catch (err) {
      main.append(errorBox(err));
    }
    return;
  }
  main.append(errorBox(`No page at ${path}`));
}

export function navigate(path) {
  history.pushState(null, "", path);
  show();
}

function interceptLinks() {
  document.addEventListener("click", (event) => {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const link = event.target.closest("a");
    if (!link || link.hasAttribute("download") || link.target) return;
    const href = link.getAttribute("href");
    if (!href || !href.startsWith("/") || href.startsWith("//") || href.startsWith("/v1")) return;
    event.preventDefault();
    if (href !== location.pathname) navigate(href);
  });
  window.addEventListener("popstate", show);
}

function keyDialog() {
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  const reason = document.getElementById("key-reason");
  const form = document.getElementById("key-form");
  const open = (message) => {
    if (dialog.open) return;
    reason.textContent =
      message || "The key this console sends to the API. It is kept in this browser only.";
    input.value = getKey();
    dialog.showModal();
    input.focus();
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setKey(input.value.trim());
    dialog.close();
    show();
  });
  document.getElementById("key-forget").addEventListener("click", () => {
    setKey("");
    input.value = "";
    dialog.close();
    show();
  });
  document.getElementById("key-button").addEventListener("click", () => open());
  onUnauthorized((err) => open(`This server asks for an API key (${err.message}).`));
}

keyDialog();
interceptLinks();
show();
