// The search playground: a query (text or vector), a filter, the retrieval options; hits with scores
// and the batching headers of the answer.

import { api } from "./api.js";
import { errorBox, field, formatNumber, h, json, replace, route, select, table } from "./dom.js";
import { filterEditor } from "./filter-editor.js";

const MODES = ["vector", "keyword", "hybrid"];
const TIMING_HEADERS = ["X-Queue-Ms", "X-Compute-Ms", "X-Batch-Size"];

function number(id, attributes) {
  return h("input", { id, type: "number", ...attributes });
}

function readNumber(input) {
  const text = input.value.trim();
  return text === "" ? undefined : Number(text);
}

function parseVector(text) {
  const value = JSON.parse(text);
  if (!Array.isArray(value) || !value.every((item) => typeof item === "number")) throw new Error("the vector is a JSON array of numbers");
  return value;
}

function hitRows(hits, library, offset) {
  return hits.map((hit, index) =>
    h(
      "tr",
      { class: "hit" },
      h("td", { class: "num" }, offset + index + 1),
      h("td", { class: "num score" }, formatNumber(hit.score, 4)),
      h("td", { class: "mono" }, h("a", { href: route("libraries", library, "documents", hit.document_id) }, hit.document_id)),
      h("td", { class: "num" }, hit.chunk_index),
      h("td", null, hit.title ?? ""),
      h("td", { class: "doc-text" }, hit.text ?? ""),
      h("td", { class: "mono doc-metadata" }, hit.metadata && Object.keys(hit.metadata).length ? JSON.stringify(hit.metadata) : ""),
    ),
  );
}

const HIT_HEADERS = ["#", "Score", "Document", "Chunk", "Title", "Text", "Metadata"];

function timings(answer) {
  const items = [["took_ms", formatNumber(answer.data.took_ms, 2)]];
  for (const name of TIMING_HEADERS) items.push([name, answer.headers.get(name) ?? "–"]);
  items.push(["round trip (ms)", formatNumber(answer.elapsedMs, 1)]);
  return h(
    "dl",
    { class: "timings", id: "search-timings" },
    items.map(([name, value]) => [h("dt", null, name), h("dd", { dataset: { timing: name } }, value)]),
  );
}

function results(answer, library, offset) {
  const data = answer.data;
  if (Array.isArray(data.groups)) {
    return h(
      "div",
      { id: "search-results" },
      h("p", { class: "muted" }, `${data.groups.length} groups`),
      data.groups.map((group) =>
        h("section", { class: "group" }, h("h3", null, "group ", h("span", { class: "mono" }, JSON.stringify(group.key))), table(HIT_HEADERS, hitRows(group.hits, library, 0))),
      ),
    );
  }
  return h(
    "div",
    { id: "search-results" },
    h("p", { class: "muted", id: "hit-count" }, `${data.results.length} hits`),
    data.results.length ? table(HIT_HEADERS, hitRows(data.results, library, offset), { id: "hits-table" }) : null,
  );
}

export async function renderSearch(root, { query }) {
  const [libraries, models] = await Promise.all([api.libraries(), api.models().catch(() => [])]);
  const rerankers = models.filter((model) => model.kind === "rerank");
  if (!libraries.length) {
    replace(root, h("h1", null, "Search"), h("p", { class: "muted" }, "No libraries yet: ", h("a", { href: "#/libraries" }, "create one"), "."));
    return;
  }
  const wanted = query.get("library");
  const library = select("search-library", libraries.map((lib) => lib.name), libraries.some((lib) => lib.name === wanted) ? wanted : libraries[0].name);
  const kind = select("search-kind", [["text", "text"], ["vector", "vector (JSON array)"]], "text");
  const text = h("textarea", { id: "search-query", rows: 2, placeholder: "what to look for" });
  const vector = h("textarea", { id: "search-vector", rows: 2, class: "mono", placeholder: "[0.1, 0.2, …]", hidden: true });
  kind.addEventListener("change", () => {
    text.hidden = kind.value !== "text";
    vector.hidden = kind.value !== "vector";
  });
  const k = number("search-k", { min: 1, max: 1000, value: 10 });
  const mode = select("search-mode", MODES, "vector");
  const keywords = h("input", { id: "search-keywords", placeholder: "defaults to the query" });
  const fusion = select("search-fusion", ["rrf", "dbsf"], "rrf");
  const fusionK = number("search-fusion-k", { min: 1, placeholder: "60" });
  const weights = h("input", { id: "search-weights", placeholder: "1, 1 (vector, keyword)" });
  const candidates = number("search-candidates", { min: 1, max: 1000, placeholder: "max(4k, 50)" });
  const threshold = number("search-threshold", { step: "any", placeholder: "none" });
  const offset = number("search-offset", { min: 0, placeholder: "0" });
  const groupBy = h("input", { id: "search-group-by", placeholder: "document_id or a metadata field" });
  const groupSize = number("search-group-size", { min: 1, placeholder: "1" });
  const includeText = h("input", { id: "search-include-text", type: "checkbox", checked: true });
  const rerankCandidates = number("search-rerank", { min: 1, max: 1000, placeholder: "off", disabled: !rerankers.length });
  const rerankModel = select("search-rerank-model", rerankers.map((model) => model.id), rerankers.length ? rerankers[0].id : "");
  rerankModel.disabled = !rerankers.length;
  const filter = filterEditor();
  const output = h("div", { id: "search-output" });
  const sent = h("pre", { class: "mono request", id: "search-request" });
  const hybridOnly = [fusion, fusionK, weights];
  const syncMode = () => {
    for (const input of hybridOnly) input.disabled = mode.value !== "hybrid";
  };
  mode.addEventListener("change", syncMode);
  syncMode();

  const body = () => {
    const request = { k: readNumber(k) ?? 10, include_text: includeText.checked };
    if (kind.value === "text") request.query = text.value;
    else request.embedding = parseVector(vector.value);
    if (mode.value !== "vector") request.mode = mode.value;
    if (mode.value !== "vector" && keywords.value.trim()) request.keywords = keywords.value.trim();
    if (mode.value === "hybrid") {
      const fused = { method: fusion.value };
      if (readNumber(fusionK) !== undefined) fused.k = readNumber(fusionK);
      if (weights.value.trim()) fused.weights = weights.value.split(",").map((item) => Number(item.trim()));
      request.fusion = fused;
    }
    for (const [key, input] of [["candidates", candidates], ["score_threshold", threshold], ["offset", offset]]) {
      const value = readNumber(input);
      if (value !== undefined) request[key] = value;
    }
    if (groupBy.value.trim()) {
      request.group_by = groupBy.value.trim();
      if (readNumber(groupSize) !== undefined) request.group_size = readNumber(groupSize);
    }
    if (rerankers.length && readNumber(rerankCandidates) !== undefined) {
      request.rerank = { candidates: readNumber(rerankCandidates), model: rerankModel.value };
    }
    const parsedFilter = filter.value();
    if (parsedFilter) request.filter = parsedFilter;
    return request;
  };

  const form = h(
    "form",
    { id: "search-form", class: "card" },
    h("div", { class: "form-grid" },
      field("Library", library),
      field("Query as", kind),
      field("Query", h("div", null, text, vector)),
      field("k", k),
      field("Mode", mode),
      field("Keywords", keywords),
      field("Fusion", fusion),
      field("Fusion k", fusionK),
      field("Weights", weights),
      field("Candidates", candidates),
      field("Score threshold", threshold),
      field("Offset", offset),
      field("Group by", groupBy),
      field("Group size", groupSize),
      field("Include text", includeText),
      field("Rerank candidates", rerankCandidates, rerankers.length ? null : "no reranker configured (ARRWDB_RERANK_MODEL)"),
      field("Rerank model", rerankModel),
    ),
    filter.element,
    h("div", { class: "actions" }, h("button", { type: "submit", id: "search-submit" }, "Search")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    output.dataset.state = "running";
    let request;
    try {
      request = body();
    } catch (error) {
      replace(output, errorBox(error));
      output.dataset.state = "error";
      return;
    }
    sent.textContent = `POST /v1/libraries/${library.value}/search\n${json(request)}`;
    try {
      const answer = await api.search(library.value, request);
      replace(output, timings(answer), results(answer, library.value, request.offset ?? 0));
      output.dataset.state = "done";
    } catch (error) {
      replace(output, errorBox(error));
      output.dataset.state = "error";
    }
  });
  replace(
    root,
    h("h1", null, "Search playground"),
    form,
    h("details", { class: "card" }, h("summary", null, "Request sent"), sent),
    output,
  );
}
