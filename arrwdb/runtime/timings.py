"""What a request's trip through the batches reports: per item (``Completed``) and per request
(``Timings``, the response headers X-Queue-Ms, X-Compute-Ms and X-Batch-Size)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Completed:
    """A result plus the timings the HTTP layer reports in X-Queue-Ms / X-Compute-Ms / X-Batch-Size."""

    value: Any
    queue_ms: float
    compute_ms: float
    batch_size: int


@dataclass(frozen=True)
class Timings:
    """What the response headers report: the slowest stage of the request's items."""

    queue_ms: float = 0.0
    compute_ms: float = 0.0
    batch_size: int = 0

    @staticmethod
    def of(done: list[Completed]) -> Timings:
        if not done:
            return Timings()
        return Timings(max(c.queue_ms for c in done), max(c.compute_ms for c in done), max(c.batch_size for c in done))

    def __add__(self, other: Timings) -> Timings:
        return Timings(
            self.queue_ms + other.queue_ms,
            self.compute_ms + other.compute_ms,
            max(self.batch_size, other.batch_size),
        )
