// The runs page: the key's interactions, newest first, followed live by polling
// GET /v1beta/runs with If-None-Match (a 304 costs no body while nothing changed).

import { ApiError, request } from "./api.js";
import { append, clear, errorBox, h, seconds, shortId, since, statusBadge, tokens } from "./dom.js";

const POLL_MS = 2000;

export function renderRuns(main) {
  const status = h("p", { class: "muted", id: "runs-state" }, "Loading…");
  const body = h("div", { id: "runs" });
  main.append(h("h1", {}, "Runs"), status, body);
  let etag = null;
  let rows = [];
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
          rows = (await res.json()).runs;
          fetchedAt = Date.now();
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

  function draw() {
    const elapsed = (Date.now() - fetchedAt) / 1000;
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
        rows.map((r) =>
          h(
            "tr",
            { "data-id": r.id, "data-status": r.status },
            h("td", { "data-label": "Status" }, statusBadge(r.status)),
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
    append(clear(body), rows.length ? table : "");
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
