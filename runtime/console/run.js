// The run page: the run's header (status, agent, model, tokens, duration), its timeline
// followed live from the event stream (model text, tool calls with their streamed output,
// screenshots inline, network refusals, errors) and its artifacts.

import { ApiError, getJson, sendJson, streamEvents } from "./api.js";
import { artifactList, imageElement } from "./artifacts.js";
import { append, clear, errorBox, h, seconds, statusBadge, tokens } from "./dom.js";

const FINAL = new Set(["completed", "failed", "cancelled", "budget_exceeded", "incomplete", "requires_action"]);
const OUTPUT_CHARS = 200_000; // live output kept per call (the result step has the whole)

export function renderRun(main, runId) {
  const controller = new AbortController();
  const head = h("section", { class: "run-head", id: "run-head" }, h("p", { class: "muted" }, "Loading…"));
  const timeline = h("ol", { class: "timeline", id: "timeline" });
  const artifacts = artifactList(runId);
  main.append(
    h("p", {}, h("a", { href: "/" }, "← Runs")),
    h("h1", { class: "run-id" }, runId),
    head,
    h("section", {}, h("h2", {}, "Steps"), timeline),
    artifacts.section,
  );

  let run = null;
  let ticker = null;
  const steps = new Map(); // step index -> {step, card, text, output}
  const calls = new Map(); // call id -> the call's card parts

  // The cancel button lives across redraws (the facts redraw every second while running).
  const facts = h("dl", { class: "facts" });
  const problems = h("div");
  const cancel = h("button", { type: "button", class: "quiet", id: "cancel", hidden: true }, "Cancel run");
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      run = await sendJson("POST", `/v1beta/interactions/${encodeURIComponent(runId)}/cancel`);
      drawHead();
    } catch (err) {
      cancel.after(errorBox(err));
    }
  });

  function drawHead() {
    if (!run) return;
    const finished = FINAL.has(run.status);
    const end = finished ? Date.parse(run.updated) : Date.now();
    const usage = run.usage || {};
    if (!head.contains(facts)) append(clear(head), facts, cancel, problems);
    append(clear(facts), 
      fact("Status", statusBadge(run.status)),
      fact("Agent", run.agent || "–"),
      fact("Model", run.model || "–"),
      fact("Tokens", tokens(usage.total_tokens)),
      fact("Duration", seconds((end - Date.parse(run.created)) / 1000)),
      fact("Started", new Date(run.created).toLocaleString()),
      run.previous_interaction_id
        ? fact("Follows", h("a", { href: `/runs/${encodeURIComponent(run.previous_interaction_id)}` }, run.previous_interaction_id))
        : null,
    );
    cancel.hidden = finished;
    append(clear(problems), (run.errors || []).map((e) => h("p", { class: "error" }, `${e.code}: ${e.message}`)));
  }

  function card(kind, title, ...body) {
    const item = h("li", { class: `step step-${kind}`, "data-kind": kind }, h("div", { class: "step-title" }, title), ...body);
    timeline.append(item);
    return item;
  }

  function contentText(content) {
    if (typeof content === "string") return content;
    if (!Array.isArray(content)) return content && content.text ? String(content.text) : "";
    return content.map((c) => (c && c.type === "text" ? c.text : c && c.type ? `[${c.type}]` : "")).join("");
  }

  function startStep(index, step) {
    const type = step.type;
    if (type === "user_input") {
      card("input", "Task", h("div", { class: "text" }, contentText(step.content)));
    } else if (type === "model_output") {
      const text = h("div", { class: "text" }, contentText(step.content));
      card("model", "Model", text);
      steps.set(index, { step, text });
    } else if (type === "thought") {
      const text = h("div", { class: "text muted" }, contentText(step.summary));
      card("thought", "Thinking", text);
      steps.set(index, { step, text });
    } else if (type === "code_execution_call") {
      const args = step.arguments || {};
      const output = h("pre", { class: "output" });
      const item = card("call", `${args.language === "python" ? "python" : "shell"}`, h("pre", { class: "code" }, args.code || ""), output);
      const parts = { item, output, live: 0 };
      calls.set(step.id, parts);
      steps.set(index, { step, ...parts });
    } else if (type === "function_call" || type === "mcp_server_tool_call") {
      const output = h("pre", { class: "output" });
      const label = type === "mcp_server_tool_call" ? `${step.server_name || "mcp"} · ${step.name}` : step.name;
      const item = card("call", label || "tool", h("pre", { class: "code" }, JSON.stringify(step.arguments ?? {}, null, 2)), output);
      const parts = { item, output, live: 0 };
      calls.set(step.id, parts);
      steps.set(index, { step, ...parts });
    } else if (type && type.endsWith("_result")) {
      const call = calls.get(step.call_id);
      const result = step.result;
      const text = typeof result === "string" ? result : JSON.stringify(result, null, 2);
      if (call) {
        call.output.textContent = text;
        call.item.classList.toggle("failed", Boolean(step.is_error));
        call.item.dataset.done = "true";
      } else {
        card("result", step.name || "result", h("pre", { class: "output" }, text)).classList.toggle("failed", Boolean(step.is_error));
      }
    } else {
      card("other", type || "step", h("pre", { class: "code" }, JSON.stringify(step, null, 2)));
    }
  }

  function delta(index, d) {
    const entry = steps.get(index);
    if (!entry || !d) return;
    if (d.type === "text" && entry.text) {
      entry.text.append(d.text || "");
    } else if (d.type === "thought_summary" && entry.text) {
      entry.text.append(contentText(d.content) || d.text || "");
    } else if (d.type === "code_execution_result" && entry.output) {
      if (entry.live > OUTPUT_CHARS) return;
      const chunk = String(d.result || "");
      entry.live += chunk.length;
      entry.output.append(d.stream === "stderr" ? h("span", { class: "stderr" }, chunk) : chunk);
    }
  }

  async function artifact(a) {
    artifacts.add(a);
    if (!/^image\/(png|jpeg|gif|webp)$/.test(a.media_type || "") && !/\.(png|jpe?g|gif|webp)$/i.test(a.path)) return;
    const item = card("shot", `Image · ${a.path}`);
    try {
      const img = await imageElement(runId, a);
      if (img) item.append(img);
    } catch (err) {
      item.append(errorBox(err));
    }
  }

  function onEvent(type, data) {
    if (type === "interaction.created" || type === "interaction.completed") {
      if (data.interaction) run = { ...run, ...data.interaction };
      drawHead();
    } else if (type === "interaction.status_update") {
      if (run && data.usage) run.usage = data.usage;
      if (run && data.status) run.status = data.status;
      drawHead();
    } else if (type === "step.start") {
      startStep(data.index, data.step || {});
    } else if (type === "step.delta") {
      delta(data.index, data.delta);
    } else if (type === "artifact.created" && data.artifact) {
      artifact(data.artifact);
    } else if (type === "artifact.skipped") {
      card("note", "Artifact skipped", `${data.path || ""}: ${data.message || data.reason || ""}`);
    } else if (type === "network.refused") {
      const where = data.url || `${data.host}:${data.port}`;
      const by = data.source ? ` (${data.source})` : "";
      card("refused", `Network refused${by}`, h("div", { class: "text" }, `${where} — ${data.reason || ""}${data.message ? `: ${data.message}` : ""}`));
    } else if (type === "error") {
      const e = data.error || {};
      card("error", "Error", h("div", { class: "text" }, `${e.code || "error"}: ${e.message || ""}`));
    }
  }

  async function follow() {
    let last = 0;
    let wait = 500;
    while (!controller.signal.aborted) {
      let ended = false;
      try {
        const url = `/v1beta/interactions/${encodeURIComponent(runId)}?stream=true&corral_events=1&last_event_id=${last}`;
        last = Number(await streamEvents(url, (type, data, id) => {
          if (id !== null) last = Number(id);
          if (type === "interaction.completed") ended = true;
          onEvent(type, data);
        }, controller.signal)) || last;
        wait = 500;
      } catch (err) {
        if (controller.signal.aborted) return;
        if (err instanceof ApiError && err.status < 500 && err.status !== 429) {
          timeline.after(errorBox(err));
          return;
        }
      }
      if (ended) break;
      await new Promise((resolve) => setTimeout(resolve, wait));
      wait = Math.min(wait * 2, 10_000);
    }
    if (!controller.signal.aborted) await refresh(); // the final usage and artifacts
  }

  async function refresh() {
    const path = `/v1beta/interactions/${encodeURIComponent(runId)}`;
    run = await getJson(path);
    drawHead();
    artifacts.update((await getJson(`${path}/artifacts`)).artifacts);
  }

  (async () => {
    try {
      await refresh();
    } catch (err) {
      append(clear(head), errorBox(err instanceof ApiError && err.status === 404 ? `No run ${runId} for this key.` : err));
      return;
    }
    ticker = setInterval(() => run && !FINAL.has(run.status) && drawHead(), 1000);
    follow().catch((err) => timeline.after(errorBox(err)));
  })();

  return () => {
    controller.abort();
    clearInterval(ticker);
  };
}

function fact(name, value) {
  return h("div", {}, h("dt", {}, name), h("dd", {}, value));
}
