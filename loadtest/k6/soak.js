// Soak: a moderate steady load for a long time, to surface leaks and slow drift (SOAK_DURATION,
// 30m by default; bounded, like every scenario).  Watch RSS and arrwdb_result_cache_bytes meanwhile.
import { THRESHOLDS, mixedIteration } from './lib.js';

const HOLD = __ENV.SOAK_DURATION || '30m';

export const options = {
  stages: [
    { duration: '1m', target: 40 },
    { duration: HOLD, target: 40 },
    { duration: '1m', target: 0 },
  ],
  thresholds: THRESHOLDS,
};

export default function () {
  mixedIteration();
}
