"""The device worker runs jobs one at a time, in order, with urgent jobs ahead of queued ones."""

from __future__ import annotations

import threading
import time

import pytest

from arrwdb.runtime.device_worker import DeviceWorker


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


class _WaitsOnLanes(_Recorded):
    """A job that waits on work of other threads (a forward pass in lanes), serving urgent jobs."""

    def __init__(self, worker: DeviceWorker, lanes: list, log: list[str]) -> None:
        super().__init__("lanes done", log)
        self.worker, self.lanes = worker, lanes

    def run(self) -> None:
        self.started.set()
        self.worker.serve_urgent_until(self.lanes)
        self.log.append(self.name)


def test_urgent_jobs_run_while_a_job_waits_on_its_lanes_and_batches_keep_their_place() -> None:
    from concurrent.futures import Future

    worker = DeviceWorker()
    worker.start()
    log: list[str] = []
    lanes: list[Future[None]] = [Future(), Future()]
    try:
        waiting = _WaitsOnLanes(worker, lanes, log)
        worker.submit(waiting)
        assert waiting.started.wait(5)
        worker.submit(_Recorded("batch-1", log))
        applied = _Recorded("apply-1", log)
        worker.submit(applied, urgent=True)
        assert applied.started.wait(5)  # ran while the lanes were still computing
        lanes[0].set_result(None)  # one lane done: still waiting
        worker.submit(_Recorded("batch-2", log))
        second = _Recorded("apply-2", log)
        worker.submit(second, urgent=True)
        assert second.started.wait(5)
        lanes[1].set_result(None)
    finally:
        worker.stop()
    assert waiting.failed is None
    assert log == ["apply-1", "apply-2", "lanes done", "batch-1", "batch-2"]


def test_serving_urgent_jobs_is_for_the_worker_thread_only() -> None:
    import pytest

    worker = DeviceWorker()
    worker.start()
    try:
        with pytest.raises(RuntimeError, match="device worker"):
            worker.serve_urgent_until([])
    finally:
        worker.stop()


class _Where(_Recorded):
    """Records the thread it ran on."""

    def run(self) -> None:
        super().run()
        self.thread = threading.current_thread()


def test_a_short_job_runs_on_the_calling_thread_while_the_worker_is_idle() -> None:
    worker = DeviceWorker()
    worker.start()
    log: list[str] = []
    try:
        job = _Where("here", log)
        assert worker.run_here(job, lambda: True)
        assert job.thread is threading.current_thread()
        assert not worker.run_here(_Where("long", log), lambda: False)  # not short: not run
        assert log == ["here"]
    finally:
        worker.stop()


def test_run_here_refuses_while_the_worker_runs_a_job_and_holds_it_off_while_running() -> None:
    worker = DeviceWorker()
    worker.start()
    log: list[str] = []
    gate = threading.Event()
    try:
        running = _Recorded("on worker", log, gate)
        worker.submit(running)
        assert running.started.wait(5)
        asked: list[bool] = []
        assert not worker.run_here(_Recorded("refused", log), lambda: asked.append(True) or True)
        assert asked == []  # asked only with no job running
        gate.set()
        worker.submit(_Recorded("after", log))  # the next submit waits its turn behind "on worker"
        held = threading.Event()
        inline = _Recorded("inline", log, held)
        caller = threading.Thread(target=lambda: worker.run_here(inline, lambda: True))
        for _ in range(500):  # until the worker is idle again (bounded: 5 s)
            if log == ["on worker", "after"]:
                break
            threading.Event().wait(0.01)
        caller.start()
        assert inline.started.wait(5)
        queued = _Recorded("queued", log)
        worker.submit(queued)
        assert not queued.started.wait(0.2)  # the worker takes nothing while a job runs elsewhere
        held.set()
        caller.join(5)
        assert queued.started.wait(5)
    finally:
        worker.stop()
    assert log == ["on worker", "after", "inline", "queued"]


class _HandsOff(_Recorded):
    """A job that hands its work to another thread and returns (``DeviceWorker.hand_off``)."""

    overlaps_handoffs = True

    def __init__(self, worker: DeviceWorker, work: object, log: list[str]) -> None:
        super().__init__("handed off", log)
        self.worker, self.work = worker, work

    def run(self) -> None:
        self.worker.hand_off(self.work)  # type: ignore[arg-type]
        self.log.append(self.name)
        self.started.set()


class _Overlapping(_Recorded):
    overlaps_handoffs = True


def test_other_jobs_wait_for_handed_off_work_and_urgent_or_overlapping_ones_do_not() -> None:
    from concurrent.futures import Future

    worker = DeviceWorker()
    worker.start()
    log: list[str] = []
    work: Future[None] = Future()
    try:
        handing = _HandsOff(worker, work, log)
        worker.submit(handing)
        assert handing.started.wait(5)
        plain = _Recorded("search", log)
        worker.submit(plain)
        overlapping = _Overlapping("next lanes", log)
        worker.submit(overlapping)
        urgent = _Recorded("apply", log)
        worker.submit(urgent, urgent=True)
        assert urgent.started.wait(5)  # ran while the handed-off work still computes
        assert not plain.started.wait(0.2)  # the search waits for it
        assert not worker.run_here(_Recorded("short", log), lambda: True)  # nor runs beside it on the loop
        work.set_result(None)
        assert overlapping.started.wait(5)
    finally:
        worker.stop()
    assert log == ["handed off", "apply", "search", "next lanes"]


class _PausedClock:
    """``time`` for the device worker's module: ``perf_counter`` hands out set readings, and the worker
    thread's second reading (the end of its first job) waits until the test lets it go."""

    def __init__(self) -> None:
        self.worker_paused = threading.Event()
        self.release = threading.Event()
        self._worker_calls = 0
        self._caller_readings = iter([10.0, 12.0])  # a run_here job: 2 s

    def perf_counter(self) -> float:
        if threading.current_thread().name != "arrwdb-device":
            return next(self._caller_readings)
        self._worker_calls += 1
        if self._worker_calls == 1:
            return 0.0
        self.worker_paused.set()
        assert self.release.wait(5)
        return 5.0  # the worker's job: 5 s

    monotonic = staticmethod(time.monotonic)


def test_busy_time_of_the_worker_and_a_run_here_caller_both_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker thread ends a job (5 s by the clock) while a ``run_here`` caller tries a short one
    (2 s): whichever way the two meet, the busy time holds every job that ran.  The caller's job must
    not run between the worker's job and the worker adding its time: there the worker has read the
    total already, and its write would drop the caller's 2 s."""
    import arrwdb.runtime.device_worker as device_worker

    clock = _PausedClock()
    monkeypatch.setattr(device_worker, "time", clock)
    worker = DeviceWorker()
    worker.start()
    log: list[str] = []
    try:
        worker.submit(_Recorded("worker", log))
        assert clock.worker_paused.wait(5)
        ran_here = worker.run_here(_Recorded("caller", log), short=lambda: True)
    finally:
        clock.release.set()
        worker.stop()
    assert not ran_here  # the worker's job still holds the device until its time is added
    assert log == ["worker"]
    assert worker.busy_seconds == 5.0
