"""The `gil` step of `arrwdb bench gpu`: what sharing the GIL costs the device worker's searches.

In the server the device thread shares the GIL with the event loop, and each eager torch call gives it
up and waits to get it back while the loop runs Python.  This step times a batch search in process,
alone and beside a thread busy in Python (the server's switch interval), with the search's TorchScript
functions (``Scripted``) and with the same functions run eagerly: the difference is the cost the
scripts were written to remove (on the H200, the server spent 44 ms a 151-query batch that took 5 ms
in process).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch

from arrwdb.bench.gpu import GpuBenchConfig, random_rows, timed
from arrwdb.runtime.gc_tuning import GIL_SWITCH_INTERVAL_S


@contextmanager
def _busy_python_thread() -> Iterator[None]:
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def _eager() -> Iterator[None]:
    """The scripted functions run as plain Python while inside (as after a script failure)."""
    from arrwdb.index import rerank
    from arrwdb.kernels import topk

    scripted = (topk.SCAN, rerank.SEARCH_HALF)
    for function in scripted:
        function.failure = RuntimeError("eager for the gil step")
    try:
        yield
    finally:
        for function in scripted:
            function.failure = None


def gil_contention(config: GpuBenchConfig) -> dict[str, Any]:
    from arrwdb.index.flat import FlatIndex

    rows = max(config.rows // 5, 1000)
    batch = 256 if config.device == "cuda" else 32
    index = FlatIndex(
        config.dimension, "cosine", torch.device(config.device), torch.float16 if config.simulate_half else None
    )
    for start, block in random_rows(rows, config.dimension, config.device, seed=8):
        index.add(np.arange(start, start + len(block), dtype=np.int64), block)
    queries = np.random.default_rng(9).standard_normal((batch, config.dimension), dtype=np.float32)
    previous, threads = sys.getswitchinterval(), torch.get_num_threads()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    if config.device == "cpu":
        torch.set_num_threads(1)  # as the server's worker runs small work on a CPU (WorkerThreads)
    out: dict[str, Any] = {"rows": rows, "batch": batch, "dtype": str(index.dtype).removeprefix("torch.")}
    try:
        for mode in ("scripted", "eager"):
            with _eager() if mode == "eager" else nullcontext():
                out[f"{mode}_alone_ms"] = timed(lambda: index.search(queries, 10), config.device) * 1000
                with _busy_python_thread():
                    out[f"{mode}_beside_busy_thread_ms"] = (
                        timed(lambda: index.search(queries, 10), config.device) * 1000
                    )
    finally:
        sys.setswitchinterval(previous)
        torch.set_num_threads(threads)
    return out
