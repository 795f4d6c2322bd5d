// Stress: steps of 50 VUs up to 300, a minute each, to find where latency breaks (8 minutes in all).
import { THRESHOLDS, mixedIteration } from './lib.js';

const steps = [];
for (let target = 50; target <= 300; target += 50) {
  steps.push({ duration: '20s', target: target });
  steps.push({ duration: '1m', target: target });
}
steps.push({ duration: '20s', target: 0 });

export const options = {
  stages: steps,
  thresholds: THRESHOLDS,
};

export default function () {
  mixedIteration();
}
