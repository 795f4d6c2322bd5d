"""The scheduler's policy, with a fake device worker whose jobs run only when the test says so."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from arrwdb.errors import DeadlineExceeded, NotReady, Overloaded, WorkerFailure
from arrwdb.runtime.admission import ADMITTED, AdmissionTicket
from arrwdb.runtime.scheduler import PRIORITY_BULK, PRIORITY_INTERACTIVE, PRIORITY_WRITE, QueueSpec, Scheduler
from arrwdb.runtime.telemetry import Telemetry


class FakeWorker:
    """Holds submitted jobs; ``run_next`` runs one on the calling thread, like the device thread would."""

    def __init__(self) -> None:
        self.jobs: list[Any] = []
        self.death: list[Callable[[BaseException], None]] = []
        self.busy_added = 0.0
        self.handed_off: list[Any] = []

    def submit(self, job: Any) -> None:
        self.jobs.append(job)

    def on_death(self, callback: Callable[[BaseException], None]) -> None:
        self.death.append(callback)

    def busy_fraction(self) -> float:
        return 0.0

    def hand_off(self, work: Any) -> None:
        self.handed_off.append(work)

    def add_busy(self, seconds: float) -> None:
        self.busy_added += seconds

    def has_jobs(self) -> bool:
        return bool(self.jobs)

    def run_here(self, job: Any, short: Callable[[], bool]) -> bool:
        """Like the device worker's: runs a short job on the calling thread while no job waits."""
        if self.jobs or not short():
            return False
        job.run()
        return True

    async def run_next(self) -> None:
        job = self.jobs.pop(0)
        try:
            job.run()
        except Exception as exc:
            job.fail(exc)
        await settle()

    def die(self, exc: BaseException) -> None:
        for callback in self.death:
            callback(exc)


async def settle(rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def make(max_batch_size: int = 8, max_batch_wait_ms: float = 5.0, max_queue: int = 100) -> tuple[Scheduler, FakeWorker]:
    worker = FakeWorker()
    scheduler = Scheduler(
        worker,  # type: ignore[arg-type]
        Telemetry(),
        max_batch_size=max_batch_size,
        max_batch_wait_ms=max_batch_wait_ms,
        max_queue=max_queue,
    )
    return scheduler, worker


def recording_spec(batches: list[list[Any]], key: str = "q", priority: int = PRIORITY_INTERACTIVE) -> QueueSpec:
    def run_batch(payloads: list[Any]) -> list[Any]:
        batches.append(list(payloads))
        return [p * 10 for p in payloads]

    return QueueSpec(key=key, kind="test", priority=priority, run=run_batch)


def far() -> float:
    return time.monotonic() + 60


def test_idle_worker_takes_a_lone_request_at_once():
    async def body() -> None:
        scheduler, worker = make()
        batches: list[list[Any]] = []
        task = asyncio.create_task(scheduler.submit(recording_spec(batches), 1, deadline=far()))
        await settle()
        assert len(worker.jobs) == 1  # dispatched without waiting for company
        await worker.run_next()
        done = await task
        assert done.value == 10
        assert done.batch_size == 1
        assert batches == [[1]]

    run(body)


def test_busy_worker_fills_the_next_batch():
    async def body() -> None:
        scheduler, worker = make(max_batch_size=8, max_batch_wait_ms=1000)
        batches: list[list[Any]] = []
        spec = recording_spec(batches)
        first = asyncio.create_task(scheduler.submit(spec, 0, deadline=far()))
        await settle()
        rest = [asyncio.create_task(scheduler.submit(spec, i, deadline=far())) for i in range(1, 20)]
        await settle()
        # One batch runs; the next is full (8) and staged; 11 wait for the worker.
        assert [len(job.items) for job in worker.jobs] == [1, 8]
        await worker.run_next()
        assert [len(job.items) for job in worker.jobs] == [8, 8]
        await worker.run_next()
        await worker.run_next()
        await worker.run_next()
        results = [t.result().value for t in [first, *rest]]
        assert results == [i * 10 for i in range(20)]
        assert [len(b) for b in batches] == [1, 8, 8, 3]

    run(body)


def test_partial_batch_closes_after_max_wait_from_the_oldest():
    async def body() -> None:
        scheduler, worker = make(max_batch_size=64, max_batch_wait_ms=20)
        # A queue with a prepare step (as embedding has): its next batch is staged, prepared ahead.
        spec = QueueSpec(key="p", kind="test", priority=PRIORITY_INTERACTIVE, run=list, prepare=list)
        asyncio.create_task(scheduler.submit(spec, 0, deadline=far()))
        await settle()
        assert len(worker.jobs) == 1  # running
        asyncio.create_task(scheduler.submit(spec, 1, deadline=far()))
        asyncio.create_task(scheduler.submit(spec, 2, deadline=far()))
        await settle()
        assert len(worker.jobs) == 1  # the next batch is still filling
        await asyncio.sleep(0.06)
        assert len(worker.jobs) == 2  # closed by the timer, staged behind the running batch
        assert len(worker.jobs[1].items) == 2

    run(body)


def test_batch_size_one_turns_batching_off():
    async def body() -> None:
        scheduler, worker = make(max_batch_size=1)
        batches: list[list[Any]] = []
        spec = recording_spec(batches)
        tasks = [asyncio.create_task(scheduler.submit(spec, i, deadline=far())) for i in range(5)]
        await settle()
        while worker.jobs:
            await worker.run_next()
        await asyncio.gather(*tasks)
        assert batches == [[0], [1], [2], [3], [4]]

    run(body)


def test_cost_budget_splits_batches():
    async def body() -> None:
        scheduler, worker = make(max_batch_size=100, max_batch_wait_ms=1000)
        batches: list[list[Any]] = []
        spec = QueueSpec(key="e", kind="embed", priority=PRIORITY_BULK, run=lambda p: list(p), max_cost=100)
        blocker = asyncio.create_task(scheduler.submit(spec, "first", deadline=far(), cost=1))
        await settle()
        tasks = [asyncio.create_task(scheduler.submit(spec, i, deadline=far(), cost=30)) for i in range(7)]
        await settle()
        while worker.jobs:
            batches.append(list(worker.jobs[0].prepared))
            await worker.run_next()
        await asyncio.gather(blocker, *tasks)
        assert [len(b) for b in batches] == [1, 3, 3, 1]

    run(body)


def test_queue_full_is_overloaded_at_once():
    async def body() -> None:
        scheduler, _worker = make(max_queue=4, max_batch_wait_ms=1000)
        spec = recording_spec([])
        asyncio.create_task(scheduler.submit(spec, 0, deadline=far()))
        await settle()  # dispatched: it runs, and still waits for its answer
        waiting = [asyncio.create_task(scheduler.submit(spec, i, deadline=far())) for i in range(3)]
        await settle()
        assert scheduler.waiting == 3  # the next batch is filling, not yet due
        assert scheduler.full  # three queued and one running: four wait for the device
        started = time.perf_counter()
        with pytest.raises(Overloaded) as err:
            await scheduler.submit(spec, 99, deadline=far())
        assert time.perf_counter() - started < 0.5
        assert err.value.retry_after_s >= 1
        for task in waiting:
            task.cancel()

    run(body)


def test_expired_requests_are_dropped_before_compute():
    async def body() -> None:
        scheduler, worker = make(max_batch_size=8, max_batch_wait_ms=0)
        batches: list[list[Any]] = []
        spec = recording_spec(batches)
        asyncio.create_task(scheduler.submit(spec, 0, deadline=far()))
        await settle()
        short = asyncio.create_task(scheduler.submit(spec, 1, deadline=time.monotonic() + 0.02))
        long = asyncio.create_task(scheduler.submit(spec, 2, deadline=far()))
        await asyncio.sleep(0.05)
        with pytest.raises(DeadlineExceeded):
            await short
        while worker.jobs:
            await worker.run_next()
        assert (await long).value == 20
        assert [1] not in batches and all(1 not in b for b in batches)

    run(body)


def test_cancelled_requests_cost_no_compute():
    async def body() -> None:
        scheduler, worker = make(max_batch_size=8, max_batch_wait_ms=1000)
        batches: list[list[Any]] = []
        spec = recording_spec(batches)
        asyncio.create_task(scheduler.submit(spec, 0, deadline=far()))
        await settle()
        gone = asyncio.create_task(scheduler.submit(spec, 1, deadline=far()))
        stays = asyncio.create_task(scheduler.submit(spec, 2, deadline=far()))
        await settle()
        gone.cancel()  # the client went away
        await settle()
        while worker.jobs:
            await worker.run_next()
        await asyncio.sleep(0)
        assert (await stays).value == 20
        assert all(1 not in b for b in batches)

    run(body)


def test_a_failing_batch_fails_every_future():
    async def body() -> None:
        scheduler, worker = make()

        def explode(payloads: list[Any]) -> list[Any]:
            raise RuntimeError("device on fire")

        spec = QueueSpec(key="x", kind="test", priority=0, run=explode)
        tasks = [asyncio.create_task(scheduler.submit(spec, i, deadline=far())) for i in range(4)]
        await settle()
        while worker.jobs:
            await worker.run_next()
        for task in tasks:
            with pytest.raises(WorkerFailure, match="device on fire"):
                await task

    run(body)


def test_a_per_item_error_fails_only_that_item():
    async def body() -> None:
        scheduler, worker = make()
        spec = QueueSpec(
            key="x", kind="test", priority=0, run=lambda p: [ValueError("bad") if x == 1 else x for x in p]
        )
        tasks = [asyncio.create_task(scheduler.submit(spec, i, deadline=far())) for i in range(3)]
        await settle()
        while worker.jobs:
            await worker.run_next()
        assert (await tasks[0]).value == 0
        with pytest.raises(ValueError):
            await tasks[1]
        assert (await tasks[2]).value == 2

    run(body)


@pytest.mark.parametrize("ending", ["worker death", "shutdown"])
def test_the_end_fails_requests_inside_batches_and_waiting_and_refuses_new_work(ending: str):
    async def body() -> None:
        scheduler, worker = make(max_batch_size=1)
        spec = recording_spec([])
        tasks = [asyncio.create_task(scheduler.submit(spec, i, deadline=far())) for i in range(4)]
        await settle()
        assert len(worker.jobs) == 2 and scheduler.waiting == 2  # one batch runs, one is staged, two wait
        if ending == "worker death":
            worker.die(SystemError("gone"))
        else:
            scheduler.close()
        await settle()
        for task in tasks:
            with pytest.raises(NotReady):
                await task
        assert scheduler.waiting == 0  # nothing is left counted: later requests hear 503, not 429
        if ending == "worker death":
            with pytest.raises(NotReady):
                await scheduler.submit(spec, 9, deadline=far())

    run(body)


def test_interactive_work_goes_before_bulk():
    async def body() -> None:
        scheduler, worker = make(max_batch_size=4, max_batch_wait_ms=0)
        order: list[str] = []
        bulk = QueueSpec(key="bulk", kind="embed", priority=PRIORITY_BULK, run=lambda p: order.append("bulk") or p)
        search = QueueSpec(
            key="search", kind="search", priority=PRIORITY_INTERACTIVE, run=lambda p: order.append("search") or p
        )
        first = asyncio.create_task(scheduler.submit(bulk, 0, deadline=far()))
        await settle()
        bulk_tasks = [asyncio.create_task(scheduler.submit(bulk, i, deadline=far())) for i in range(12)]
        await settle()
        search_task = asyncio.create_task(scheduler.submit(search, 1, deadline=far()))
        await settle()
        while worker.jobs:
            await worker.run_next()
        await asyncio.gather(first, search_task, *bulk_tasks)
        # The search arrived after 12 bulk items, yet runs right after the batches already staged.
        assert order.index("search") <= 2
        assert order.count("bulk") == 4

    run(body)


def test_timings_are_reported():
    async def body() -> None:
        scheduler, worker = make()
        spec = recording_spec([])
        task = asyncio.create_task(scheduler.submit(spec, 1, deadline=far()))
        await settle()
        await asyncio.sleep(0.01)
        await worker.run_next()
        done = await task
        assert done.queue_ms >= 5
        assert done.compute_ms >= 0
        assert done.batch_size == 1

    run(body)


def test_room_in_an_urgent_batch_is_topped_up_from_queues_that_share_its_function():
    async def body() -> None:
        scheduler, worker = make(max_batch_size=4, max_batch_wait_ms=0)
        batches: list[list[Any]] = []

        def run_batch(payloads: list[Any]) -> list[Any]:
            batches.append(list(payloads))
            return [p * 10 for p in payloads]

        def spec(key: str, priority: int, top_up: str | None) -> QueueSpec:
            return QueueSpec(key=key, kind="embed", priority=priority, run=run_batch, max_cost=10, top_up=top_up)

        query = spec("query", PRIORITY_INTERACTIVE, "embed")
        insert = spec("insert", PRIORITY_WRITE, "embed")
        bulk = spec("bulk", PRIORITY_BULK, None)
        blocker = asyncio.create_task(scheduler.submit(spec("other", PRIORITY_BULK, None), 0, deadline=far()))
        await settle()  # the worker is busy: the next batches form while it runs
        tasks = [asyncio.create_task(scheduler.submit(bulk, 100 + i, deadline=far())) for i in range(2)]
        tasks += [asyncio.create_task(scheduler.submit(insert, 10 + i, deadline=far(), cost=3)) for i in range(3)]
        tasks.append(asyncio.create_task(scheduler.submit(query, 1, deadline=far(), cost=3)))
        await settle()
        while worker.jobs:
            await worker.run_next()
        results = await asyncio.gather(blocker, *tasks)
        assert [done.value for done in results] == [0, 1000, 1010, 100, 110, 120, 10]
        # The query's batch took two inserts along (the token budget of 10 held the third back) and
        # no bulk item: bulk work never lengthens an interactive batch.
        assert batches[1] == [1, 10, 11]
        assert batches[2:] == [[12], [100, 101]]

    run(body)


def test_without_a_prepare_step_the_next_batch_fills_until_the_worker_frees():
    async def body() -> None:
        scheduler, worker = make(max_batch_size=64, max_batch_wait_ms=1)
        batches: list[list[Any]] = []
        spec = recording_spec(batches)
        first = asyncio.create_task(scheduler.submit(spec, 0, deadline=far()))
        await settle()
        early = [asyncio.create_task(scheduler.submit(spec, i, deadline=far())) for i in range(1, 4)]
        await asyncio.sleep(0.02)  # far past the batch wait
        late = [asyncio.create_task(scheduler.submit(spec, i, deadline=far())) for i in range(4, 7)]
        await settle()
        assert len(worker.jobs) == 1  # nothing staged: it would start no sooner, with fewer requests
        await worker.run_next()
        await settle()
        assert [len(job.items) for job in worker.jobs] == [6]  # everything that came meanwhile
        await worker.run_next()
        await asyncio.gather(first, *early, *late)
        assert batches == [[0], [1, 2, 3, 4, 5, 6]]

    run(body)


def test_submit_many_spans_batches_and_returns_results_in_order():
    async def body() -> None:
        scheduler, worker = make(max_batch_size=4)
        batches: list[list[Any]] = []
        task = asyncio.create_task(scheduler.submit_many(recording_spec(batches), list(range(10)), deadline=far()))
        await settle()
        while worker.jobs:
            await worker.run_next()
        done = await task
        assert [c.value for c in done] == [i * 10 for i in range(10)]
        assert [len(b) for b in batches] == [4, 4, 2]
        assert scheduler.waiting == 0

    run(body)


def test_submit_many_fails_the_request_and_drops_its_other_items_on_one_failure():
    async def body() -> None:
        scheduler, worker = make(max_batch_size=2)
        batches: list[list[Any]] = []

        def run_batch(payloads: list[Any]) -> list[Any]:
            batches.append(list(payloads))
            return [ValueError("bad item") if p == 1 else p for p in payloads]

        spec = QueueSpec(key="q", kind="test", priority=PRIORITY_INTERACTIVE, run=run_batch)
        task = asyncio.create_task(scheduler.submit_many(spec, [0, 1, 2, 3, 4, 5], deadline=far()))
        await settle()
        await worker.run_next()  # [0, 1]: item 1 fails, and with it the request
        with pytest.raises(ValueError, match="bad item"):
            await task
        while worker.jobs:
            await worker.run_next()
        # The request's items still queued were cancelled with it: no compute for them.
        assert batches == [[0, 1]]
        assert scheduler.waiting == 0

    run(body)


def test_submit_many_expires_every_item_at_the_deadline():
    async def body() -> None:
        scheduler, _worker = make()  # its job never runs: only the deadline ends the wait
        task = asyncio.create_task(
            scheduler.submit_many(recording_spec([]), [1, 2, 3], deadline=time.monotonic() + 0.02)
        )
        await settle()
        with pytest.raises(DeadlineExceeded):
            await asyncio.wait_for(task, timeout=5)

    run(body)


async def _until_done(task: asyncio.Task[Any], seconds: float = 5.0) -> None:
    """Wait for a result that another thread (the finishing thread) delivers."""
    deadline = time.monotonic() + seconds
    while not task.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


def test_a_search_block_counts_its_queries_in_the_batch_size():
    async def body() -> None:
        scheduler, worker = make(max_batch_size=8, max_batch_wait_ms=1000)
        batches: list[list[Any]] = []
        spec = QueueSpec(key="s", kind="search", priority=PRIORITY_INTERACTIVE, run=lambda p: batches.append(p) or p,
                         max_cost=8, size_is_cost=True)  # fmt: skip
        first = asyncio.create_task(scheduler.submit(spec, "a", deadline=far(), cost=3))
        await settle()
        blocks = [asyncio.create_task(scheduler.submit(spec, name, deadline=far(), cost=3)) for name in "bcd"]
        await settle()
        await worker.run_next()
        await worker.run_next()
        await worker.run_next()
        assert (await first).batch_size == 3
        # Blocks of 3 queries fill batches of at most 8 queries: two blocks, then the third alone.
        assert batches == [["a"], ["b", "c"], ["d"]]
        assert [(await block).batch_size for block in blocks] == [6, 6, 3]

    run(body)


def test_the_finish_step_runs_off_the_device_thread_while_work_waits_and_its_failure_fails_the_batch():
    import threading

    async def body() -> None:
        scheduler, worker = make(max_batch_size=1)
        where: list[str] = []

        def finish(computed: list[Any]) -> list[Any]:
            where.append(threading.current_thread().name)
            if "boom" in computed:
                raise RuntimeError("finish failed")
            return [value * 10 for value in computed]

        spec = QueueSpec(key="f", kind="test", priority=PRIORITY_INTERACTIVE, run=list, finish=finish)
        task = asyncio.create_task(scheduler.submit(spec, 4, deadline=far()))
        failing = asyncio.create_task(scheduler.submit(spec, "boom", deadline=far()))
        await settle()
        assert scheduler.has_waiting()  # the second request is staged or queued behind the first
        await worker.run_next()  # the "device" part runs here, the finish on the finishing thread
        await _until_done(task)
        assert (await task).value == 40
        assert where and where[0].startswith("arrwdb-finish")
        await worker.run_next()  # nothing waits now: the finish step runs where the device part ran
        await _until_done(failing)
        assert where[1] == threading.current_thread().name
        with pytest.raises(WorkerFailure, match="finish failed"):
            await failing

    run(body)


def test_the_batches_on_the_worker_count_against_the_queue_bound():
    async def body() -> None:
        scheduler, worker = make(max_batch_size=2, max_queue=5, max_batch_wait_ms=1000)
        spec = recording_spec([])
        tasks = [asyncio.create_task(scheduler.submit(spec, 0, deadline=far()))]
        await settle()  # running
        tasks += [asyncio.create_task(scheduler.submit(spec, i, deadline=far())) for i in range(1, 5)]
        await settle()
        # One runs, a full batch of two is staged behind it, two are queued: five wait for an answer.
        assert [len(job.items) for job in worker.jobs] == [1, 2] and scheduler.waiting == 2
        with pytest.raises(Overloaded, match="5 requests waiting"):
            await scheduler.submit(spec, 9, deadline=far())
        await worker.run_next()  # answered: the staged batch runs, the two queued ones are staged
        assert [len(job.items) for job in worker.jobs] == [2, 2] and scheduler.waiting == 0
        assert not scheduler.full  # four wait now
        for task in tasks:
            task.cancel()

    run(body)


def test_search_blocks_weigh_their_queries_against_the_queue_bound():
    async def body() -> None:
        scheduler, _worker = make(max_batch_size=8, max_queue=20, max_batch_wait_ms=1000)
        spec = QueueSpec(key="s", kind="search", priority=PRIORITY_INTERACTIVE, run=list, max_cost=8,
                         size_is_cost=True)  # fmt: skip
        tasks = [asyncio.create_task(scheduler.submit(spec, "a", deadline=far(), cost=8))]
        await settle()  # running
        tasks.append(asyncio.create_task(scheduler.submit(spec, "b", deadline=far(), cost=6)))
        await settle()
        assert scheduler.waiting == 6 and not scheduler.full  # one request, six queries, and a's eight
        tasks.append(asyncio.create_task(scheduler.submit(spec, "c", deadline=far(), cost=6)))
        await settle()
        # b's six queries are staged behind the running batch (c would overfill it), c's six wait.
        assert scheduler.waiting == 6 and scheduler.full
        with pytest.raises(Overloaded, match="20 requests waiting"):
            await scheduler.submit(spec, "d", deadline=far(), cost=1)
        scheduler.close()  # nothing is left counted: later requests hear NotReady, not 429
        assert scheduler.waiting == 0 and not scheduler.full
        for task in tasks:
            with pytest.raises(NotReady):
                await task

    run(body)


def test_the_worker_takes_the_next_batch_while_the_last_one_is_finished():
    import threading

    async def body() -> None:
        scheduler, worker = make(max_batch_size=1, max_batch_wait_ms=1000)
        release = threading.Event()

        def finish(computed: list[Any]) -> list[Any]:
            if computed == [1]:
                release.wait(5)
            return computed

        spec = QueueSpec(key="f", kind="test", priority=PRIORITY_INTERACTIVE, run=list, finish=finish)
        first = asyncio.create_task(scheduler.submit(spec, 1, deadline=far()))
        second = asyncio.create_task(scheduler.submit(spec, 2, deadline=far()))
        third = asyncio.create_task(scheduler.submit(spec, 3, deadline=far()))
        await settle()
        await worker.run_next()  # its device part is done; its finish step is held (others wait)
        await settle()
        assert not first.done()
        assert len(worker.jobs) == 2  # dispatched at once: the worker is free although 1 is unfinished
        await worker.run_next()  # the second's device part runs while the first is still being finished
        assert not first.done()
        release.set()
        await _until_done(first)
        await _until_done(second)
        await worker.run_next()  # nothing waits behind the third: finished where it ran
        await _until_done(third)
        assert [(await task).value for task in (first, second, third)] == [1, 2, 3]

    run(body)


def test_a_request_admitted_at_the_door_holds_its_place_until_its_items_are_queued():
    async def body() -> None:
        scheduler, _worker = make(max_queue=3, max_batch_wait_ms=1000)
        spec = recording_spec([])
        running = asyncio.create_task(scheduler.submit(spec, 0, deadline=far()))
        await settle()  # one waits on the worker
        first, second = scheduler.reserve(), scheduler.reserve()
        assert scheduler.full  # one running and two admitted: three places taken
        with pytest.raises(Overloaded, match="3 requests waiting"):
            await scheduler.submit(spec, 9, deadline=far())  # no ticket: asked, and refused

        async def submit_with(ticket: AdmissionTicket, payload: int) -> Any:
            ADMITTED.set(ticket)  # as the gate sets it for the request's task
            return await scheduler.submit(spec, payload, deadline=far())

        # Admitted at the door: queued without being asked again, though the queue is full.
        queued = asyncio.create_task(submit_with(first, 1))
        await settle()
        assert not first.held and scheduler.waiting == 1 and scheduler.full
        second.release()  # its request ended without queuing anything (a bad body, say)
        second.release()  # idempotent: the place is given back once
        assert not scheduler.full  # one running, one queued
        for task in (running, queued):
            task.cancel()

    run(body)


def test_a_short_batch_runs_on_the_loop_when_it_is_the_only_work_and_waits_its_turn_otherwise():
    import threading

    async def body() -> None:
        scheduler, worker = make(max_batch_size=1)
        where: list[str] = []
        asked: list[list[Any]] = []

        def run_batch(payloads: list[Any]) -> list[Any]:
            where.append(threading.current_thread().name)
            return [p * 10 for p in payloads]

        def short(payloads: list[Any]) -> bool:
            asked.append(list(payloads))
            return payloads != [3]

        spec = QueueSpec(key="s", kind="test", priority=PRIORITY_INTERACTIVE, run=run_batch, short=short)
        assert (await scheduler.submit(spec, 1, deadline=far())).value == 10
        assert worker.jobs == [] and where == [threading.current_thread().name]  # the loop ran it
        first = asyncio.create_task(scheduler.submit(spec, 3, deadline=far()))  # not short: the worker's
        await settle()
        second = asyncio.create_task(scheduler.submit(spec, 2, deadline=far()))  # a job is in flight
        await settle()
        assert len(worker.jobs) == 2 and asked == [[1], [3]]  # "2" not asked: "3" was in flight
        await worker.run_next()
        await worker.run_next()
        assert [(await first).value, (await second).value] == [30, 20]

    run(body)


def test_a_batch_the_loop_ran_itself_delivers_without_a_wake_up_and_one_the_worker_ran_with_one():
    async def body() -> None:
        scheduler, worker = make(max_batch_size=1)
        loop = asyncio.get_running_loop()
        woken: list[Any] = []
        threadsafe = loop.call_soon_threadsafe

        def counted(callback: Any, *args: Any) -> Any:
            woken.append(callback)
            return threadsafe(callback, *args)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        spec = QueueSpec(
            key="s",
            kind="test",
            priority=PRIORITY_INTERACTIVE,
            run=lambda ps: [p * 10 for p in ps],
            short=lambda ps: ps != [3],
        )
        assert (await scheduler.submit(spec, 1, deadline=far())).value == 10
        assert woken == []  # run on the loop's thread: its result was queued with call_soon
        pending = asyncio.create_task(scheduler.submit(spec, 3, deadline=far()))
        await settle()
        await worker.run_next()
        assert (await pending).value == 30 and woken == [scheduler._complete]

    run(body)


def test_work_handed_off_as_a_future_frees_the_worker_but_holds_its_place_until_delivered():
    from concurrent.futures import Future

    async def body() -> None:
        scheduler, worker = make(max_batch_size=1, max_batch_wait_ms=0)
        handed: list[Future[list[Any]]] = []

        def run_off_worker(payloads: list[Any]) -> Future[list[Any]]:
            handed.append(Future())
            return handed[-1]

        spec = QueueSpec(
            key="h", kind="test", priority=PRIORITY_INTERACTIVE, run=run_off_worker, prepare=list, hands_off=True
        )
        tasks = [asyncio.create_task(scheduler.submit(spec, i, deadline=far())) for i in range(4)]
        await _until(lambda: len(worker.jobs) == 2)  # the running batch and the one staged behind it
        await worker.run_next()
        await worker.run_next()
        await settle()
        # Both batches were handed off: the worker is idle, but the two still count as on it, so no
        # third batch is taken while they compute elsewhere.
        assert len(handed) == 2 and worker.jobs == [] and worker.handed_off == handed
        assert not any(task.done() for task in tasks)
        handed[1].set_result([10])  # delivered when done, in whatever order the work ends
        await _until_done(tasks[1])
        assert tasks[1].result().value == 10 and not tasks[0].done()
        await _until(lambda: len(worker.jobs) == 1)  # its place on the worker went to the next batch
        handed[0].set_exception(RuntimeError("lane failed"))
        with pytest.raises(WorkerFailure):
            await tasks[0]
        assert worker.busy_added > 0  # the handed-off work counts as the device's busy time
        for _ in range(2):  # the last two batches: the failed one's place may have staged the next already
            await _until(lambda: len(worker.jobs) >= 1)
            await worker.run_next()
            handed[-1].set_result([0])
        await asyncio.gather(*tasks[2:])

    run(body)


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.001)
