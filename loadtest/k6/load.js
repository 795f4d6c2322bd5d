// Load: ramp to a steady 50 VUs, hold, ramp down (4 minutes in all).
import { THRESHOLDS, mixedIteration } from './lib.js';

export const options = {
  stages: [
    { duration: '30s', target: 50 },
    { duration: '3m', target: 50 },
    { duration: '30s', target: 0 },
  ],
  thresholds: THRESHOLDS,
};

export default function () {
  mixedIteration();
}
