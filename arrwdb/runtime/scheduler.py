"""The micro-batching scheduler: gathers concurrent requests into batches for the device worker.

Policy (DESIGN.md):
- a lone request never waits: when the worker is idle, whatever is queued is dispatched at once;
- while the worker is busy, the next batch fills up to ``max_batch_size`` (or its cost budget).  Where
  the queue has a ``prepare`` step (tokenising), the batch closes at the latest ``max_batch_wait_ms``
  after its oldest request and is prepared on a helper thread and staged, so it starts the moment the
  running batch ends; without one it keeps filling until the worker frees, since staging it earlier
  would not start it sooner.  At most one batch runs and one is staged;
- admission is bounded: beyond ``max_queue`` requests waiting for the device (queued, staged, or in
  the batch it runs), ``Overloaded`` (429) at once;
- requests whose deadline passed, or whose caller went away (future cancelled), are dropped before
  compute and counted;
- where the queue has a ``finish`` step (building search hits from the batch's snapshot), the worker
  hands its output to the finishing thread and starts the next batch at once;
- results are delivered once per batch with ``call_soon_threadsafe``; a batch that raises fails every
  future in it; a dead worker fails everything pending.  Nothing waits forever.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from arrwdb.errors import ArrwdbError, DeadlineExceeded, NotReady, Overloaded, WorkerFailure
from arrwdb.runtime.admission import ADMITTED, AdmissionTicket, ReservedPlaces
from arrwdb.runtime.batch_job import (
    EXPIRED,
    PRIORITY_BULK,
    PRIORITY_INTERACTIVE,
    PRIORITY_WRITE,
    BatchJob,
    Pending,
    QueueSpec,
)
from arrwdb.runtime.device_worker import DeviceWorker
from arrwdb.runtime.telemetry import Telemetry
from arrwdb.runtime.thread_priority import lower_this_thread
from arrwdb.runtime.timings import Completed

__all__ = ["PRIORITY_BULK", "PRIORITY_INTERACTIVE", "PRIORITY_WRITE", "QueueSpec", "Scheduler"]


@dataclass(eq=False)
class _Queue:
    spec: QueueSpec
    items: deque[Pending] = field(default_factory=deque)
    cost: int = 0


class Scheduler:
    def __init__(
        self,
        worker: DeviceWorker,
        telemetry: Telemetry,
        *,
        max_batch_size: int,
        max_batch_wait_ms: float,
        max_queue: int,
    ) -> None:
        self.worker = worker
        self.telemetry = telemetry
        self.max_batch_size = max_batch_size
        self.max_batch_wait = max_batch_wait_ms / 1000.0
        self.max_queue = max_queue
        self.loop = asyncio.get_running_loop()
        self._queues: dict[Hashable, _Queue] = {}
        self._waiting = 0
        self._reserved = ReservedPlaces()  # requests admitted at the door, not queued yet
        self._timer: asyncio.TimerHandle | None = None
        self._dispatch_scheduled = False
        self._dead: BaseException | None = None
        # Called after every dispatch pass, the point after which ``full`` may read differently (every
        # submit, completion and batch start leads to one): the engine process posts it for its workers.
        self.on_dispatched: Callable[[], None] | None = None
        # Batches dispatched and not yet answered, oldest first (the worker runs them in about this order:
        # a batch with a prepare step reaches it only once prepared).
        self._jobs_in_flight: dict[BatchJob, None] = {}
        self._prepare_pool = ThreadPoolExecutor(1, "arrwdb-prepare", initializer=lower_this_thread)
        self._finish_pool = ThreadPoolExecutor(1, "arrwdb-finish", initializer=lower_this_thread)
        worker.on_death(lambda exc: self.loop.call_soon_threadsafe(self._worker_died, exc))

    @property
    def waiting(self) -> int:
        return self._waiting

    def has_waiting(self) -> bool:
        """Whether any request waits for the device worker, queued here or staged in its queue.  Read
        on the worker thread: an int and a queue's size, a moment's answer (a request that comes just
        after waits for one batch's finish step)."""
        return self._waiting > 0 or self.worker.has_jobs()

    def close(self) -> None:
        self._fail_everything(NotReady("the server is shutting down"))

    def _fail_everything(self, failure: BaseException) -> None:
        """Fail every request still waiting or inside a batch (a batch whose prepare or finish step is
        cancelled below would otherwise never answer), and stop the helper threads."""
        self._prepare_pool.shutdown(wait=False, cancel_futures=True)
        self._finish_pool.shutdown(wait=False, cancel_futures=True)
        for job in list(self._jobs_in_flight):
            for item in job.items:
                if not item.future.done():
                    item.future.set_exception(failure)
        self._jobs_in_flight.clear()
        for queue in self._queues.values():
            for item in queue.items:
                if not item.future.done():
                    item.future.set_exception(failure)
            self.telemetry.queue(queue.spec.kind).depth.dec(self._weight(queue.spec, queue.items))
        self._queues.clear()
        self._waiting = 0  # nothing waits now: requests that come get NotReady (503), not 429

    # -- admission ---------------------------------------------------------------------------

    @property
    def full(self) -> bool:
        return self._waiting + self._reserved.count + self._on_worker_items() >= self.max_queue

    def reserve(self) -> AdmissionTicket:
        """A place for a request admitted at the door (see arrwdb/runtime/admission.py)."""
        return AdmissionTicket(self._reserved)

    def _on_worker_items(self) -> int:
        """What the device worker holds: the batch it runs and the one staged behind it.  Their
        requests wait for their answers as the queued ones do, so they count against ``max_queue``:
        then what an overload holds is bounded by ``max_queue`` itself, and an admitted request waits at
        most about ``max_queue`` / throughput.  Counting only the queue let a full queue sit behind a
        staged and a running batch: at twice the load of 256 closed-loop clients (``max_queue`` 256),
        admitted p99 883-973 ms counting the queue alone, 545-575 ms with the staged batch, 2.6-2.8x
        the saturated p99; 1.4-1.6x with the running batch too.  Asked on every hot request: each
        batch's weight is counted once, when it is formed."""
        return sum(job.weight for job in self._on_worker())

    def _on_worker(self) -> list[BatchJob]:
        """The batches running or staged on the worker, oldest first (not those being finished)."""
        return [job for job in self._jobs_in_flight if job.on_worker]

    @staticmethod
    def _weight(spec: QueueSpec, items: Sequence[Pending]) -> int:
        """How much ``items`` count against ``max_queue`` and in a batch's size: their queries for search
        blocks (a 256-query request weighs what 256 single queries do), one each otherwise."""
        return sum(item.cost for item in items) if spec.size_is_cost else len(items)

    def admit(self) -> None:
        """Raise Overloaded (429) while the queues are full.  The HTTP layer asks before it reads a
        request's body, so that refusing costs next to nothing when the event loop is busiest."""
        if self.full:
            raise self.refuse()

    def refuse(self) -> Overloaded:
        """Count a request refused because the queues are full, and the error that tells its caller."""
        self.telemetry.dropped.labels("rejected_queue_full").inc()
        waiting = self._waiting + self._reserved.count + self._on_worker_items()
        return Overloaded(f"the server is overloaded ({waiting} requests waiting)", retry_after_s=1)

    async def submit(self, spec: QueueSpec, payload: Any, *, deadline: float, cost: int = 1) -> Completed:
        """Queue one request and wait for its result (or its deadline)."""
        return (await self.submit_many(spec, [payload], deadline=deadline, costs=[cost]))[0]

    async def submit_many(
        self, spec: QueueSpec, payloads: Sequence[Any], *, deadline: float, costs: Sequence[int] | None = None
    ) -> list[Completed]:
        """Queue the items of one request (the queries of a batch search) together and wait for all of
        their results: one admission check, one deadline timer and one wait for the lot, not a task per
        item.  Items may still land in different batches; the first failure fails the request."""
        if self._dead is not None:
            raise NotReady("the device worker is not running")
        ticket = ADMITTED.get()
        if ticket is None:
            self.admit()
        else:
            ticket.release()  # admitted at the door: its place passes to the items queued below
        now = time.monotonic()
        if deadline <= now:
            self.telemetry.dropped.labels("expired").inc()
            raise DeadlineExceeded("the request's deadline passed before it was queued")
        queue = self._queues.get(spec.key)
        if queue is None:
            queue = self._queues[spec.key] = _Queue(spec)
        futures: list[asyncio.Future[Completed]] = []
        added = []
        for position, payload in enumerate(payloads):
            cost = 1 if costs is None else costs[position]
            future: asyncio.Future[Completed] = self.loop.create_future()
            added.append(Pending(payload, future, now, deadline, cost))
            queue.cost += cost
            futures.append(future)
        queue.items.extend(added)
        weight = self._weight(spec, added)
        self._waiting += weight
        self.telemetry.queue(spec.kind).depth.inc(weight)
        self._schedule_dispatch()
        # A timer, not wait_for: no extra task per request.  Cancelling the caller cancels the futures,
        # which the batch former then skips.
        timer = self.loop.call_at(self.loop.time() + (deadline - now), self._expire_all, futures)
        try:
            if len(futures) == 1:
                return [await futures[0]]
            return list(await asyncio.gather(*futures))
        except BaseException:
            for future in futures:  # a failed item fails the request: the rest need no compute
                future.cancel()
            raise
        finally:
            timer.cancel()
            elapsed = time.monotonic() - now
            end_to_end = self.telemetry.queue(spec.kind).end_to_end
            for _ in futures:
                end_to_end.observe(elapsed)

    def _expire_all(self, futures: list[asyncio.Future[Completed]]) -> None:
        for future in futures:
            self._expire(future)

    def _expire(self, future: asyncio.Future[Completed]) -> None:
        if not future.done():
            self.telemetry.dropped.labels("deadline").inc()
            future.set_exception(DeadlineExceeded("the request's deadline passed"))

    # -- dispatch ----------------------------------------------------------------------------

    def _schedule_dispatch(self) -> None:
        # Coalesce wake-ups: many submits in one loop iteration cause one dispatch pass.
        if not self._dispatch_scheduled:
            self._dispatch_scheduled = True
            self.loop.call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._dispatch_scheduled = False
        self._dispatch_batches()
        if self.on_dispatched is not None:
            self.on_dispatched()

    def _dispatch_batches(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while len(on_worker := self._on_worker()) < 2 and self._dead is None:
            queue = self._pick()
            if queue is None:
                return
            now = time.monotonic()
            if on_worker and not self._full(queue):
                if queue.spec.prepare is None:
                    # Nothing to prepare ahead: a batch staged now would start no sooner than one taken
                    # when the worker frees (_complete dispatches again), and would hold fewer requests.
                    # Staging early let a closed loop of clients split into two half-size batches that
                    # leapfrog, each one's HTTP work overlapping the other's matmul.
                    return
                # The worker is busy: let this batch fill (and be prepared) until the oldest request
                # has waited enough.
                close_at = queue.items[0].enqueued + self.max_batch_wait
                if now < close_at:
                    self._timer = self.loop.call_at(self._loop_time(close_at, now), self._dispatch)
                    return
            items = self._take(queue, now)
            if items:
                self._top_up(queue, items, now)
                self._start(queue.spec, items)

    def _loop_time(self, monotonic_deadline: float, now: float) -> float:
        return self.loop.time() + max(0.0, monotonic_deadline - now)

    def _pick(self) -> _Queue | None:
        best: _Queue | None = None
        empty = []
        for key, queue in self._queues.items():
            if not queue.items:
                empty.append(key)
                continue
            if best is None or (queue.spec.priority, queue.items[0].enqueued) < (
                best.spec.priority,
                best.items[0].enqueued,
            ):
                best = queue
        for key in empty:  # queues of deleted libraries or idle shapes must not pile up
            del self._queues[key]
        return best

    def _full(self, queue: _Queue) -> bool:
        if len(queue.items) >= self.max_batch_size:
            return True
        return queue.spec.max_cost is not None and queue.cost >= queue.spec.max_cost

    def _top_up(self, picked: _Queue, items: list[Pending], now: float) -> None:
        """Fill the room left in ``items`` from the less urgent queues that share its ``top_up`` key,
        most urgent first.  Nothing more urgent waits: ``picked`` was the most urgent queue."""
        key = picked.spec.top_up
        if key is None or len(items) >= self.max_batch_size:
            return
        others = [q for q in self._queues.values() if q is not picked and q.items and q.spec.top_up == key]
        for queue in sorted(others, key=lambda q: q.spec.priority):
            cost = sum(item.cost for item in items)
            items.extend(self._take(queue, now, room=self.max_batch_size - len(items), spent=cost))

    def _take(self, queue: _Queue, now: float, room: int | None = None, spent: int = 0) -> list[Pending]:
        taken: list[Pending] = []
        cost = spent
        budget = queue.spec.max_cost
        limit = self.max_batch_size if room is None else room
        while queue.items and len(taken) < limit:
            item = queue.items[0]
            if (taken or spent) and budget is not None and cost + item.cost > budget:
                break
            queue.items.popleft()
            queue.cost -= item.cost
            weight = self._weight(queue.spec, (item,))
            self._waiting -= weight
            self.telemetry.queue(queue.spec.kind).depth.dec(weight)
            if item.future.done():  # the caller gave up (deadline, disconnect): costs no compute
                self.telemetry.dropped.labels("cancelled").inc()
                continue
            if item.deadline <= now:
                self.telemetry.dropped.labels("expired").inc()
                item.future.set_exception(DeadlineExceeded("the request's deadline passed while it was queued"))
                continue
            taken.append(item)
            cost += item.cost
        return taken

    def _start(self, spec: QueueSpec, items: list[Pending]) -> None:
        job = BatchJob(self, spec, items, self._weight(spec, items))
        self._jobs_in_flight[job] = None
        if spec.prepare is not None:
            self._prepare_pool.submit(job.prepare)
        elif not self._run_here(spec, job):
            self.worker.submit(job)

    def _run_here(self, spec: QueueSpec, job: BatchJob) -> bool:
        """Run a brief batch (``spec.short``) on the loop's thread when it is the only work: a lone
        search then costs no thread wake-up on either side and no GIL hand-over between the two threads.
        Its result comes back as every batch's does."""
        short = spec.short
        if short is None or len(self._jobs_in_flight) != 1 or self._waiting:
            return False
        job.loop_thread = threading.get_ident()
        if self.worker.run_here(job, lambda: short(job.prepared)):
            return True
        job.loop_thread = None
        return False

    # -- completion (on the event loop) -------------------------------------------------------

    def _left_worker(self, job: BatchJob) -> None:
        """The worker is done with ``job`` (its finish step runs elsewhere): dispatch the next batch."""
        if job in self._jobs_in_flight:
            job.on_worker = False
            self._schedule_dispatch()

    def _complete(self, job: BatchJob, results: list[Any] | None, error: BaseException | None, compute: float) -> None:
        if job not in self._jobs_in_flight:
            return  # already failed (worker death)
        del self._jobs_in_flight[job]
        kind = job.spec.kind
        if results is not None and len(results) != len(job.items):
            error = WorkerFailure(f"a {kind} batch returned {len(results)} results for {len(job.items)} requests")
        # The batch's size is what was computed: items dropped at batch start do not count.
        kept = job.items
        if results is not None:
            kept = [item for item, result in zip(job.items, results, strict=False) if result is not EXPIRED]
        size = self._weight(job.spec, kept)
        if size:
            self.telemetry.queue(kind).batch_size.observe(size)
            self.telemetry.queue(kind).compute.observe(compute)
        self.telemetry.device_busy.set(self.worker.busy_fraction())
        for index, item in enumerate(job.items):
            if item.future.done():
                continue
            if error is not None:
                item.future.set_exception(_as_api_error(error))
                continue
            result = results[index] if results is not None else None
            if result is EXPIRED:
                self.telemetry.dropped.labels("expired").inc()
                item.future.set_exception(DeadlineExceeded("the request's deadline passed while it was queued"))
                continue
            if isinstance(result, BaseException):
                item.future.set_exception(result)
                continue
            queue_s = max(0.0, job.started - item.enqueued) if job.started else 0.0
            self.telemetry.queue(kind).queue_wait.observe(queue_s)
            item.future.set_result(Completed(result, queue_s * 1000.0, compute * 1000.0, size))
        self._schedule_dispatch()

    def _worker_died(self, exc: BaseException) -> None:
        self._dead = exc
        self._fail_everything(NotReady(f"the device worker died: {exc!r}"))


def _as_api_error(error: BaseException) -> BaseException:
    if isinstance(error, ArrwdbError):
        return error
    return WorkerFailure(f"the device batch failed: {type(error).__name__}: {error}")
