// Documents: cursor pages of one library, one document, and adding from a form or a JSONL file.

import { api } from "./api.js";
import { confirmButton, errorBox, errorText, field, h, replace, route, select, table } from "./dom.js";

const PAGE_SIZES = ["10", "25", "100"];
const UPLOAD_BATCH = 256;
const EXCERPT = 160;

function excerpt(text) {
  if (!text) return "";
  return text.length > EXCERPT ? text.slice(0, EXCERPT) + "…" : text;
}

function metadataText(metadata) {
  return metadata && Object.keys(metadata).length ? JSON.stringify(metadata) : "";
}

function pageAddress(name, limit, cursor) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (cursor) query.set("cursor", cursor);
  return `${route("libraries", name, "documents")}?${query}`;
}

function parseMetadata(text) {
  if (!text.trim()) return undefined;
  const value = JSON.parse(text);
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("metadata must be a JSON object");
  return value;
}

function addForm(name, onAdded) {
  const id = h("input", { id: "doc-id", placeholder: "generated when empty" });
  const title = h("input", { id: "doc-title" });
  const text = h("textarea", { id: "doc-text", rows: 4 });
  const metadata = h("textarea", { id: "doc-metadata", rows: 2, class: "mono", placeholder: '{"genre": "poetry", "year": 1850}' });
  const status = h("div", { class: "status", id: "doc-add-status" });
  const form = h(
    "form",
    { id: "add-document", class: "card form-grid" },
    h("h2", null, "Add a document"),
    field("Id", id),
    field("Title", title),
    field("Text", text),
    field("Metadata (JSON)", metadata),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Add document")),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const document = { text: text.value };
      if (id.value.trim()) document.id = id.value.trim();
      if (title.value) document.title = title.value;
      const parsed = parseMetadata(metadata.value);
      if (parsed) document.metadata = parsed;
      const answer = await api.addDocument(name, document);
      replace(status, h("p", { class: "ok" }, "Added ", h("a", { href: route("libraries", name, "documents", answer.id) }, answer.id)));
      await onAdded();
    } catch (error) {
      replace(status, errorBox(error));
    }
  });
  return form;
}

function parseLines(text) {
  const documents = [];
  const lines = text.split(/\r?\n/);
  for (let index = 0; index < lines.length; index++) {
    if (!lines[index].trim()) continue;
    let value;
    try {
      value = JSON.parse(lines[index]);
    } catch (error) {
      throw new Error(`line ${index + 1}: not JSON (${error.message})`);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error(`line ${index + 1}: not a JSON object`);
    documents.push(value);
  }
  return documents;
}

function uploadForm(name, onAdded) {
  const file = h("input", { id: "jsonl-file", type: "file", accept: ".jsonl,.json,.ndjson,application/x-ndjson,text/plain" });
  const progress = h("progress", { id: "jsonl-progress", max: 1, value: 0 });
  const count = h("span", { id: "jsonl-count", class: "muted" }, "");
  const status = h("div", { class: "status", id: "jsonl-status" });
  const button = h("button", { type: "submit" }, "Upload");
  const form = h(
    "form",
    { id: "upload-jsonl", class: "card form-grid" },
    h("h2", null, "Add from a JSONL file"),
    h("p", { class: "muted" }, `One document per line, sent ${UPLOAD_BATCH} at a time to /documents/batch.`),
    field("File", file),
    h("div", { class: "actions" }, button, progress, count),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!file.files.length) {
      replace(status, h("p", { class: "error" }, "Choose a file first."));
      return;
    }
    button.disabled = true;
    replace(status);
    let written = 0;
    try {
      const documents = parseLines(await file.files[0].text());
      progress.max = Math.max(documents.length, 1);
      for (let start = 0; start < documents.length; start += UPLOAD_BATCH) {
        const batch = documents.slice(start, start + UPLOAD_BATCH);
        await api.addDocuments(name, batch);
        written += batch.length;
        progress.value = written;
        count.textContent = `${written} / ${documents.length}`;
      }
      form.dataset.done = String(written);
      replace(status, h("p", { class: "ok" }, `Added ${written} documents.`));
      await onAdded();
    } catch (error) {
      replace(status, h("p", { class: "error", role: "alert" }, `Stopped after ${written} documents: ${errorText(error)}`));
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

function documentRow(name, document, onDeleted) {
  return h(
    "tr",
    { dataset: { document: document.id } },
    h("td", { class: "mono" }, h("a", { href: route("libraries", name, "documents", document.id) }, document.id)),
    h("td", null, document.title ?? ""),
    h("td", { class: "doc-text" }, excerpt(document.text)),
    h("td", { class: "mono doc-metadata" }, metadataText(document.metadata)),
    h(
      "td",
      null,
      confirmButton("Delete", async () => {
        await api.deleteDocument(name, document.id);
        await onDeleted();
      }),
    ),
  );
}

export async function renderDocuments(root, { name, query }) {
  const limit = PAGE_SIZES.includes(query.get("limit")) ? Number(query.get("limit")) : 25;
  const cursor = query.get("cursor") || "";
  const count = h("p", { class: "muted", id: "document-count" });
  const list = h("div", { id: "documents-list" });
  // The page of documents and the count are drawn again after a change; the forms keep their state.
  const refresh = async () => {
    const [library, page] = await Promise.all([api.library(name), api.documents(name, limit, cursor)]);
    count.textContent = `${library.document_count} documents`;
    const size = select("page-size", PAGE_SIZES, String(limit));
    size.addEventListener("change", () => {
      location.hash = pageAddress(name, size.value, "");
    });
    const pager = h(
      "p",
      { class: "pager" },
      field("Per page", size),
      cursor ? h("a", { class: "button", href: pageAddress(name, limit, ""), id: "first-page" }, "First page") : null,
      page.next_cursor ? h("a", { class: "button", href: pageAddress(name, limit, page.next_cursor), id: "next-page" }, "Next page") : h("span", { class: "muted" }, "Last page"),
    );
    const rows = page.documents.map((document) => documentRow(name, document, refresh));
    replace(list, pager, rows.length ? table(["Id", "Title", "Text", "Metadata", ""], rows, { id: "documents-table" }) : h("p", { class: "muted", id: "no-documents" }, "No documents on this page."));
  };
  await refresh();
  replace(
    root,
    h("p", { class: "crumbs" }, h("a", { href: "#/libraries" }, "Libraries"), " / ", h("a", { href: route("libraries", name) }, name), " / documents"),
    h("h1", null, `Documents of ${name}`),
    count,
    list,
    h("div", { class: "columns" }, addForm(name, refresh), uploadForm(name, refresh)),
  );
}

export async function renderDocument(root, { name, id }) {
  const document = await api.document(name, id);
  const metadataRows = Object.entries(document.metadata || {}).map(([key, value]) =>
    h("tr", null, h("th", null, key), h("td", { class: "mono" }, typeof value === "string" ? value : JSON.stringify(value))),
  );
  const embedding = Array.isArray(document.embedding) ? document.embedding : null;
  replace(
    root,
    h("p", { class: "crumbs" }, h("a", { href: "#/libraries" }, "Libraries"), " / ", h("a", { href: route("libraries", name) }, name), " / ", h("a", { href: route("libraries", name, "documents") }, "documents"), " / ", document.id),
    h("h1", { id: "document-title" }, document.title || document.id),
    h("section", { class: "card" },
      h("h2", null, "Document"),
      h("table", { class: "kv", id: "document-fields" }, h("tbody", null,
        h("tr", null, h("th", null, "id"), h("td", { class: "mono" }, document.id)),
        h("tr", null, h("th", null, "title"), h("td", null, document.title ?? "")),
        embedding ? h("tr", null, h("th", null, "embedding"), h("td", { class: "mono" }, `${embedding.length} values: ${embedding.slice(0, 6).map((v) => v.toFixed(4)).join(", ")}…`)) : null,
      )),
      h("h3", null, "Text"),
      h("pre", { class: "doc-body", id: "document-text" }, document.text ?? ""),
      h("h3", null, "Metadata"),
      metadataRows.length ? h("table", { class: "kv", id: "document-metadata" }, h("tbody", null, metadataRows)) : h("p", { class: "muted" }, "none"),
    ),
    h("p", { class: "row-actions" },
      confirmButton("Delete document", async () => {
        await api.deleteDocument(name, document.id);
        location.hash = route("libraries", name, "documents");
      }),
    ),
  );
}
