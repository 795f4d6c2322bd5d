// Building the page: every value goes into the document as a text node or a property, never as markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(parent, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const item of child) append(parent, item);
  } else if (child instanceof Node) {
    parent.appendChild(child);
  } else {
    parent.appendChild(document.createTextNode(String(child)));
  }
}

function setAttributes(element, attributes) {
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "on") {
      for (const [event, handler] of Object.entries(value)) element.addEventListener(event, handler);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (name === "value" || name === "checked" || name === "disabled" || name === "selected") {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

// h("tag", {attributes}, ...children): strings and numbers become text nodes.
export function h(tag, attributes, ...children) {
  const element = document.createElement(tag);
  setAttributes(element, attributes);
  append(element, children);
  return element;
}

export function svg(tag, attributes, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  setAttributes(element, attributes);
  append(element, children);
  return element;
}

export function clear(element) {
  while (element.firstChild) element.removeChild(element.firstChild);
  return element;
}

export function replace(element, ...children) {
  clear(element);
  append(element, children);
  return element;
}

// A link to a console address: the parts are encoded, so a name or id cannot change the route.
export function route(...parts) {
  return "#/" + parts.map((part) => encodeURIComponent(String(part))).join("/");
}

export function json(value) {
  return JSON.stringify(value, null, 2);
}

export function errorText(error) {
  if (error && error.status) return `${error.status} ${error.type}: ${error.message}`;
  return String(error && error.message ? error.message : error);
}

export function errorBox(error) {
  return h("p", { class: "error", role: "alert" }, errorText(error));
}

export function field(label, control, hint) {
  return h("label", { class: "field" }, h("span", { class: "field-label" }, label), control, hint ? h("small", { class: "muted" }, hint) : null);
}

export function select(id, options, value) {
  const element = h("select", { id });
  for (const option of options) {
    const [optionValue, text] = Array.isArray(option) ? option : [option, option];
    element.appendChild(h("option", { value: optionValue, selected: optionValue === value }, text));
  }
  return element;
}

export function table(headers, rows, attributes) {
  return h(
    "table",
    attributes || {},
    h("thead", null, h("tr", null, headers.map((header) => h("th", null, header)))),
    h("tbody", null, rows),
  );
}

// A button that asks to be pressed twice (for deletes), without a modal dialog.
export function confirmButton(text, action) {
  const button = h("button", { type: "button", class: "danger" }, text);
  let armed = null;
  button.addEventListener("click", async () => {
    if (!armed) {
      button.textContent = "Confirm " + text.toLowerCase();
      button.classList.add("armed");
      armed = setTimeout(() => {
        armed = null;
        button.textContent = text;
        button.classList.remove("armed");
      }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.disabled = true;
    await action();
  });
  return button;
}

export function formatNumber(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (!Number.isFinite(value)) return value > 0 ? "∞" : "–∞";
  return value.toFixed(digits);
}
