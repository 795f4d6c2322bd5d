"""The device: resolved once at start into a value that is passed down (kernels follow tensor.device),
and the few device policies the rest of arrwdb asks about, kept in one place:

- which dtype stores vectors and runs the model (half precision on CUDA only: a CPU has no fast half
  GEMM, about 100x slower than float32, so the CPU path stays float32);
- whether an allocation fits on the GPU (``GpuBudget``), so a library that does not fit stays on the
  CPU instead of crashing the worker with an out-of-memory error;
- splitting a batch that ran out of device memory and retrying the halves (``split_on_oom``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import torch

from arrwdb.errors import InvalidInput
from arrwdb.runtime.cores import usable_cores
from arrwdb.runtime.cpuinfo import cpu_flags
from arrwdb.runtime.tuning import (
    BUSY_LOOP_REQUESTS,
    HEADROOM_BYTES,
    HEADROOM_FRACTION,
    LARGE_BATCH,
    LARGE_EMBED_BATCH_BUSY,
    worker_threads,
)

log = logging.getLogger("arrwdb.runtime.device")

R = TypeVar("R")


FP16_MAX = 65504.0  # the largest finite float16: stored values beyond it would become inf


def resolve_device(setting: str) -> torch.device:
    if setting == "cpu":
        return torch.device("cpu")
    if setting == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInput("--device cuda was asked for, but torch sees no CUDA device")
        return torch.device("cuda")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    raise InvalidInput(f"unknown device {setting!r}: use auto, cpu or cuda")


def storage_dtype(device: torch.device) -> torch.dtype:
    """How an exact index stores its vectors on ``device``: fp16 on CUDA (half the memory and bandwidth
    of a scan; accumulation stays fp32 and the top candidates are re-ranked in fp32), fp32 elsewhere."""
    return torch.float16 if device.type == "cuda" else torch.float32


PRECISIONS = ("auto", "float32", "bfloat16", "float16")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# CPU flags (/proc/cpuinfo) of bf16 dot products in hardware: AMX's tiles (Intel Sapphire Rapids and
# later), or AVX-512 BF16's VDPBF16PS (AMD Zen 4 and later, Intel Cooper Lake).
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def bf16_in_hardware(flags: Iterable[str]) -> bool:
    """Whether a CPU with these ``/proc/cpuinfo`` flags multiplies bf16 in hardware."""
    return not BF16_FLAGS.isdisjoint(flags)


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AMX, or AVX-512 BF16).  There the model runs
    about 2-3.5x faster in bf16 than in fp32 (docs/PERFORMANCE.md, "Embedding" and "Peers"); CPUs
    with neither emulate bf16 matmuls, slower than fp32.  False where /proc/cpuinfo is absent."""
    return bf16_in_hardware(cpu_flags())


def model_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """The embedding model's dtype on ``device`` (pooling and normalisation always run in fp32).

    ``auto``: fp16 on CUDA; bf16 on a CPU with bf16 in hardware (``cpu_has_fast_bf16``), where its
    vectors agree with fp32's at cosine > 0.9999; fp32 on other CPUs.  fp16 on a CPU is refused: no
    CPU here runs it fast.
    """
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    dtype = _DTYPES.get(precision)
    if dtype is None:
        raise InvalidInput(f"unknown embedding precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if dtype == torch.float16 and device.type != "cuda":
        raise InvalidInput("embedding precision float16 needs a CUDA device; use bfloat16 or float32 on a CPU")
    return dtype


def half_limit(dtype: torch.dtype) -> float:
    """The largest magnitude ``dtype`` holds finitely (inf for fp32/bf16, whose range is fp32's)."""
    return FP16_MAX if dtype == torch.float16 else float("inf")


def cuda_free_bytes(device: torch.device) -> int:
    """Bytes a new torch allocation can still get on ``device``."""
    free, _total = torch.cuda.mem_get_info(device)
    # Blocks that torch's caching allocator holds but no tensor uses are free for torch, though the
    # driver counts them as used.
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def default_headroom(device: torch.device) -> int:
    if device.type != "cuda" or not torch.cuda.is_available():
        return HEADROOM_BYTES
    _free, total = torch.cuda.mem_get_info(device)
    return HEADROOM_BYTES + int(HEADROOM_FRACTION * total)


@dataclass(frozen=True)
class GpuBudget:
    """Whether new allocations fit on a device while leaving ``headroom_bytes`` free.

    ``free_bytes_fn`` reports the free bytes; it defaults to the CUDA driver's figure, and tests hand
    in a fake one to decide placements on a machine without a GPU.
    """

    device: torch.device
    headroom_bytes: int = HEADROOM_BYTES
    free_bytes_fn: Callable[[], int] | None = None

    @staticmethod
    def for_device(device: torch.device) -> GpuBudget:
        return GpuBudget(device, default_headroom(device))

    def free_bytes(self) -> int:
        if self.free_bytes_fn is not None:
            return int(self.free_bytes_fn())
        return cuda_free_bytes(self.device)

    def fits(self, nbytes: int) -> bool:
        return nbytes + self.headroom_bytes <= self.free_bytes()


def release_cached_memory() -> None:
    """Hand torch's cached, unused GPU blocks back after an out-of-memory error, so a retry can use them
    (and FAISS, which allocates outside torch, can too)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def split_on_oom(run: Callable[[int, int], R], count: int, join: Callable[[list[R]], R], what: str = "batch") -> R:
    """``run(0, count)``; if the device runs out of memory, run the two halves instead (recursively)
    and ``join`` their results in order.  A single item that still does not fit re-raises.

    Every item's result must depend on that item alone (true of searches and embeddings), so the
    split changes no result.
    """
    try:
        return run(0, count)
    except torch.OutOfMemoryError:
        if count <= 1:
            raise
    # Retried outside the except block: the exception's traceback holds the frames, and with them the
    # tensors, of the failed attempt; leaving the block frees them before the halves allocate.
    release_cached_memory()
    log.warning("out of device memory on a %s of %d: splitting it in two and retrying", what, count)
    half = count // 2
    first = split_on_oom(run, half, join, what)
    second = split_on_oom(lambda start, stop: run(half + start, half + stop), count - half, join, what)
    return join([first, second])


@dataclass(frozen=True)
class Placement:
    """Where an exact index's buffers go: its scanned matrix, and the fp32 copy a half-precision matrix
    is re-ranked from.  ``note`` says why something is not on the device, for logs and statistics."""

    matrix_on_device: bool
    copy_on_device: bool
    note: str = ""


def plan_placement(
    rows: int, dimension: int, dtype: torch.dtype, budget: GpuBudget | None, copy_on_device: bool
) -> Placement:
    """Place ``rows`` rows: everything on the device when it fits; else the fp32 copy in host memory
    (re-ranks get slower, every scan stays on the GPU); else the whole index on the CPU.

    Sizes count the new buffers alone, which is the peak: a growing index allocates them before it
    frees the old ones.
    """
    half = dtype != torch.float32
    matrix_bytes = rows * (dimension * torch.finfo(dtype).bits // 8 + 4 + 1)  # rows, fp32 norms, alive
    copy_bytes = rows * dimension * 4 if half and copy_on_device else 0
    if budget is None or budget.fits(matrix_bytes + copy_bytes):
        return Placement(True, half and copy_on_device)
    free = budget.free_bytes()
    if copy_bytes and budget.fits(matrix_bytes):
        return Placement(True, False, f"fp32 copy in host memory: {_gib(copy_bytes)} more did not fit beside the scan")
    return Placement(
        False,
        False,
        f"does not fit on {budget.device}: needs {_gib(matrix_bytes)}, {_gib(free)} free "
        f"of which {_gib(budget.headroom_bytes)} is kept as headroom",
    )


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


class WorkerThreads:
    """The device worker's intra-op threads, chosen per batch on a CPU when none are configured: all
    cores but one for small work, every core from ``large_from`` units (queries, texts) on.

    The rules of ``fit_search`` and ``fit_embed``, for a server whose OpenMP runtime sleeps between
    regions (``arrwdb.runtime.openmp``; the reasons in docs/CONFIGURATION.md, ``ARRWDB_TORCH_THREADS``):
    - a search takes every core for any batch while the event loop is idle (fewer than 8 requests in
      flight): a lone scan finishes sooner; with the loop busy only from 8 queries on, because two
      threads for small straggler batches break the pattern of one full batch at a time;
    - a forward pass takes every core from 8 texts on while the loop is idle and from 32 while it is
      busy; a lone text stays on one thread: a small forward pass is mostly per-op overhead, which a
      second thread only adds to.  A CPU forward pass of four texts or more runs in lanes instead
      (up to one a core, at least two texts a lane), on threads of their own with one intra-op
      thread each (``arrwdb.runtime.tuning.cpu_lanes``): these rules are for the others.
    ``ARRWDB_TORCH_THREADS`` fixes the count instead.  Called on the worker thread only (OpenMP
    thread counts are per calling thread).
    """

    def __init__(self, configured: int | None, device: torch.device) -> None:
        self.small = worker_threads(configured, device.type)
        self.adaptive = not configured and device.type != "cuda"
        self.large = usable_cores() if self.adaptive else self.small
        self._current = 0

    def fit_search(self, queries: int, requests_in_flight: int) -> None:
        """Threads for a search batch: every core for any batch while the event loop is idle."""
        self.fit(queries, LARGE_BATCH if requests_in_flight >= BUSY_LOOP_REQUESTS else 1)

    def fit_embed(self, texts: int, requests_in_flight: int) -> None:
        """Threads for a forward pass: every core from fewer texts while the event loop is idle."""
        self.fit(texts, LARGE_EMBED_BATCH_BUSY if requests_in_flight >= BUSY_LOOP_REQUESTS else LARGE_BATCH)

    def fit(self, work: int, large_from: int) -> None:
        """Threads for a batch of ``work`` units (queries, texts): all cores from ``large_from`` on."""
        wanted = self.large if work >= large_from else self.small
        if wanted != self._current:
            torch.set_num_threads(wanted)
            self._current = wanted
