"""The GPU benchmark's `gil` step on the CPU: it times the batch search scripted and eager, alone and
beside a busy Python thread, and leaves the scripts in use afterwards."""

from __future__ import annotations

from arrwdb.bench.gpu import cpu_config
from arrwdb.bench.gpu_gil import gil_contention
from arrwdb.index import rerank
from arrwdb.kernels import topk


def test_the_gil_step_times_both_modes_and_restores_the_scripts() -> None:
    result = gil_contention(cpu_config(rows=10_000, dimension=16, simulate_half=True))
    assert (result["rows"], result["batch"], result["dtype"]) == (2000, 32, "float16")
    for mode in ("scripted", "eager"):
        assert result[f"{mode}_alone_ms"] > 0 and result[f"{mode}_beside_busy_thread_ms"] > 0
    assert topk.SCAN.failure is None and rerank.SEARCH_HALF.failure is None
