// Spike: a quiet baseline, a sudden jump to 200 VUs, then back (about 3 minutes in all).
import { THRESHOLDS, mixedIteration } from './lib.js';

export const options = {
  stages: [
    { duration: '30s', target: 10 },
    { duration: '10s', target: 200 },
    { duration: '1m', target: 200 },
    { duration: '10s', target: 10 },
    { duration: '1m', target: 10 },
    { duration: '10s', target: 0 },
  ],
  thresholds: THRESHOLDS,
};

export default function () {
  mixedIteration();
}
