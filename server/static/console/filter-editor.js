// The filter editor: a JSON box (what is sent) and a row that adds one condition to it.

import { field, h, select } from "./dom.js";

const OPERATORS = [
  ["$eq", "="], ["$ne", "≠"], ["$gt", ">"], ["$gte", "≥"], ["$lt", "<"], ["$lte", "≤"], ["$in", "in"], ["$nin", "not in"],
];

// "3" -> 3, "true" -> true, "poetry" -> "poetry", '"3"' -> "3"
function parseValue(text) {
  const trimmed = text.trim();
  try {
    return JSON.parse(trimmed);
  } catch {
    return trimmed;
  }
}

function condition(operator, text) {
  if (operator === "$in" || operator === "$nin") return { [operator]: text.split(",").map(parseValue) };
  return { [operator]: parseValue(text) };
}

export function addCondition(filter, name, operator, text) {
  const added = { [name]: condition(operator, text) };
  if (!filter || Object.keys(filter).length === 0) return added;
  if (Array.isArray(filter.$and) && Object.keys(filter).length === 1) return { $and: [...filter.$and, added] };
  return { $and: [filter, added] };
}

export function filterEditor() {
  const box = h("textarea", { id: "filter-json", class: "mono", rows: 3, placeholder: '{"year": {"$gte": 1900}}' });
  const name = h("input", { id: "filter-field", placeholder: "metadata field" });
  const operator = select("filter-operator", OPERATORS, "$eq");
  const value = h("input", { id: "filter-value", placeholder: "value (JSON or text; a, b for in)" });
  const error = h("small", { class: "error", id: "filter-error" });
  const current = () => {
    const text = box.value.trim();
    if (!text) return undefined;
    const parsed = JSON.parse(text);
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("a filter is a JSON object");
    return parsed;
  };
  const add = h("button", { type: "button", id: "filter-add" }, "Add condition");
  add.addEventListener("click", () => {
    error.textContent = "";
    if (!name.value.trim()) {
      error.textContent = "name a field";
      return;
    }
    try {
      box.value = JSON.stringify(addCondition(current(), name.value.trim(), operator.value, value.value));
      name.value = value.value = "";
    } catch (problem) {
      error.textContent = `the filter box is not valid JSON: ${problem.message}`;
    }
  });
  const clearButton = h("button", { type: "button", id: "filter-clear" }, "Clear");
  clearButton.addEventListener("click", () => {
    box.value = "";
    error.textContent = "";
  });
  const element = h(
    "fieldset",
    { class: "filter-editor" },
    h("legend", null, "Filter"),
    h("div", { class: "inline" }, name, operator, value, add, clearButton),
    field("Filter (JSON, Mongo-style)", box),
    error,
  );
  return { element, value: current, box };
}
