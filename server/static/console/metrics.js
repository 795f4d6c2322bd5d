// Prometheus text from /metrics, and figures over a window of scrapes: counters and histogram
// buckets are cumulative, so the difference of two scrapes covers the time between them.

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = SAMPLE.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, name, value] of (match[2] || "").matchAll(LABEL)) labels[name] = value.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    samples.push({ name: match[1], labels, value: parseFloat(match[3]) });
  }
  return samples;
}

// wanted: { label: value }, { label: [values] } or { label: (value) => bool }; every one must hold.
function matches(labels, wanted) {
  return Object.entries(wanted || {}).every(([key, value]) => {
    if (typeof value === "function") return key in labels && value(labels[key]);
    return Array.isArray(value) ? value.includes(labels[key]) : labels[key] === value;
  });
}

export function total(samples, name, wanted) {
  let sum = 0;
  for (const sample of samples) if (sample.name === name && matches(sample.labels, wanted)) sum += sample.value;
  return sum;
}

export function labelValues(samples, name, label) {
  const found = new Set();
  for (const sample of samples) if (sample.name === name && label in sample.labels) found.add(sample.labels[label]);
  return [...found].sort();
}

// Cumulative buckets of a histogram, summed over the series that match: [[le, count]] by le.
export function buckets(samples, histogram, wanted) {
  const byBound = new Map();
  for (const sample of samples) {
    if (sample.name !== `${histogram}_bucket` || !matches(sample.labels, wanted)) continue;
    const bound = sample.labels.le === "+Inf" ? Infinity : parseFloat(sample.labels.le);
    byBound.set(bound, (byBound.get(bound) || 0) + sample.value);
  }
  return [...byBound.entries()].sort((a, b) => a[0] - b[0]);
}

export function bucketDelta(newer, older) {
  const before = new Map(older);
  return newer.map(([bound, count]) => [bound, Math.max(0, count - (before.get(bound) || 0))]);
}

// Prometheus's histogram_quantile: linear within the bucket that holds the rank.
export function quantile(q, cumulative) {
  if (!cumulative.length) return null;
  const count = cumulative[cumulative.length - 1][1];
  if (count <= 0) return null;
  const rank = q * count;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [bound, cumulativeCount] of cumulative) {
    if (cumulativeCount >= rank) {
      if (bound === Infinity) return lowerBound;
      const inBucket = cumulativeCount - lowerCount;
      return inBucket > 0 ? lowerBound + (bound - lowerBound) * ((rank - lowerCount) / inBucket) : bound;
    }
    lowerBound = bound;
    lowerCount = cumulativeCount;
  }
  return lowerBound;
}

// Scrapes kept for a window of seconds; the oldest kept is the baseline of the window's figures.
export class ScrapeWindow {
  constructor(seconds) {
    this.seconds = seconds;
    this.scrapes = [];
  }

  add(time, samples) {
    const newest = this.scrapes[this.scrapes.length - 1];
    // A counter that went down: the server restarted; start the window again.
    if (newest && total(samples, "arrwdb_http_requests_total") < total(newest.samples, "arrwdb_http_requests_total")) this.scrapes = [];
    this.scrapes.push({ time, samples });
    while (this.scrapes.length > 2 && time - this.scrapes[1].time >= this.seconds * 1000) this.scrapes.shift();
  }

  get newest() {
    return this.scrapes[this.scrapes.length - 1];
  }

  get oldest() {
    return this.scrapes[0];
  }

  get spanSeconds() {
    return this.scrapes.length < 2 ? 0 : (this.newest.time - this.oldest.time) / 1000;
  }

  delta(name, wanted) {
    if (this.scrapes.length < 2) return 0;
    return Math.max(0, total(this.newest.samples, name, wanted) - total(this.oldest.samples, name, wanted));
  }

  histogram(name, wanted) {
    const newest = buckets(this.newest.samples, name, wanted);
    return this.scrapes.length < 2 ? newest : bucketDelta(newest, buckets(this.oldest.samples, name, wanted));
  }

  // The last step (between the two newest scrapes): a per-second rate for the sparklines.
  lastRate(name, wanted) {
    if (this.scrapes.length < 2) return 0;
    const [previous, newest] = this.scrapes.slice(-2);
    const seconds = (newest.time - previous.time) / 1000;
    return seconds > 0 ? Math.max(0, total(newest.samples, name, wanted) - total(previous.samples, name, wanted)) / seconds : 0;
  }
}
