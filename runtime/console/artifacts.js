// Artifacts of a run: list, preview (text, images, CSV as a table) and download.
//
// The bytes are the agent's, so hostile: they are fetched with the key and shown as text
// (textContent) or, for the raster image types below only, as an <img> of a blob whose type
// we set ourselves. An .html or .svg artifact is shown as its source. A download is a blob of
// type application/octet-stream, so the browser saves it and never renders it in this origin.

import { request } from "./api.js";
import { append, bytes, clear, errorBox, h } from "./dom.js";

const IMAGE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
const IMAGE_EXT = { png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif", webp: "image/webp" };
const TEXT_EXT = new Set([
  "txt", "md", "log", "csv", "tsv", "json", "jsonl", "yaml", "yml", "toml", "ini", "xml", "html",
  "htm", "svg", "py", "js", "ts", "sh", "sql", "c", "h", "rs", "go", "java", "css", "diff", "patch",
]);
const PREVIEW_BYTES = 256 * 1024;
const CSV_ROWS = 200;

export function artifactUrl(runId, path) {
  const parts = String(path).split("/").map(encodeURIComponent).join("/");
  return `/v1beta/interactions/${encodeURIComponent(runId)}/artifacts/${parts}`;
}

function extension(path) {
  const name = String(path).split("/").pop();
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : "";
}

export function imageType(artifact) {
  if (IMAGE_TYPES.has(artifact.media_type)) return artifact.media_type;
  return IMAGE_EXT[extension(artifact.path)] || null;
}

function kind(artifact) {
  if (imageType(artifact)) return "image";
  const ext = extension(artifact.path);
  if (ext === "csv" || artifact.media_type === "text/csv") return "csv";
  const type = String(artifact.media_type || "");
  if (type.startsWith("text/") || type === "application/json" || TEXT_EXT.has(ext)) return "text";
  return null;
}

/** An <img> of an image artifact (fetched with the key); null when it is not an image. */
export async function imageElement(runId, artifact) {
  const type = imageType(artifact);
  if (!type) return null;
  const res = await request(artifactUrl(runId, artifact.path));
  const blob = new Blob([await res.arrayBuffer()], { type });
  return h("img", { src: URL.createObjectURL(blob), alt: artifact.path, class: "shot" });
}

async function preview(runId, artifact, into) {
  append(clear(into), h("p", { class: "muted" }, "Loading…"));
  try {
    const what = kind(artifact);
    let node;
    if (what === "image") {
      node = await imageElement(runId, artifact);
    } else if (what && !artifact.size) {
      node = h("p", { class: "muted" }, "(empty file)");
    } else if (what) {
      const big = artifact.size > PREVIEW_BYTES;
      const res = await request(artifactUrl(runId, artifact.path), {
        headers: big ? { range: `bytes=0-${PREVIEW_BYTES - 1}` } : {},
      });
      const text = new TextDecoder().decode(await res.arrayBuffer());
      const cut = big ? `\n… (first ${bytes(PREVIEW_BYTES)} shown)` : "";
      node = what === "csv" ? csvTable(text) : h("pre", { class: "file" }, text + cut);
    } else {
      node = h("p", { class: "muted" }, `No preview for ${artifact.media_type}; download it.`);
    }
    append(clear(into), node);
  } catch (err) {
    append(clear(into), errorBox(err));
  }
}

async function download(runId, artifact, button) {
  button.disabled = true;
  try {
    const res = await request(artifactUrl(runId, artifact.path));
    const blob = new Blob([await res.arrayBuffer()], { type: "application/octet-stream" });
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: artifact.path.split("/").pop() || "download" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (err) {
    button.after(errorBox(err));
  } finally {
    button.disabled = false;
  }
}

/** RFC 4180-ish: quoted fields, doubled quotes, commas and newlines inside quotes. */
export function parseCsv(text, maxRows = CSV_ROWS) {
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length && rows.length < maxRows; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i += 1;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      row.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i += 1;
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else field += c;
  }
  if ((field || row.length) && rows.length < maxRows) rows.push([...row, field]);
  return rows;
}

function csvTable(text) {
  const [head, ...rest] = parseCsv(text);
  if (!head) return h("p", { class: "muted" }, "(empty)");
  return h(
    "div",
    { class: "scroll-x" },
    h(
      "table",
      { class: "csv" },
      h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rest.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))),
    ),
  );
}

/** The artifacts section of a run page; call .update(list) with the API's artifacts. */
export function artifactList(runId) {
  const list = h("ul", { class: "artifacts", id: "artifacts" });
  const section = h("section", {}, h("h2", {}, "Artifacts"), list);
  const known = new Map();
  const empty = h("li", { class: "muted" }, "None yet.");
  list.append(empty);

  function add(artifact) {
    if (known.has(artifact.path)) return;
    empty.remove();
    const box = h("div", { class: "preview" });
    const get = h("button", { type: "button", class: "quiet" }, "Download");
    get.addEventListener("click", () => download(runId, artifact, get));
    const toggle = h("button", { type: "button", class: "quiet" }, "Preview");
    toggle.addEventListener("click", () => {
      if (box.childNodes.length) clear(box);
      else preview(runId, artifact, box);
    });
    const item = h(
      "li",
      { "data-path": artifact.path },
      h(
        "div",
        { class: "artifact-head" },
        h("span", { class: "path" }, artifact.path),
        h("span", { class: "muted" }, `${bytes(artifact.size)} · ${artifact.media_type}`),
        h("span", { class: "buttons" }, kind(artifact) ? toggle : "", get),
      ),
      box,
    );
    known.set(artifact.path, item);
    list.append(item);
  }

  return { section, add, update: (artifacts) => artifacts.forEach(add) };
}
