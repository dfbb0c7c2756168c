// The agents page: every agent the key can run (shared ones first, then its own) with its
// spec, and a box to check a spec (YAML or JSON) the way the server would before saving it.

import { getJson, sendJson } from "./api.js";
import { append, clear, errorBox, h, networkText } from "./dom.js";

const EXAMPLE = `name: writer
model: scripted:demo
instructions: Write short reports.
tools: [exec, files]
limits: {max_steps: 20}
network: none
`;

async function allAgents() {
  const out = [];
  let token = "";
  do {
    const page = await getJson(`/v1beta/agents${token ? `?page_token=${encodeURIComponent(token)}` : ""}`);
    out.push(...page.agents);
    token = page.next_page_token || "";
  } while (token);
  return out;
}

function tools(agent) {
  return (agent.tools || []).map((t) => t.name || t.type || JSON.stringify(t)).join(", ") || "–";
}

function card(agent) {
  const spec = { ...agent };
  return h(
    "li",
    { class: "card", "data-name": agent.id },
    h("div", { class: "card-head" }, h("strong", {}, agent.id), h("span", { class: "muted" }, agent.builtin ? "shared" : "yours")),
    agent.description ? h("p", {}, agent.description) : "",
    h(
      "dl",
      { class: "facts" },
      fact("Model", agent.model || (agent.agent_config || {}).model || "–"),
      fact("Tools", tools(agent)),
      fact("Network", networkText(agent.network)),
    ),
    h("details", {}, h("summary", {}, "Spec"), h("pre", { class: "code" }, JSON.stringify(spec, null, 2))),
  );
}

export function renderAgents(main) {
  const list = h("ul", { class: "cards-list", id: "agents" }, h("li", { class: "muted" }, "Loading…"));
  const input = h("textarea", { id: "spec-input", rows: 10, spellcheck: "false", "aria-label": "Agent spec (YAML or JSON)" });
  input.value = EXAMPLE;
  const check = h("button", { type: "button", id: "validate" }, "Validate");
  const save = h("button", { type: "button", id: "save-agent", class: "quiet", hidden: true }, "Save agent");
  const result = h("div", { id: "validation", "aria-live": "polite" });
  let validated = null;

  main.append(
    h("h1", {}, "Agents"),
    list,
    h(
      "section",
      {},
      h("h2", {}, "Check a spec"),
      h("p", { class: "muted" }, "Paste an agent as YAML or JSON; the server checks it as it would on save (fields, model provider, this key's limits)."),
      input,
      h("div", { class: "actions" }, check, save),
      result,
    ),
  );

  async function load() {
    try {
      const agents = await allAgents();
      append(clear(list), agents.map(card));
    } catch (err) {
      append(clear(list), errorBox(err));
    }
  }

  check.addEventListener("click", async () => {
    check.disabled = true;
    save.hidden = true;
    validated = null;
    try {
      const answer = await sendJson("POST", "/v1beta/agents:validate", { spec: input.value });
      if (answer.valid) {
        validated = answer.request;
        save.hidden = false;
        append(clear(result), 
          h("p", { class: "ok" }, `Valid: agent ${answer.agent.id}`),
          h("pre", { class: "code" }, JSON.stringify(answer.agent, null, 2)),
        );
      } else {
        append(clear(result), h("p", { class: "error", role: "alert" }, `Invalid: ${answer.error}`));
      }
    } catch (err) {
      append(clear(result), errorBox(err));
    } finally {
      check.disabled = false;
    }
  });

  save.addEventListener("click", async () => {
    if (!validated) return;
    save.disabled = true;
    try {
      const agent = await sendJson("POST", "/v1beta/agents", validated);
      append(clear(result), h("p", { class: "ok" }, `Saved agent ${agent.id}`));
      save.hidden = true;
      load();
    } catch (err) {
      append(clear(result), errorBox(err));
    } finally {
      save.disabled = false;
    }
  });

  load();
  return null;
}

function fact(name, value) {
  return h("div", {}, h("dt", {}, name), h("dd", {}, value));
}
