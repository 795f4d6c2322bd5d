// The console's shell: the address (#/...) picks a view; the API key is typed once per browser session.

import { UNAUTHORIZED_EVENT, authRequired, call, getKey, setKey } from "./api.js";
import { h, replace } from "./dom.js";
import { renderBatching } from "./view-batching.js";
import { renderCluster } from "./view-cluster.js";
import { renderDocument, renderDocuments } from "./view-documents.js";
import { renderLibraries, renderLibrary } from "./view-libraries.js";
import { renderSearch } from "./view-search.js";

const main = document.getElementById("view");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("key-input");
const keyStatus = document.getElementById("key-status");
let stopView = null;
let shown = 0; // which call of show() is the newest: an older one that finishes late is dropped

// "#/libraries/a%20b/documents?cursor=x" -> { parts: ["libraries", "a b", "documents"], query }
function parseAddress() {
  const address = location.hash.replace(/^#\/?/, "");
  const [path, search] = address.split("?", 2);
  const parts = path.split("/").filter(Boolean).map((part) => decodeURIComponent(part));
  return { parts, query: new URLSearchParams(search || "") };
}

function pick(parts) {
  const [first, name, sub, id] = parts;
  if (!first || (first === "libraries" && parts.length === 1)) return ["libraries", renderLibraries, {}];
  if (first === "libraries" && parts.length === 2) return ["library", renderLibrary, { name }];
  if (first === "libraries" && sub === "documents" && parts.length === 3) return ["documents", renderDocuments, { name }];
  if (first === "libraries" && sub === "documents" && parts.length === 4) return ["document", renderDocument, { name, id }];
  if (first === "search" && parts.length === 1) return ["search", renderSearch, {}];
  if (first === "batching" && parts.length === 1) return ["batching", renderBatching, {}];
  if (first === "cluster" && parts.length === 1) return ["cluster", renderCluster, {}];
  return ["missing", renderMissing, {}];
}

function renderMissing(root) {
  replace(root, h("h1", null, "Not found"), h("p", null, "No console view at this address. ", h("a", { href: "#/libraries" }, "Libraries")));
}

async function show() {
  if (stopView) stopView();
  stopView = null;
  const { parts, query } = parseAddress();
  const [name, render, params] = pick(parts);
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", name.startsWith(link.dataset.nav) || (link.dataset.nav === "libraries" && ["library", "documents", "document"].includes(name)));
  }
  const current = ++shown;
  main.dataset.view = name;
  main.dataset.state = "loading";
  // Each view draws into a container of its own, so a slower earlier view cannot draw over this one.
  const container = h("div", { class: "view-body" }, h("p", { class: "muted" }, "Loading…"));
  replace(main, container);
  try {
    const stop = (await render(container, { ...params, query })) || null;
    if (current !== shown) {
      if (stop) stop();
      return;
    }
    stopView = stop;
    main.dataset.state = "ready";
  } catch (error) {
    if (current !== shown) return;
    main.dataset.state = "error";
    replace(container, h("h1", null, "Something went wrong"), h("p", { class: "error", role: "alert" }, describe(error)));
  }
}

function describe(error) {
  if (error && error.status === 401) return "This server needs an API key: type it in the box above.";
  if (error && error.status) return `${error.status} ${error.type}: ${error.message}`;
  return String(error && error.message ? error.message : error);
}

function showKeyForm(message) {
  keyForm.hidden = false;
  keyInput.value = getKey();
  keyStatus.textContent = message;
}

async function saveKey(event) {
  event.preventDefault();
  setKey(keyInput.value.trim());
  try {
    await call("GET", "/v1/libraries");
    keyStatus.textContent = "key accepted";
    keyStatus.className = "key-status ok";
  } catch (error) {
    keyStatus.textContent = error.status === 401 ? "key refused" : describe(error);
    keyStatus.className = "key-status bad";
  }
  show();
}

async function start() {
  keyForm.addEventListener("submit", saveKey);
  document.getElementById("key-forget").addEventListener("click", () => {
    setKey("");
    keyInput.value = "";
    keyStatus.textContent = "no key";
    keyStatus.className = "key-status";
    show();
  });
  window.addEventListener(UNAUTHORIZED_EVENT, () => showKeyForm(getKey() ? "key refused" : "this server needs a key"));
  window.addEventListener("hashchange", show);
  try {
    if (await authRequired()) showKeyForm(getKey() ? "key kept for this session" : "this server needs a key");
  } catch {
    // The server is unreachable: the view says so.
  }
  await show();
}

start();
