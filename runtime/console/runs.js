// The runs page: the key's interactions, newest first, followed live by polling
// GET /v1beta/runs with If-None-Match (a 304 costs no body while nothing changed).

import { ApiError, getJson, request } from "./api.js";
import { append, clear, errorBox, h, seconds, shortId, since, statusBadge, tokens } from "./dom.js";

const POLL_MS = 2000;

export function renderRuns(main) {
  const status = h("p", { class: "muted", id: "runs-state" }, "Loading…");
  const body = h("div", { id: "runs" });
  main.append(h("h1", {}, "Runs"), status, body);
  let etag = null;
  let rows = []; // the newest page, followed live
  let older = []; // pages loaded with "Older runs" (not followed)
  let olderCursor = null;
  let fetchedAt = 0;
  let timer = null;
  let stopped = false;

  async function poll() {
    try {
      const res = await request("/v1beta/runs?limit=100", {
        headers: etag ? { "if-none-match": etag } : {},
      });
      if (res.status !== 304 || !body.firstChild) {
        if (res.status !== 304) {
          etag = res.headers.get("etag");
          const page = await res.json();
          rows = page.runs;
          fetchedAt = Date.now();
          if (!older.length) olderCursor = page.next_before || null;
        }
        draw();
      }
      status.textContent = rows.length ? "" : "No runs yet. Start one with corral run or the API.";
    } catch (err) {
      etag = null; // the next answer redraws over this error
      append(clear(body), errorBox(err));
      status.textContent = "";
      if (err instanceof ApiError && err.status === 401) return; // wait for a key
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  async function loadOlder(button) {
    button.disabled = true;
    try {
      const query = `limit=100&before=${encodeURIComponent(olderCursor)}`;
      const page = await getJson(`/v1beta/runs?${query}`);
      older = older.concat(page.runs);
      olderCursor = page.next_before || null;
      draw();
    } catch (err) {
      button.disabled = false;
      button.after(errorBox(err));
    }
  }

  function draw() {
    const elapsed = (Date.now() - fetchedAt) / 1000;
    const shown = new Set(rows.map((r) => r.id));
    const all = rows.concat(older.filter((r) => !shown.has(r.id)));
    const table = h(
      "table",
      { class: "runs cards" },
      h(
        "thead",
        {},
        h("tr", {}, ...["Status", "Run", "Agent", "Model", "Tokens", "Duration", "Started", "Task"]
          .map((t) => h("th", { scope: "col" }, t))),
      ),
      h(
        "tbody",
        {},
        all.map((r) =>
          h(
            "tr",
            { "data-id": r.id, "data-status": r.status },
            h(
              "td",
              { "data-label": "Status", title: r.errors.map((e) => `${e.code}: ${e.message}`).join("\n") },
              statusBadge(r.status),
            ),
            h(
              "td",
              { "data-label": "Run" },
              h("a", { href: `/runs/${encodeURIComponent(r.id)}`, title: r.id }, shortId(r.id)),
            ),
            h("td", { "data-label": "Agent" }, r.agent || "–"),
            h("td", { "data-label": "Model", class: "wrap" }, r.model || "–"),
            h("td", { "data-label": "Tokens", class: "num" }, tokens(r.tokens)),
            h(
              "td",
              { "data-label": "Duration", class: "num duration" },
              seconds(r.finished ? r.duration : r.duration + elapsed),
            ),
            h("td", { "data-label": "Started", title: r.created }, `${since(r.created)} ago`),
            h("td", { "data-label": "Task", class: "task" }, r.input || ""),
          ),
        ),
      ),
    );
    const more = h("button", { type: "button", class: "quiet", id: "older" }, "Older runs");
    more.addEventListener("click", () => loadOlder(more));
    append(clear(body), all.length ? table : "", olderCursor ? more : "");
  }

  poll();
  // Running durations tick in place (redrawing the table would swallow a click in flight).
  const ticker = setInterval(() => {
    const elapsed = (Date.now() - fetchedAt) / 1000;
    for (const r of rows) {
      if (r.finished) continue;
      const cell = body.querySelector(`tr[data-id="${CSS.escape(r.id)}"] td.duration`);
      if (cell) cell.textContent = seconds(r.duration + elapsed);
    }
  }, 1000);
  return () => {
    stopped = true;
    clearTimeout(timer);
    clearInterval(ticker);
  };
}
