"""The device worker: the one thread that owns the device.

Embedder forward passes, index searches and index updates all run here, one job at a time, in the
order they were submitted (FAISS GPU indexes and torch modules are not safe to share across threads,
and batching is our only source of device concurrency) — except that urgent jobs (a commit's index
update, a millisecond or less, that its writers wait on) go ahead of the batches already queued, among
themselves still in order.  A job that waits on work of other threads (a CPU forward pass in lanes)
may let urgent jobs run on the worker meanwhile (``serve_urgent_until``).  A job fails its own callers
when it raises; if the thread itself dies, every queued job is failed and ``alive`` turns False so
/ready says 503.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from arrwdb.errors import NotReady
from arrwdb.runtime.thread_priority import lower_this_thread

log = logging.getLogger("arrwdb.runtime.device_worker")

T = TypeVar("T")
_URGENT, _NORMAL = 0, 1


class Job(Protocol):
    def run(self) -> None:
        """Do the work and deliver the results; must not raise for a per-request failure."""

    def fail(self, exc: BaseException) -> None:
        """Deliver ``exc`` to every caller of this job."""

    # Optional: True for a job that may start while work earlier jobs handed off still computes
    # (``DeviceWorker.hand_off``); a job without the attribute waits for that work first.


class _Wake:
    """Queued, urgent, when work a job waits on finishes (``serve_urgent_until``): it wakes the worker
    and does nothing (one left in the queue after the wait runs as a no-op)."""

    def run(self) -> None:
        pass

    def fail(self, exc: BaseException) -> None:
        pass


_WAKE = _Wake()
_local = threading.local()


def current_worker() -> DeviceWorker | None:
    """The device worker whose thread calls this; None on every other thread."""
    return getattr(_local, "worker", None)


class DeviceWorker:
    def __init__(
        self, setup: Callable[[], None] | None = None, name: str = "arrwdb-device", lanes: bool = True
    ) -> None:
        self._setup = setup
        # Whether its jobs may run a CPU forward pass in lanes (arrwdb.embed.minilm.cpu_lanes); off
        # when ARRWDB_TORCH_THREADS fixes the thread count.
        self.lanes = lanes
        # (urgency, arrival, job): urgent jobs first, each lane first in first out.  None stops the thread.
        self._jobs: queue.PriorityQueue[tuple[int, int, Job | None]] = queue.PriorityQueue()
        self._arrivals = itertools.count()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._death_callbacks: list[Callable[[BaseException], None]] = []
        self._lock = threading.Lock()
        # Held while a job runs, on the worker's thread or on a caller's (run_here): two jobs never run
        # at once.  Re-entrant: serve_urgent_until runs urgent jobs inside the current one.
        self._running = threading.RLock()
        # Work that jobs handed to other threads (``hand_off``) and that may still compute.
        self._handed_off: list[Future[Any]] = []
        self.handed_off_seconds = 0.0
        self._handed_off_lock = threading.Lock()
        self.alive = False
        self.busy_seconds = 0.0
        self.started_at = 0.0
        self.error: BaseException | None = None

    def on_death(self, callback: Callable[[BaseException], None]) -> None:
        self._death_callbacks.append(callback)

    def start(self) -> None:
        self.alive = True
        self.started_at = time.monotonic()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._jobs.put((_NORMAL, next(self._arrivals), None))
            self._thread.join(timeout)
        self.alive = False

    def submit(self, job: Job, *, urgent: bool = False) -> None:
        with self._lock:
            if not self.alive:
                job.fail(NotReady("the device worker is not running"))
                return
            self._jobs.put((_URGENT if urgent else _NORMAL, next(self._arrivals), job))

    def run_here(self, job: Job, short: Callable[[], bool]) -> bool:
        """Run ``job`` on the calling thread when the worker is idle (alive, no job running or queued)
        and ``short()`` says the job is brief, asked with no job running; the worker takes no job
        meanwhile.  For work shorter than the hand-off to the worker's thread and back.  Returns whether
        it ran."""
        if not self.alive or not self._jobs.empty() or self._handoffs_pending():
            return False
        if not self._running.acquire(blocking=False):
            return False
        try:
            if not self._jobs.empty() or not short():
                return False
            self._run(job, busy=True)
            return True
        finally:
            self._running.release()

    def serve_urgent_until(self, pending: Sequence[Future[Any]]) -> None:
        """On the worker thread, inside a job: run urgent jobs while ``pending`` (work on other threads
        that touches no index) is not all done.  Measured under 64 inserting clients on 2 cores: a
        commit's index update waited for the running forward pass, ~6 ms on average of each insert's
        ~48.  Jobs that are not urgent keep their place and run after the current job, as before."""
        if threading.current_thread() is not self._thread:
            raise RuntimeError("serve_urgent_until runs on the device worker, inside a job")
        wake = lambda _: self._jobs.put((_URGENT, next(self._arrivals), _WAKE))  # noqa: E731
        for future in pending:
            future.add_done_callback(wake)
        deferred = []
        try:
            while not all(future.done() for future in pending):
                item = self._jobs.get()
                job = item[2]
                if item[0] != _URGENT or job is None:
                    deferred.append(item)  # a batch, or the stop signal: after the current job
                else:
                    self._run(job, busy=False)  # the job waiting here counts this time already
        finally:
            for item in deferred:
                self._jobs.put(item)

    def hand_off(self, work: Future[Any]) -> None:
        """On the worker thread, inside a job: ``work`` goes on on other threads (a CPU forward pass
        in lanes) after the job returns.  Urgent jobs and jobs that may overlap it
        (``Job.overlaps_handoffs``: more of the same) start at once; any other job first waits for it,
        serving urgent jobs meanwhile, so that work which takes every core (a search batch) does not
        share them with it (measured: text queries at 64 clients lost 4% when their searches did)."""
        self._handed_off = [*(f for f in self._handed_off if not f.done()), work]

    def _handoffs_pending(self) -> bool:
        return any(not f.done() for f in self._handed_off)

    def _settle_handoffs(self) -> None:
        pending = [f for f in self._handed_off if not f.done()]
        if pending:
            self.serve_urgent_until(pending)
        self._handed_off = []

    def has_jobs(self) -> bool:
        """Whether a job waits in the worker's queue (a read from any thread; a moment's answer)."""
        return not self._jobs.empty()

    def add_busy(self, seconds: float) -> None:
        """Count ``seconds`` of compute that a job handed to other threads (CPU lanes) as busy time.
        Called by those threads; a lock of its own, which the event loop never takes (a thread below
        the loop's priority that held a lock the loop waits for would stall it)."""
        with self._handed_off_lock:
            self.handed_off_seconds += seconds

    def busy_fraction(self) -> float:
        """Share of the time since the start that the worker, or work it handed off, computed (at most
        1: handed-off work may overlap the worker's next job)."""
        elapsed = time.monotonic() - self.started_at
        busy = self.busy_seconds + self.handed_off_seconds
        return min(1.0, busy / elapsed) if elapsed > 0 else 0.0

    def _main(self) -> None:
        _local.worker = self
        lower_this_thread()  # before its first parallel region: its OpenMP team inherits the priority
        try:
            if self._setup is not None:
                self._setup()
            while True:
                urgency, _, job = self._jobs.get()
                if job is None:
                    return
                # Urgent jobs are brief (they also run inside a wait for handed-off work).
                if self._handed_off and urgency != _URGENT and not getattr(job, "overlaps_handoffs", False):
                    self._settle_handoffs()
                self._run(job, busy=True)
        except BaseException as exc:  # the thread ends here: fail everything it still holds
            self._die(exc)

    def _run(self, job: Job, busy: bool) -> None:
        # The busy time is added under the lock too: the worker's thread and a ``run_here`` caller both
        # add to it, and ``+=`` on an attribute is a read and a write the other thread may fall between.
        with self._running:
            started = time.perf_counter()
            try:
                job.run()
            except Exception as exc:  # a bug in a job: fail its callers, keep serving
                log.exception("device job failed")
                job.fail(exc)
            finally:
                if busy:
                    self.busy_seconds += time.perf_counter() - started

    def _die(self, exc: BaseException) -> None:
        log.critical("the device worker died: %r", exc)
        with self._lock:
            self.alive = False
            self.error = exc
        failure = NotReady(f"the device worker died: {exc!r}")
        while True:
            try:
                _, _, job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.fail(failure)
        for callback in self._death_callbacks:
            callback(exc)


class _SyncCall:
    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except Exception as exc:
            self.error = exc
        self.done.set()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self.done.set()


def call_on_worker(worker: DeviceWorker, fn: Callable[[], T]) -> T:
    """Run ``fn`` on the device worker and wait for it, from another plain thread (the builder)."""
    call = _SyncCall(fn)
    worker.submit(call)
    call.done.wait()
    if call.error is not None:
        raise call.error
    return call.result  # type: ignore[return-value]


class _AsyncCall:
    """A one-off function run on the device worker (loading, library set-up)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], Any]) -> None:
        self.loop = loop
        self.fn = fn
        self.future: asyncio.Future[Any] = loop.create_future()

    def run(self) -> None:
        result = self.fn()
        self.loop.call_soon_threadsafe(_settle, self.future, result, None)

    def fail(self, exc: BaseException) -> None:
        self.loop.call_soon_threadsafe(_settle, self.future, None, exc)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


async def await_on_worker(worker: DeviceWorker, loop: asyncio.AbstractEventLoop, fn: Callable[[], T]) -> T:
    """Run ``fn`` on the device worker and await its result from the event loop."""
    call = _AsyncCall(loop, fn)
    worker.submit(call)
    return await call.future  # type: ignore[no-any-return]
