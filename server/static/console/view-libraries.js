// Libraries: the list with a create form, and one library with its statistics.

import { api } from "./api.js";
import { confirmButton, errorBox, field, h, json, replace, route, select, table } from "./dom.js";

const INDEX_TYPES = ["brute_force", "ivf", "hnsw"];
const METRICS = ["cosine", "ip", "l2"];

function optionalInt(input) {
  const text = input.value.trim();
  return text === "" ? undefined : Number(text);
}

async function embeddingModels() {
  try {
    return (await api.models()).filter((model) => (model.kind || "embedding") === "embedding");
  } catch {
    return [];
  }
}

function createForm(models, onCreated) {
  const name = h("input", { id: "new-library-name", required: true, pattern: "[A-Za-z0-9._:\\-]+", placeholder: "my-library" });
  const indexType = select("new-library-index", INDEX_TYPES, "brute_force");
  const metric = select("new-library-metric", METRICS, "cosine");
  const dimension = h("input", { id: "new-library-dimension", type: "number", min: 1, max: 4096, placeholder: "the model's" });
  const model = select("new-library-model", [["", "default"], ...models.map((m) => [m.id, `${m.id} (${m.dimension}-d)`])], "");
  const shards = h("input", { id: "new-library-shards", type: "number", min: 1, placeholder: "1" });
  const replicas = h("input", { id: "new-library-replicas", type: "number", min: 1, placeholder: "1" });
  const status = h("div", { class: "status" });
  const form = h(
    "form",
    { id: "create-library", class: "card form-grid" },
    h("h2", null, "New library"),
    field("Name", name),
    field("Index", indexType),
    field("Metric", metric),
    field("Model", model),
    field("Dimension", dimension, "vectors-only libraries"),
    field("Shards", shards),
    field("Replicas", replicas),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Create library")),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { name: name.value.trim(), index_type: indexType.value, metric: metric.value };
    if (model.value) body.model = model.value;
    for (const [key, input] of [["dimension", dimension], ["shards", shards], ["replicas", replicas]]) {
      const value = optionalInt(input);
      if (value !== undefined) body[key] = value;
    }
    try {
      await api.createLibrary(body);
      await onCreated();
    } catch (error) {
      replace(status, errorBox(error));
    }
  });
  return form;
}

function libraryRow(library, onDeleted) {
  return h(
    "tr",
    { dataset: { library: library.name } },
    h("td", null, h("a", { href: route("libraries", library.name) }, library.name)),
    h("td", { class: "mono" }, library.id),
    h("td", { class: "num" }, library.document_count),
    h("td", { class: "num" }, library.dimension),
    h("td", null, library.index_type),
    h("td", null, library.metric),
    h("td", { class: "num" }, library.shards ?? 1),
    h("td", null, library.created_at ?? ""),
    h(
      "td",
      { class: "row-actions" },
      h("a", { href: route("libraries", library.name, "documents") }, "Documents"),
      h("a", { href: `#/search?library=${encodeURIComponent(library.name)}` }, "Search"),
      confirmButton("Delete", async () => {
        await api.deleteLibrary(library.name);
        await onDeleted();
      }),
    ),
  );
}

export async function renderLibraries(root) {
  const [libraries, models] = await Promise.all([api.libraries(), embeddingModels()]);
  const refresh = async () => {
    await renderLibraries(root);
  };
  const rows = libraries.map((library) => libraryRow(library, refresh));
  replace(
    root,
    h("h1", null, "Libraries"),
    libraries.length
      ? table(["Name", "Id", "Documents", "Dimension", "Index", "Metric", "Shards", "Created", ""], rows, { id: "libraries-table" })
      : h("p", { class: "muted", id: "no-libraries" }, "No libraries yet: create one below."),
    createForm(models, refresh),
  );
}

function keyValueTable(id, object) {
  const rows = Object.entries(object).map(([key, value]) =>
    h("tr", null, h("th", null, key), h("td", { class: typeof value === "object" && value !== null ? "mono pre" : "" }, typeof value === "object" && value !== null ? json(value) : String(value))),
  );
  return h("table", { id, class: "kv" }, h("tbody", null, rows));
}

export async function renderLibrary(root, { name }) {
  const [library, statistics] = await Promise.all([api.library(name), api.statistics(name)]);
  replace(
    root,
    h("p", { class: "crumbs" }, h("a", { href: "#/libraries" }, "Libraries"), " / ", library.name),
    h("h1", null, library.name),
    h(
      "p",
      { class: "row-actions" },
      h("a", { class: "button", href: route("libraries", library.name, "documents") }, "Documents"),
      h("a", { class: "button", href: `#/search?library=${encodeURIComponent(library.name)}` }, "Search"),
      confirmButton("Delete library", async () => {
        await api.deleteLibrary(library.name);
        location.hash = "#/libraries";
      }),
    ),
    h("div", { class: "columns" },
      h("section", { class: "card" }, h("h2", null, "Library"), keyValueTable("library-fields", library)),
      h("section", { class: "card" }, h("h2", null, "Statistics"), keyValueTable("library-statistics", statistics)),
    ),
  );
}
