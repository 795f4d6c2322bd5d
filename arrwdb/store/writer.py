"""Group commit: one writer thread turns many concurrent write requests into one SQLite transaction.

A request waits in the commit queue while the previous transaction fsyncs; the next transaction takes
every request that arrived meanwhile, so N concurrent writers share one fsync.  After the commit the
changes are applied to the in-memory indexes on the device worker (in commit order, through the
worker's urgent lane, ahead of queued batches) and only then is each writer acknowledged: a search that starts after the
acknowledgement sees the write.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from arrwdb.errors import ArrwdbError, NotReady, StorageFailure
from arrwdb.records import AppliedWrite, WriteOp
from arrwdb.runtime.device_worker import DeviceWorker
from arrwdb.runtime.telemetry import Telemetry
from arrwdb.runtime.thread_priority import lower_this_thread
from arrwdb.store.store import Store, WriteResult

log = logging.getLogger("arrwdb.store.writer")


@dataclass(eq=False)
class _WriteRequest:
    library_id: str
    ops: Sequence[WriteOp]
    future: asyncio.Future[list[AppliedWrite]]


class _ApplyJob:
    """Mirror one transaction's changes into the indexes on the device worker, then acknowledge."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        apply: Callable[[list[AppliedWrite]], None],
        requests: list[_WriteRequest],
        results: list[WriteResult],
    ) -> None:
        self.loop = loop
        self.apply = apply
        self.requests = requests
        self.results = results

    def run(self) -> None:
        applied = [write for result in self.results if not isinstance(result, ArrwdbError) for write in result]
        self.apply(applied)
        self.loop.call_soon_threadsafe(_deliver, self.requests, self.results)

    def fail(self, exc: BaseException) -> None:
        error = exc if isinstance(exc, ArrwdbError) else NotReady(f"the write was committed but not indexed: {exc!r}")
        self.loop.call_soon_threadsafe(_deliver, self.requests, [error] * len(self.requests))


def _deliver(requests: list[_WriteRequest], results: Sequence[WriteResult | BaseException]) -> None:
    for request, result in zip(requests, results, strict=True):
        if request.future.done():
            continue
        if isinstance(result, BaseException):
            request.future.set_exception(result)
        else:
            request.future.set_result(result)


class GroupCommitter:
    def __init__(
        self,
        store: Store,
        worker: DeviceWorker,
        apply: Callable[[list[AppliedWrite]], None],
        telemetry: Telemetry,
        max_requests_per_commit: int = 512,
    ) -> None:
        self.store = store
        # ARRWDB_MAX_BATCH_SIZE=1 turns group commit off too: one request, one fsync (the baseline).
        self.max_requests_per_commit = max_requests_per_commit
        self.worker = worker
        self.apply = apply
        self.telemetry = telemetry
        self.loop = asyncio.get_running_loop()
        self._requests: queue.SimpleQueue[_WriteRequest | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name="arrwdb-writer", daemon=True)
        self._thread.start()

    async def write(self, library_id: str, ops: Sequence[WriteOp]) -> list[AppliedWrite]:
        """Commit ``ops`` atomically (one savepoint) and wait until they are durable and searchable.

        Once queued, a write is never abandoned: its caller gets the commit's result even if it
        takes longer than the request's deadline (API.md: a write that entered a commit gets that
        commit's result).
        """
        future: asyncio.Future[list[AppliedWrite]] = self.loop.create_future()
        self._requests.put(_WriteRequest(library_id, ops, future))
        return await asyncio.shield(future)

    def stop(self) -> None:
        self._requests.put(None)
        self._thread.join(timeout=30)

    def _main(self) -> None:
        lower_this_thread()
        while True:
            first = self._requests.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_requests_per_commit:
                try:
                    item = self._requests.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_WriteRequest]) -> None:
        try:
            results = self.store.commit_writes([(r.library_id, r.ops) for r in batch])
        except Exception as exc:  # never let the writer thread die with callers waiting
            log.exception("group commit failed")
            results = [StorageFailure(f"the write failed: {exc!r}")] * len(batch)
        self.telemetry.commit_size.observe(len(batch))
        self.telemetry.work_done()
        # Urgent: its writers wait on it, and it takes far less than an embedding batch queued before it.
        self.worker.submit(_ApplyJob(self.loop, self.apply, batch, results), urgent=True)
