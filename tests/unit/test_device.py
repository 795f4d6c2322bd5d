"""Device policy on the CPU: resolution, dtype choice, what fits on a GPU (with fake free-memory
figures), and an exact index that falls back to the CPU instead of failing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import arrwdb.runtime.device as device_module
from arrwdb.errors import InvalidInput
from arrwdb.index.flat import FlatIndex
from arrwdb.runtime.device import (
    GpuBudget,
    model_dtype,
    plan_placement,
    resolve_device,
    storage_dtype,
)

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
MIB = 1 << 20


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == CPU
    with pytest.raises(InvalidInput, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(InvalidInput, match="unknown device"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == CUDA
    assert resolve_device("cuda") == CUDA


def test_half_precision_only_on_cuda() -> None:
    assert storage_dtype(CUDA) == torch.float16
    assert model_dtype(CUDA) == torch.float16
    assert storage_dtype(CPU) == torch.float32
    assert model_dtype(CPU, "float32") == torch.float32
    index = FlatIndex(8, "cosine", CPU)
    assert index.dtype == torch.float32
    stats = index.statistics()
    assert (stats["dtype"], stats["device"], stats["backend"], stats["gpu_memory_bytes"]) == (
        "float32",
        "cpu",
        "torch-cpu",
        0,
    )
    assert "rerank" not in stats


def _budget(free: int, headroom: int = 0) -> GpuBudget:
    return GpuBudget(CUDA, headroom, lambda: free)


def test_budget_keeps_headroom() -> None:
    assert _budget(100 * MIB, 10 * MIB).fits(90 * MIB)
    assert not _budget(100 * MIB, 10 * MIB).fits(90 * MIB + 1)


def test_plan_everything_on_the_device_when_it_fits() -> None:
    rows, dim = 1_000_000, 768  # fp16 scan 1.5 GB + fp32 copy 3 GB
    plan = plan_placement(rows, dim, torch.float16, _budget(80 << 30, 2 << 30), copy_on_device=True)
    assert plan.matrix_on_device and plan.copy_on_device and plan.note == ""


def test_plan_moves_the_fp32_copy_to_host_first() -> None:
    rows, dim = 1_000_000, 768
    plan = plan_placement(rows, dim, torch.float16, _budget(4 << 30, 1 << 30), copy_on_device=True)
    assert plan.matrix_on_device and not plan.copy_on_device
    assert "host memory" in plan.note


def test_plan_library_too_big_stays_on_cpu() -> None:
    rows, dim = 5_000_000, 768  # 7.7 GB in fp16
    plan = plan_placement(rows, dim, torch.float16, _budget(6 << 30, 2 << 30), copy_on_device=True)
    assert not plan.matrix_on_device and not plan.copy_on_device
    assert "does not fit" in plan.note and "GiB" in plan.note


def _data(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.arange(10, 10 + n), rng.standard_normal((n, dim), dtype=np.float32), rng.standard_normal((5, dim))


@pytest.mark.parametrize(
    ("free", "device_copy", "dtype", "note"),
    [
        (1 << 30, "cpu", "float16", ""),  # fits (the simulated device is the CPU itself)
        (600_000, "cpu", "float16", "fp32 copy in host memory"),  # the scan fits, its fp32 copy does not
        (300_000, None, "float32", "on the CPU: does not fit"),  # nothing fits: float32 on the CPU
    ],
)
@pytest.mark.parametrize("device", [CPU, torch.device("cpu", 0)])
def test_index_follows_the_plan_as_it_grows(
    free: int, device_copy: str | None, dtype: str, note: str, device: torch.device
) -> None:
    """A half-precision index on a simulated device with a fake free-memory figure: it grows past the
    budget while rows are added, and its results stay those of the float32 reference.  The device is
    also named with an index, as "cuda" is resolved while its tensors report "cuda:0" (the H200 check
    found the fp32 copy kept on the GPU when that made the two compare unequal)."""
    ids, vectors, queries = _data(5000, 32)
    index = FlatIndex(32, "l2", device, torch.float16, budget=_budget(free))
    for start in range(0, 5000, 1000):
        index.add(ids[start : start + 1000], vectors[start : start + 1000])
    reference = FlatIndex(32, "l2", CPU)
    reference.add(ids, vectors)
    stats = index.statistics()
    assert stats["dtype"] == dtype and stats["ntotal"] == 5000
    assert stats.get("rerank", {}).get("fp32_copy") == device_copy
    assert stats.get("placement", "").startswith(note)
    expected_scores, expected_ids = reference.search(queries, 10)
    scores, found = index.search(queries, 10)
    np.testing.assert_array_equal(found, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-4)


def test_out_of_memory_while_growing_falls_back_to_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget said yes but the allocation failed (another allocator took the memory meanwhile)."""
    ids, vectors, queries = _data(3000, 16)
    index = FlatIndex(16, "cosine", CPU, torch.float16, budget=_budget(1 << 30))
    index.add(ids[:500], vectors[:500])
    real_grow = FlatIndex._grow
    failed: list[int] = []

    def grow_once_failing(self: FlatIndex, capacity: int) -> None:
        if not failed:
            failed.append(capacity)
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        real_grow(self, capacity)

    monkeypatch.setattr(FlatIndex, "_grow", grow_once_failing)
    index.add(ids[500:], vectors[500:])
    assert failed and index.dtype == torch.float32
    assert "ran out of GPU memory" in index.statistics()["placement"]
    reference = FlatIndex(16, "cosine", CPU)
    reference.add(ids, vectors)
    np.testing.assert_array_equal(index.search(queries, 5)[1], reference.search(queries, 5)[1])


def test_values_beyond_fp16_switch_storage_to_bf16() -> None:
    ids, vectors, queries = _data(2000, 16)
    vectors[7] *= 1e6  # 1e6 > 65504: fp16 would store inf
    index = FlatIndex(16, "ip", CPU, torch.float16)
    index.add(ids, vectors)
    assert index.dtype == torch.bfloat16
    reference = FlatIndex(16, "ip", CPU)
    reference.add(ids, vectors)
    scores, found = index.search(queries, 5)
    expected_scores, expected_ids = reference.search(queries, 5)
    assert np.isfinite(scores).all()
    np.testing.assert_array_equal(found, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)


def test_start_up_reports_a_library_left_on_the_cpu(caplog: pytest.LogCaptureFixture) -> None:
    from arrwdb.engine.warmup import report_placement, warm_up

    index = FlatIndex(16, "ip", CPU, torch.float16, budget=_budget(1000))  # nothing fits
    index.add(*_data(100, 16)[:2])
    with caplog.at_level("WARNING", logger="arrwdb.engine.warmup"):
        report_placement("big-library", index)
        report_placement("small-library", FlatIndex(16, "ip", CPU))  # where it was asked: no line
    lines = [r.getMessage() for r in caplog.records if r.name == "arrwdb.engine.warmup"]
    assert len(lines) == 1 and "'big-library' (100 vectors): on the CPU: does not fit" in lines[0]
    warm_up(CPU, None, [16], 256)  # nothing to warm on a CPU: returns at once


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_auto_model_precision_follows_the_cpu(monkeypatch: pytest.MonkeyPatch, fast_bf16: bool) -> None:
    monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda: fast_bf16)
    assert model_dtype(CPU) == (torch.bfloat16 if fast_bf16 else torch.float32)
    assert model_dtype(CUDA) == torch.float16
    assert model_dtype(CPU, "bfloat16") == torch.bfloat16  # asked for: allowed on any CPU
    with pytest.raises(InvalidInput, match="CUDA"):
        model_dtype(CPU, "float16")
    with pytest.raises(InvalidInput, match="unknown embedding precision"):
        model_dtype(CPU, "int4")


def test_fast_bf16_is_read_from_the_cpu_flags() -> None:
    with open("/proc/cpuinfo") as cpuinfo:
        flags = next((line for line in cpuinfo if line.startswith("flags")), "").split()
    assert device_module.cpu_has_fast_bf16() == ("amx_bf16" in flags or "avx512_bf16" in flags)


@pytest.mark.parametrize(
    ("flags", "fast"),
    [
        ("avx2 avx512f avx512bw avx512_vnni", False),  # AVX-512 without bf16 (Skylake-SP, Ice Lake)
        ("avx2 fma", False),  # AVX2 only
        ("avx512f avx512_bf16 avx512_vnni", True),  # AMD Zen 4 / 5, Intel Cooper Lake
        ("avx512f avx512_bf16 amx_bf16 amx_tile amx_int8", True),  # Intel Sapphire Rapids and later
        ("amx_tile amx_int8", False),  # AMX tiles without their bf16 unit
    ],
)
def test_bf16_counts_as_fast_only_with_a_hardware_dot_product(flags: str, fast: bool) -> None:
    assert device_module.bf16_in_hardware(flags.split()) is fast


def test_cpuinfo_fields_are_read_by_exact_name(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """``cpu family`` is not ``cpu family id``; values are stripped; a missing field or file is None."""
    from arrwdb.runtime import cpuinfo

    fake = tmp_path / "cpuinfo"
    fake.write_text("model name\t: AMD EPYC\ncpu family id\t: 7\ncpu family\t: 25\nflags\t\t: avx2 avx512_bf16\n")
    real_open = open
    monkeypatch.setattr(
        "builtins.open", lambda path, *a, **k: real_open(fake if path == "/proc/cpuinfo" else path, *a, **k)
    )
    assert cpuinfo.cpuinfo_field("cpu family") == "25"
    assert cpuinfo.cpuinfo_field("model name") == "AMD EPYC"
    assert cpuinfo.cpuinfo_field("microcode") is None
    assert cpuinfo.cpuinfo_field("flags") == "avx2 avx512_bf16"
    fake.unlink()
    assert cpuinfo.cpuinfo_field("cpu family") is None


def test_worker_threads_follow_batch_size(monkeypatch) -> None:
    import torch

    from arrwdb.runtime.device import WorkerThreads

    chosen: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", chosen.append)
    monkeypatch.setattr("arrwdb.runtime.device.usable_cores", lambda: 4)  # the cores this process may use
    monkeypatch.setattr("arrwdb.runtime.tuning.usable_cores", lambda: 4)
    threads = WorkerThreads(None, torch.device("cpu"))
    threads.fit(1, large_from=8)  # one query: all cores but one
    threads.fit(64, large_from=8)  # a large batch: every core
    threads.fit(16, large_from=32)  # a forward pass while the event loop is busy: larger batches only
    threads.fit(32, large_from=32)
    assert chosen == [3, 4, 3, 4]
    # The engine's rules: a lone query takes every core while the event loop is idle (fewer than 8
    # requests in flight), not while it is busy; a lone text never does, 16 texts only while it is idle.
    chosen.clear()
    threads = WorkerThreads(None, torch.device("cpu"))
    threads.fit_search(1, requests_in_flight=1)
    threads.fit_search(1, requests_in_flight=8)
    threads.fit_embed(1, requests_in_flight=1)
    threads.fit_embed(16, requests_in_flight=1)
    threads.fit_embed(16, requests_in_flight=64)
    threads.fit_embed(32, requests_in_flight=64)
    assert chosen == [4, 3, 4, 3, 4]  # (the lone text keeps the 3 already set: not set again)
    fixed = WorkerThreads(2, torch.device("cpu"))  # ARRWDB_TORCH_THREADS fixes the count
    chosen.clear()
    fixed.fit(1, large_from=8)
    fixed.fit(64, large_from=8)
    assert chosen == [2]
