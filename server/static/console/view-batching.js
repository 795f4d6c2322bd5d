// Live batching: /metrics scraped every second; figures over the last minute of scrapes.

import { metricsText } from "./api.js";
import { barChart, chartCard, lineChart } from "./charts.js";
import { formatNumber, h, replace, select, table } from "./dom.js";
import { ScrapeWindow, labelValues, parseMetrics, quantile, total } from "./metrics.js";

const INTERVAL_MS = 1000;
const WINDOW_S = 60;
const QUANTILES = [0.5, 0.9, 0.99];
const LATENCIES = [
  ["queue", "arrwdb_queue_wait_seconds"],
  ["compute", "arrwdb_batch_compute_seconds"],
  ["end to end", "arrwdb_request_seconds"],
];
const DEADLINE_REASONS = ["deadline", "expired"];
// Requests to the API (/v1/...), not the console's own scrapes of /metrics.
const API_ROUTES = { route: (value) => value.startsWith("/v1/") };

function stat(id, label) {
  const value = h("span", { class: "stat-value", id }, "–");
  const note = h("small", { class: "muted" }, "");
  return { element: h("div", { class: "card stat" }, h("span", { class: "stat-label" }, label), value, note), value, note };
}

function bucketLabel(bound) {
  return bound === Infinity ? "∞" : String(bound);
}

export async function renderBatching(root) {
  const window_ = new ScrapeWindow(WINDOW_S);
  const series = { requests: [], depth: [], busy: [] };
  const queue = select("batching-queue", [["", "all queues"]], "");
  const updated = h("span", { class: "muted", id: "batching-updated" }, "waiting for the first scrape");
  const stats = {
    depth: stat("stat-depth", "Queue depth"),
    requests: stat("stat-requests", "API requests/s"),
    throughput: stat("stat-throughput", "Queued requests/s"),
    batches: stat("stat-batches", "Batches (last minute)"),
    size: stat("stat-mean-batch", "Mean batch size"),
    refused: stat("stat-429", "429 answers"),
    deadline: stat("stat-deadline", "Deadlines passed"),
    busy: stat("stat-busy", "Device busy"),
  };
  const percentiles = h("div", { id: "batching-percentiles" });
  const charts = h("div", { class: "charts", id: "batching-charts" });
  const problem = h("div", { id: "batching-problem" });
  let scrapes = 0;

  replace(
    root,
    h("h1", null, "Live batching"),
    h("p", { class: "muted" }, "From GET /metrics every second; rates, counts and percentiles over the last minute the page has been open. ", updated),
    h("p", null, queue),
    problem,
    h("div", { class: "stats" }, Object.values(stats).map((item) => item.element)),
    percentiles,
    charts,
  );

  const draw = () => {
    const wanted = queue.value ? { queue: queue.value } : {};
    const newest = window_.newest.samples;
    const span = window_.spanSeconds;
    const requests = window_.delta("arrwdb_request_seconds_count", wanted);
    const batches = window_.delta("arrwdb_batch_size_count", wanted);
    const items = window_.delta("arrwdb_batch_size_sum", wanted);
    const depth = total(newest, "arrwdb_queue_depth", wanted);
    const busy = total(newest, "arrwdb_device_busy_fraction");
    stats.depth.value.textContent = String(depth);
    const answered = window_.delta("arrwdb_http_requests_total", API_ROUTES);
    stats.requests.value.textContent = span > 0 ? formatNumber(answered / span, 1) : "–";
    stats.requests.note.textContent = `${answered} answered in ${formatNumber(span, 0)} s`;
    stats.throughput.value.textContent = span > 0 ? formatNumber(requests / span, 1) : "–";
    stats.throughput.note.textContent = queue.value ? `${requests} through ${queue.value}` : `${requests}, every queue`;
    stats.batches.value.textContent = String(batches);
    stats.size.value.textContent = batches > 0 ? formatNumber(items / batches, 1) : "–";
    stats.refused.value.textContent = String(window_.delta("arrwdb_http_requests_total", { status: "429" }));
    stats.refused.note.textContent = `${total(newest, "arrwdb_http_requests_total", { status: "429" })} since start`;
    stats.deadline.value.textContent = String(window_.delta("arrwdb_requests_dropped_total", { reason: DEADLINE_REASONS }));
    stats.deadline.note.textContent = `${total(newest, "arrwdb_requests_dropped_total", { reason: DEADLINE_REASONS })} since start`;
    stats.busy.value.textContent = `${formatNumber(busy * 100, 0)} %`;

    const rows = LATENCIES.map(([label, name]) => {
      const histogram = window_.histogram(name, wanted);
      return h("tr", null, h("th", null, label), QUANTILES.map((q) => h("td", { class: "num" }, formatNumber(ms(quantile(q, histogram)), 2))));
    });
    replace(percentiles, h("section", { class: "card" }, h("h2", null, "Latency over the last minute (ms)"), table(["", "p50", "p90", "p99"], rows, { id: "latency-table" })));

    series.requests.push(window_.lastRate("arrwdb_http_requests_total", API_ROUTES));
    series.depth.push(depth);
    series.busy.push(busy * 100);
    for (const values of Object.values(series)) if (values.length > WINDOW_S) values.shift();
    const histogram = window_.histogram("arrwdb_batch_size", wanted);
    const bars = [];
    let previous = 0;
    for (const [bound, cumulative] of histogram) {
      bars.push({ label: bucketLabel(bound), value: cumulative - previous });
      previous = cumulative;
    }
    replace(
      charts,
      chartCard("Batch sizes (last minute)", barChart("chart-batch-sizes", bars)),
      chartCard("API requests", lineChart("chart-requests", series.requests, "req/s")),
      chartCard("Queue depth", lineChart("chart-depth", series.depth, "waiting")),
      chartCard("Device busy", lineChart("chart-busy", series.busy, "%")),
    );
  };

  const tick = async () => {
    try {
      const samples = parseMetrics(await metricsText());
      window_.add(Date.now(), samples);
      const queues = labelValues(samples, "arrwdb_batch_size_bucket", "queue");
      for (const name of queues) if (![...queue.options].some((option) => option.value === name)) queue.appendChild(h("option", { value: name }, name));
      scrapes += 1;
      updated.dataset.scrapes = String(scrapes);
      updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
      replace(problem);
      draw();
    } catch (error) {
      replace(problem, h("p", { class: "error", role: "alert" }, `GET /metrics failed: ${error.message}`));
    }
  };
  queue.addEventListener("change", () => window_.newest && draw());
  await tick();
  const timer = setInterval(tick, INTERVAL_MS);
  return () => clearInterval(timer);
}

function ms(seconds) {
  return seconds === null ? null : seconds * 1000;
}
