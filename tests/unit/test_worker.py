"""The device worker runs jobs one at a time, in order, with urgent jobs ahead of queued ones."""

from __future__ import annotations

import threading

from arrwdb.worker import DeviceWorker


class _Recorded:
    def __init__(self, name: str, log: list[str], gate: threading.Event | None = None) -> None:
        self.name, self.log, self.gate = name, log, gate
        self.started = threading.Event()
        self.failed: BaseException | None = None

    def run(self) -> None:
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(5)
        self.log.append(self.name)

    def fail(self, exc: BaseException) -> None:
        self.failed = exc


def test_urgent_jobs_overtake_queued_ones_and_keep_their_own_order() -> None:
    worker = DeviceWorker()
    worker.start()
    log: list[str] = []
    gate = threading.Event()
    try:
        running = _Recorded("running", log, gate)
        worker.submit(running)  # holds the thread while the rest queue up
        assert running.started.wait(5)
        for name in ("batch-1", "batch-2"):
            worker.submit(_Recorded(name, log))
        for name in ("apply-1", "apply-2"):
            worker.submit(_Recorded(name, log), urgent=True)
        gate.set()
    finally:
        worker.stop()
    assert log == ["running", "apply-1", "apply-2", "batch-1", "batch-2"]


def test_a_stopped_worker_fails_new_jobs() -> None:
    worker = DeviceWorker()
    worker.start()
    worker.stop()
    job = _Recorded("late", [])
    worker.submit(job, urgent=True)
    assert job.failed is not None
