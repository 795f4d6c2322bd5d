"""What the scheduler queues and runs: a queue's specification, a waiting request, and one batch on its
way through the prepare thread, the device worker and the finishing thread (arrwdb.runtime.scheduler forms
the batches and delivers their results on the event loop)."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arrwdb.runtime.timings import Completed

if TYPE_CHECKING:
    from arrwdb.runtime.scheduler import Scheduler

log = logging.getLogger("arrwdb.runtime.scheduler")

# Lower runs first: interactive work (searches, query embeddings) goes ahead of bulk ingestion.
PRIORITY_INTERACTIVE = 0
PRIORITY_WRITE = 1
PRIORITY_BULK = 2


@dataclass(frozen=True)
class QueueSpec:
    """How one queue's batches are formed and run.

    ``run`` executes on the device worker: it receives the payloads (or what ``prepare`` made of them)
    and returns one result per payload, in order (or, with ``finish``, what ``finish`` turns into
    those); a result that is an exception fails only its item.  ``run`` may instead return a
    ``concurrent.futures.Future`` of those results, for work it handed to threads of its own (a CPU
    forward pass in lanes): the worker then goes on with its next job at once.
    """

    key: Hashable
    kind: str  # metrics label: "search", "embed", ...
    priority: int
    run: Callable[[Any], Sequence[Any]]
    prepare: Callable[[list[Any]], Any] | None = None
    max_cost: int | None = None  # e.g. a token budget; None = count items only
    # Queues with the same ``top_up`` key run the same function: room left in a batch of the more urgent
    # one is filled from the others (query embeddings take insert texts along, sparing a forward pass).
    top_up: Hashable | None = None
    # The batch's size (X-Batch-Size, the histogram) counts the items' costs, not the items: a search
    # item is a block of queries, and its cost the number of them.
    size_is_cost: bool = False
    # Host-side work on what ``run`` returned, done on the finishing thread so that the device worker
    # starts its next batch at once: it must return one result per payload (search hits built from the
    # snapshot the batch took) and must not touch state that the device worker mutates.
    finish: Callable[[Any], Sequence[Any]] | None = None
    # Whether ``run`` may hand its work to threads of its own (returning a Future: see above); such
    # batches may start on the worker while earlier ones still compute there, other jobs wait for them
    # (DeviceWorker.hand_off).
    hands_off: bool = False
    # Whether a batch of these payloads is brief enough to run on the event loop's thread while the
    # device worker is idle and nothing else is queued or in flight (Scheduler._start); asked with no
    # job running, so it may read the state that jobs change.  None: always on the worker.
    short: Callable[[list[Any]], bool] | None = None


@dataclass(eq=False)
class Pending:
    payload: Any
    future: asyncio.Future[Completed]
    enqueued: float
    deadline: float
    cost: int


EXPIRED = object()  # result slot of an item dropped at batch start


class BatchJob:
    """One batch on its way through the (optional) prepare thread, the device worker and the (optional)
    finishing thread."""

    def __init__(self, scheduler: Scheduler, spec: QueueSpec, items: list[Pending], weight: int) -> None:
        self.scheduler = scheduler
        self.spec = spec
        self.items = items
        self.weight = weight  # what its items count against the queue bound (Scheduler._weight)
        self.prepared: Any = [item.payload for item in items]
        self.started = 0.0
        self.on_worker = True  # False once the device worker is done with it (loop-side flag)
        # The event loop's thread, where the loop may run the job itself (Scheduler._run_here).
        self.loop_thread: int | None = None

    @property
    def overlaps_handoffs(self) -> bool:
        """Whether the device worker may start this batch while work handed off before still runs."""
        return self.spec.hands_off

    def prepare(self) -> None:
        try:
            if self.spec.prepare is not None:
                self.prepared = self.spec.prepare(self.prepared)
        except Exception as exc:
            self.fail(exc)
            return
        self.scheduler.worker.submit(self)

    def run(self) -> None:
        self.started = now = time.monotonic()
        # A staged batch may have waited: drop what expired or was abandoned meanwhile, before compute.
        # (Reading done() from this thread is a plain attribute read; the loop owns every transition.)
        live = [not item.future.done() and item.deadline > now for item in self.items]
        if not any(live):
            results: list[Any] = [EXPIRED] * len(self.items)
            self._to_loop(self.scheduler._complete, self, results, None, 0.0)
            return
        payloads = self.prepared
        if self.spec.prepare is None and not all(live):
            payloads = [p for p, keep in zip(payloads, live, strict=True) if keep]
        t0 = time.perf_counter()
        computed = self.spec.run(payloads)
        kept = None if payloads is self.prepared else live
        if isinstance(computed, Future):
            # The work goes on on other threads (a CPU forward pass in lanes): the worker takes its next
            # job now; the batch stays on the worker for the scheduler (it holds its place among the
            # two, Scheduler._on_worker) until the work is done and delivered.
            self.scheduler.worker.hand_off(computed)
            computed.add_done_callback(functools.partial(self._settle, kept, t0))
            return
        compute = time.perf_counter() - t0
        if self.spec.finish is None:
            self._deliver(computed, kept, compute)
            return
        if not self.scheduler.has_waiting():
            # Nothing waits for the worker: finishing here saves a hand-off to the finish thread (a
            # thread wake-up, tens of microseconds of a lone request's latency).
            self._finish(computed, kept, compute)
            return
        # The worker is free: the scheduler may start the next batch while this one is finished.
        self.scheduler.loop.call_soon_threadsafe(self.scheduler._left_worker, self)
        self.scheduler._finish_pool.submit(self._finish, computed, kept, compute)

    def _settle(self, kept: list[bool] | None, t0: float, done: Future[Any]) -> None:
        """On the thread that finished ``run``'s future: deliver its results (finishing them first when
        the queue has a finish step), or fail the batch with its error."""
        compute = time.perf_counter() - t0
        self.scheduler.worker.add_busy(compute)
        error = done.exception()
        if error is not None:
            self.fail(error, compute)
        elif self.spec.finish is None:
            self._deliver(done.result(), kept, compute)
        else:
            self._finish(done.result(), kept, compute)

    def _finish(self, computed: Any, kept: list[bool] | None, compute: float) -> None:
        try:
            self._deliver(self.spec.finish(computed), kept, compute)  # type: ignore[misc]
        except BaseException as exc:  # whatever happens here, the batch's callers get an answer
            log.exception("finishing a %s batch failed", self.spec.kind)
            self.fail(exc, compute)

    def _deliver(self, computed: Sequence[Any], kept: list[bool] | None, compute: float) -> None:
        """Hand the results to the loop; ``kept`` marks the items computed (the rest expired at start)."""
        if kept is None:
            results = list(computed)
        else:
            produced = iter(computed)
            results = [next(produced) if keep else EXPIRED for keep in kept]
        self._to_loop(self.scheduler._complete, self, results, None, compute)

    def fail(self, exc: BaseException, compute: float = 0.0) -> None:
        self._to_loop(self.scheduler._complete, self, None, exc, compute)

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        """Call ``callback`` on the event loop: from another thread with a wake-up, from the loop's
        own thread (a job it ran itself) without the self-pipe write a wake-up costs."""
        loop = self.scheduler.loop
        on_loop = self.loop_thread is not None and threading.get_ident() == self.loop_thread
        (loop.call_soon if on_loop else loop.call_soon_threadsafe)(callback, *args)
