"""What the documents' metadata load makes after /ready leaves the cyclic GC while the load still
runs (arrwdb.runtime.gc_tuning.freeze_gc_when_ready), not only once it is over."""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace

from arrwdb.runtime import gc_tuning


class _SlowDocuments:
    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def wait_all(self) -> None:
        await self.release.wait()


class _Gauge:
    def __init__(self) -> None:
        self.value = -1

    def set(self, value: int) -> None:
        self.value = value


async def _scenario() -> tuple[int, int, int, int]:
    documents = _SlowDocuments()
    gauge = _Gauge()
    engine = SimpleNamespace(
        ready=True, load_error=None, documents=documents, telemetry=SimpleNamespace(gc_frozen_objects=gauge)
    )
    task = asyncio.create_task(gc_tuning.freeze_gc_when_ready(engine))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)  # the start-up objects go at /ready
    at_ready = gc.get_freeze_count()
    loaded = [[i] for i in range(50_000)]  # what the load makes meanwhile (lists: the GC always tracks them)
    await asyncio.sleep(0.75)  # three of the server's 0.25 s freezes
    during = gc.get_freeze_count()
    documents.release.set()
    await task
    assert len(loaded) == 50_000  # alive throughout
    return at_ready, during, gc.get_freeze_count(), gauge.value


def test_the_load_is_frozen_while_it_runs() -> None:
    try:
        at_ready, during, after, reported = asyncio.run(_scenario())
    finally:
        gc.unfreeze()  # the rest of the test session keeps a normal GC
    assert at_ready > 0
    assert during >= at_ready + 50_000, (at_ready, during)
    assert reported > at_ready and after > at_ready  # (frozen objects freed by reference counting leave the count)
