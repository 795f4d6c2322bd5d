"""Process-wide tuning of a process that runs an engine: the GIL's switch interval, the cyclic GC's
thresholds, and start-up objects moved out of the GC's scans once loaded."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from typing import TYPE_CHECKING

from arrwdb.runtime.tuning import GC_THRESHOLDS, GIL_SWITCH_INTERVAL_S

if TYPE_CHECKING:
    from arrwdb.engine.core import Engine

log = logging.getLogger("arrwdb.engine.core")


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
