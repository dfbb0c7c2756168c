// The API as the console uses it: the key the user typed (kept in this browser's
// localStorage, sent as x-goog-api-key like any API client), JSON calls, and event streams
// read with fetch (EventSource cannot send a header, and a key in a URL would land in logs).

const KEY = "corral.apiKey";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function getKey() {
  return localStorage.getItem(KEY) || "";
}

export function setKey(value) {
  if (value) localStorage.setItem(KEY, value);
  else localStorage.removeItem(KEY);
}

const listeners = new Set();

/** Called with the error when the server refuses the key (401), so the app can ask for one. */
export function onUnauthorized(fn) {
  listeners.add(fn);
}

function headers(extra = {}) {
  const out = { ...extra };
  const key = getKey();
  if (key) out["x-goog-api-key"] = key;
  return out;
}

async function failure(res) {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch {
    // not JSON: keep the status line
  }
  const err = new ApiError(res.status, message);
  if (res.status === 401) for (const fn of listeners) fn(err);
  return err;
}

/** A raw fetch with the key; throws ApiError on 4xx/5xx (304 is returned as is). */
export async function request(path, options = {}) {
  const res = await fetch(path, {
    ...options,
    headers: headers(options.headers),
    cache: "no-store",
    credentials: "omit",
  });
  if (!res.ok && res.status !== 304) throw await failure(res);
  return res;
}

export async function getJson(path, options = {}) {
  const res = await request(path, options);
  return res.status === 304 ? null : res.json();
}

export async function sendJson(method, path, body) {
  const res = await request(path, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return res.json();
}

/**
 * Follow a server-sent event stream: calls onEvent(type, data, id) per event until the stream
 * ends or `signal` aborts. Resolves with the last event id seen.
 */
export async function streamEvents(path, onEvent, signal) {
  const res = await request(path, { signal, headers: { accept: "text/event-stream" } });
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  let lastId = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    for (const event of parser.push(decoder.decode(value, { stream: true }))) {
      if (event.id !== null) lastId = event.id;
      onEvent(event.type, event.data, event.id);
    }
  }
  return lastId;
}

/** Server-sent events from text as it arrives, in pieces cut anywhere. */
export class SseParser {
  constructor() {
    this.buffer = "";
  }

  /** The complete events ({type, data, id}) the text so far finishes. */
  push(text) {
    // Line ends may be \r\n, \r or \n; a \r at the end waits for the next piece.
    const all = this.buffer + text;
    const held = all.endsWith("\r") ? "\r" : "";
    let rest = (held ? all.slice(0, -1) : all).replace(/\r\n?/g, "\n");
    const events = [];
    let cut;
    while ((cut = rest.indexOf("\n\n")) >= 0) {
      const parsed = parseFrame(rest.slice(0, cut));
      rest = rest.slice(cut + 2);
      if (parsed) events.push(parsed);
    }
    this.buffer = rest + held;
    return events;
  }
}

/** One SSE frame -> {type, data, id}; comments (keep-alives) and empty frames -> null. */
export function parseFrame(frame) {
  let type = "message";
  let id = null;
  const data = [];
  for (const line of frame.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") type = value;
    else if (field === "id") id = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  try {
    return { type, id, data: JSON.parse(data.join("\n")) };
  } catch {
    return null;
  }
}
