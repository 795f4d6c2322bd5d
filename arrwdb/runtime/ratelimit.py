"""Per-key rate limits: a token bucket per API key (per client address when auth is off).

Off unless ``ARRWDB_RATE_LIMIT_PER_S`` is set (API.md: no rate limit applies unless one is
configured).  A refused request costs one dictionary lookup and becomes a 429 with ``Retry-After``
(the whole seconds until the bucket holds a token again).  Runs on the event loop only: no lock.
"""

from __future__ import annotations

import contextvars
import math
import time
from collections import OrderedDict

from arrwdb.errors import RateLimited

# Buckets of keys not seen for a while are dropped beyond this many (a dropped bucket is full again,
# which only ever favours a key that has been quiet): memory stays bounded whatever the callers send.
MAX_BUCKETS = 65536

# The rate-limit key of the request being served, set by the HTTP layer's auth where the limit is kept
# by the engine process (one limit for every HTTP worker of the server): the engine protocol sends it.
RATE_KEY: contextvars.ContextVar[bytes | None] = contextvars.ContextVar("arrwdb_rate_key", default=None)


class RateLimiter:
    def __init__(self, per_s: float, burst: int | None = None, max_buckets: int = MAX_BUCKETS) -> None:
        if per_s <= 0:
            raise ValueError("a rate limit needs a positive rate")
        self.per_s = per_s
        self.burst = float(burst if burst is not None else max(1, math.ceil(per_s)))
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()  # who -> (tokens, at)

    def take(self, who: bytes, now: float | None = None) -> None:
        """Spend one token of ``who``'s bucket, or raise RateLimited (429) with the wait in Retry-After."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.pop(who, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.per_s)
        if tokens < 1.0:
            self._remember(who, tokens, now)
            wait_s = (1.0 - tokens) / self.per_s
            raise RateLimited(
                f"rate limit of {self.per_s:g} requests/s for this key exceeded",
                retry_after_s=max(1, math.ceil(wait_s)),
            )
        self._remember(who, tokens - 1.0, now)

    def _remember(self, who: bytes, tokens: float, now: float) -> None:
        self._buckets[who] = (tokens, now)  # re-inserted last: the OrderedDict is least recent first
        while len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)
