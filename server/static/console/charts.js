// Two small SVG charts drawn from numbers only: bars (a histogram) and a line over time.

import { h, svg } from "./dom.js";

const WIDTH = 320;
const HEIGHT = 110;
const PAD = 18;

export function barChart(id, bars) {
  const largest = Math.max(1, ...bars.map((bar) => bar.value));
  const step = (WIDTH - 2 * PAD) / Math.max(1, bars.length);
  const shapes = [];
  bars.forEach((bar, index) => {
    const height = ((HEIGHT - 2 * PAD) * bar.value) / largest;
    const x = PAD + index * step;
    shapes.push(
      svg("rect", { x: x + 2, y: HEIGHT - PAD - height, width: Math.max(1, step - 4), height, class: "bar" }, svg("title", null, `${bar.label}: ${bar.value}`)),
      svg("text", { x: x + step / 2, y: HEIGHT - 4, class: "axis", "text-anchor": "middle" }, bar.label),
    );
    if (bar.value > 0) shapes.push(svg("text", { x: x + step / 2, y: HEIGHT - PAD - height - 3, class: "value", "text-anchor": "middle" }, String(bar.value)));
  });
  return svg("svg", { id, class: "chart", viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img" }, shapes);
}

export function lineChart(id, values, unit) {
  const largest = Math.max(1e-9, ...values);
  const step = (WIDTH - 2 * PAD) / Math.max(1, values.length - 1);
  const points = values.map((value, index) => `${(PAD + index * step).toFixed(1)},${(HEIGHT - PAD - ((HEIGHT - 2 * PAD) * value) / largest).toFixed(1)}`);
  const latest = values.length ? values[values.length - 1] : 0;
  return svg(
    "svg",
    { id, class: "chart", viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img" },
    svg("line", { x1: PAD, y1: HEIGHT - PAD, x2: WIDTH - PAD, y2: HEIGHT - PAD, class: "baseline" }),
    points.length > 1 ? svg("polyline", { points: points.join(" "), class: "line" }) : null,
    svg("text", { x: PAD, y: 12, class: "axis" }, `max ${formatShort(largest)} ${unit}`),
    svg("text", { x: WIDTH - PAD, y: 12, class: "axis", "text-anchor": "end" }, `now ${formatShort(latest)} ${unit}`),
  );
}

function formatShort(value) {
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

export function chartCard(title, chart) {
  return h("figure", { class: "card chart-card" }, h("figcaption", null, title), chart);
}
