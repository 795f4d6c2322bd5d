"""Process-wide tuning of a process that runs an engine: the GIL's switch interval, the cyclic GC's
thresholds, and start-up objects moved out of the GC's scans once loaded."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arrwdb.engine import Engine

log = logging.getLogger("arrwdb.engine")


# How long a thread that wants the GIL waits before it asks the holder to drop it (Python's default:
# 5 ms).  The device worker needs the GIL for moments between GIL-free FAISS and torch calls, and the
# event loop and the finishing thread hold it in bursts: at 5 ms each such moment could cost the
# device worker several milliseconds; at 0.5 ms it waits a tenth of that (the effect shows in the
# server legs of `arrwdb bench ann`, docs/PERFORMANCE.md, "ANN indexes").
GIL_SWITCH_INTERVAL_S = 0.0005

# The cyclic GC's thresholds (Python's: 700, 10, 10).  A young collection runs once 700 more container
# objects live than at the last one, and a request in flight holds dozens (its coroutines, futures,
# contexts, timers): under load the loop's population swings by thousands as batches complete and
# refill, so with Python's thresholds the GC runs many young and several middle collections a second,
# on the event loop, while the device's scans keep the memory bus busy: a middle or full collection
# takes milliseconds, and under overload the slow stretches of 429s start at them.  At 20,000 one
# runs every few seconds; memory stays bounded (a young collection still follows every 20,000 objects
# of uncollected garbage).
GC_THRESHOLDS = (20_000, 20, 20)


def tune_process() -> None:
    """What ``serve`` sets for every process that runs an engine (not for tests sharing one process)."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    gc.set_threshold(*GC_THRESHOLDS)


# While the documents' metadata loads after /ready, what it made so far leaves the GC this often.
_LOAD_FREEZE_S = 0.25


async def freeze_gc_when_ready(engine: Engine) -> None:
    """After start-up, take its objects (torch, transformers, FastAPI, the loaded libraries: ~430k in
    all) out of the cyclic GC's scans.  Under load each full collection otherwise walked all of them:
    ~230 ms with the GIL held, 1.2 s of every 4 s of a batched search load on 2 cores.  Frozen objects
    are still freed by reference counting (a deleted library's index is: no cycles hold it); only
    cyclic garbage among them would stay, so each freeze follows a collection.

    The documents' metadata loads after /ready (``DocumentLoader``): millions of objects for millions
    of documents, and every 25% the heap grew, a full collection walked all of them (searches stalled
    for 300-500 ms at a time after /ready on 1M documents).  So the start-up objects are frozen at
    /ready, and what the load made since is frozen every ``_LOAD_FREEZE_S`` after collecting only the
    young generations (cheap: they hold what was made since the last freeze)."""
    while not engine.ready:  # polled: cancelling this at shutdown must not cancel the loading itself
        if engine.load_error is not None:
            return
        await asyncio.sleep(0.25)
    gc.collect()
    gc.freeze()
    loading = asyncio.ensure_future(engine.documents.wait_all())
    try:
        while not loading.done():
            await asyncio.wait({loading}, timeout=_LOAD_FREEZE_S)
            gc.collect(1)
            gc.freeze()
    finally:
        loading.cancel()  # cancelled at shutdown: it waits on shielded futures, so the load goes on
    started = time.perf_counter()
    gc.collect()  # garbage frozen would never be collected: only live objects go
    gc.freeze()
    engine.telemetry.gc_frozen_objects.set(gc.get_freeze_count())  # benchmarks wait for this
    log.info(
        "moved %d start-up objects out of the cyclic GC in %.0f ms",
        gc.get_freeze_count(),
        (time.perf_counter() - started) * 1000.0,
    )
