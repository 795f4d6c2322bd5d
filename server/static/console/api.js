// The public API of the server that served this page: same origin, the key from sessionStorage.

const KEY_NAME = "arrwdb.apiKey";
export const UNAUTHORIZED_EVENT = "arrwdb:unauthorized";

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY_NAME) || "";
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY_NAME, key);
  else sessionStorage.removeItem(KEY_NAME);
}

async function send(method, path, body, key) {
  const headers = {};
  if (key) headers["X-API-Key"] = key;
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const started = performance.now();
  const response = await fetch(path, init);
  const text = await response.text();
  const elapsedMs = performance.now() - started;
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  return { response, data, elapsedMs };
}

// One call: the parsed answer, its headers and the round trip; an ApiError for a 4xx/5xx.
export async function call(method, path, body) {
  const { response, data, elapsedMs } = await send(method, path, body, getKey());
  if (!response.ok) {
    const error = data && data.error ? data.error : { type: `http_${response.status}`, message: String(data || response.statusText) };
    if (response.status === 401) window.dispatchEvent(new CustomEvent(UNAUTHORIZED_EVENT));
    throw new ApiError(response.status, error.type, error.message);
  }
  return { data, headers: response.headers, status: response.status, elapsedMs };
}

// Whether the server asks for a key at all: a call without one.
export async function authRequired() {
  const { response } = await send("GET", "/v1/libraries", undefined, "");
  return response.status === 401;
}

export async function metricsText() {
  const response = await fetch("/metrics", { cache: "no-store", credentials: "same-origin" });
  if (!response.ok) throw new ApiError(response.status, `http_${response.status}`, "GET /metrics failed");
  return response.text();
}

export function libraryPath(name, ...rest) {
  return ["/v1/libraries", encodeURIComponent(name), ...rest.map((part) => encodeURIComponent(part))].join("/");
}

export const api = {
  libraries: async () => (await call("GET", "/v1/libraries")).data.libraries,
  library: async (name) => (await call("GET", libraryPath(name))).data,
  statistics: async (name) => (await call("GET", libraryPath(name, "statistics"))).data,
  createLibrary: async (body) => (await call("POST", "/v1/libraries", body)).data,
  deleteLibrary: (name) => call("DELETE", libraryPath(name)),
  documents: async (name, limit, cursor) => {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set("cursor", cursor);
    return (await call("GET", `${libraryPath(name, "documents")}?${query}`)).data;
  },
  document: async (name, id) => (await call("GET", libraryPath(name, "documents", id))).data,
  addDocument: async (name, document) => (await call("POST", libraryPath(name, "documents"), document)).data,
  addDocuments: async (name, documents) => (await call("POST", libraryPath(name, "documents", "batch"), { documents })).data,
  deleteDocument: (name, id) => call("DELETE", libraryPath(name, "documents", id)),
  search: (name, query) => call("POST", libraryPath(name, "search"), query),
  models: async () => (await call("GET", "/v1/models")).data.data,
  cluster: async () => (await call("GET", "/v1/cluster")).data,
};
