"""Settings: one object, read once at start (environment, prefix ``ARRWDB_``; CLI flags override).

Nothing reads configuration at import time: ``Settings()`` is built by the CLI (or a test) and passed
down explicitly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"  # the packaged model's id (arrwdb.embed.minilm)
_MODEL_NAME = re.compile(r"[A-Za-z0-9._:/-]{1,128}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARRWDB_", extra="ignore")

    data_dir: Path = Field(Path("./data"), description="Where the SQLite store and index snapshots live.")
    host: str = Field("127.0.0.1", description="Listen address.")
    port: int = Field(8000, ge=0, le=65535, description="Listen port (0 picks a free one).")
    workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto",
        description="HTTP worker processes beside the engine process (they share the port); 0 = HTTP inside "
        "the engine's process. auto: see workers_for().",
    )
    ray_address: str = Field(
        "",
        description="A Ray cluster to run the engines on as actors (auto: the one `ray start` made on this host; "
        "empty: no Ray). Needs the ray extra.",
    )
    failover_after_s: float = Field(
        10.0,
        ge=0.5,
        description="Under --ray: how long a shard's primary engine may be gone before an in-sync replica is "
        "promoted in its place (writes to that shard answer 503 meanwhile; reads go to a replica at once).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when torch sees a GPU, else the CPU. Resolved once at start."
    )

    # Batching.  256 keeps one CPU embed batch under a few seconds and fills a GPU matmul.
    max_batch_size: int = Field(256, ge=1, description="Most queries (or texts) in one batch; 1 = off.")
    # Only applies while the worker is busy: an idle worker takes a lone request at once.
    # 5 ms, not less: under the Locust mix on 2 CPU cores (2026-11-27), 2 ms left embed batches of 1-2 texts
    # and a saturated worker (p95 110 ms); 5 ms formed larger ones and cut p95 to 76 ms. An idle worker
    # never waits for it.
    max_batch_wait_ms: float = Field(5.0, ge=0, le=5, description="Extra wait to fill a batch, from the oldest.")
    commit_max_requests: int = Field(
        256, ge=1, description="Most write requests in one group commit (one SQLite transaction, one fsync)."
    )
    max_queue: int = Field(
        4096,
        ge=1,
        description="Admitted requests waiting for the device (queued, or in the batches it holds); beyond it -> 429.",
    )
    request_timeout_ms: int = Field(30000, ge=1, description="Default (and largest) deadline of a request.")
    max_request_bytes: int = Field(32 * MIB, ge=32 * MIB, description="Larger bodies get 413.")

    # Auth.  Empty = auth off, which is only allowed on a loopback host.
    api_keys: str = Field("", description="Comma-separated API keys; each key is a tenant of its own.")
    admin_key: str = Field("", description="Key that may manage tenants and keys (/v1/admin/keys).")
    # Per-key token bucket; 0 = no rate limit (API.md: none applies unless one is configured).
    rate_limit_per_s: float = Field(0.0, ge=0, description="Requests per second per API key; 0 = off.")
    rate_limit_burst: int | None = Field(
        None, ge=1, description="Requests a key may send at once before the rate applies; default max(1, rate)."
    )
    # Browsers may call the API only from these origins; empty = no CORS headers at all.
    cors_origins: str = Field("", description="Comma-separated origins allowed by CORS ('*' for any); empty = off.")

    # Connections.  Idle and slow clients must not pin sockets forever (slowloris).
    keep_alive_s: float = Field(5.0, gt=0, description="An idle keep-alive connection is closed after this long.")
    header_timeout_s: float = Field(
        10.0, gt=0, description="A connection whose request headers are not complete within this is closed."
    )

    # Embedding.
    embed_cache_bytes: int = Field(64 * MIB, ge=0, description="LRU cache of text -> vector, in bytes.")
    # 2048 tokens hold the CPU worker for about 0.1-0.3 s: bulk ingestion yields to searches between pieces.
    embed_token_budget: int = Field(
        2048, ge=256, description="Most tokens in one embed batch, so bulk work yields the worker often."
    )

    embed_precision: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description=(
            "The model's dtype. auto: float16 on CUDA, bfloat16 on CPUs with bf16 in hardware"
            " (AMX or AVX-512 BF16), float32 elsewhere."
        ),
    )

    # Threads.  None = on a CPU, all cores but one for small work (the event loop keeps a core) and all
    # cores for larger batches (engine's rules, device.WorkerThreads); all cores on CUDA.
    torch_threads: int | None = Field(None, ge=1, description="Intra-op threads of the device worker (fixed).")

    worker_priority: Literal["auto", "idle", "low", "normal"] = Field(
        "auto",
        description="CPU priority of arrwdb's compute threads below the event loop (Linux): idle = SCHED_IDLE, "
        "low = 10 nice values lower; auto: idle with 2+ cores, low on one.",
    )

    build_threads: int = Field(
        1,
        ge=1,
        description="FAISS threads of the background index builder while the server searches or embeds (the rest"
        " serve).",
    )
    build_threads_idle: int | None = Field(
        None,
        ge=1,
        description="FAISS threads of a build once a second has passed without searches or embeddings;"
        " a bulk import's commits do not count (default: every core this process may use; set it to"
        " ARRWDB_BUILD_THREADS to never take more).",
    )

    # Search-result cache, keyed by library version: any applied write to a library makes its entries
    # unreachable, so a search after an acknowledged write never sees a result computed before it.
    result_cache_bytes: int = Field(
        32 * MIB, ge=0, description="LRU cache of search results, in bytes (estimated); 0 turns it off."
    )

    # Observability.
    slow_query_ms: float = Field(
        100.0, ge=0, description='Searches slower than this are logged as JSON on logger "arrwdb.slow"; 0 = off.'
    )
    tracemalloc: int = Field(
        0,
        ge=0,
        description="Debug only: N > 0 traces Python allocations keeping N frames, and serves "
        "POST /debug/memory/snapshot (top growth between snapshots). Costs CPU and memory: off by default.",
    )

    log_level: str = Field("info", description="Python logging level.")

    # Models beside the packaged MiniLM (model_paths() parses them; a bad entry stops the start).
    models: str = Field(
        "",
        description="Extra embedding models: comma-separated name=PATH pairs, PATH a local "
        "sentence-transformers / Hugging Face BERT-family directory (loaded offline).",
    )
    matryoshka_models: str = Field(
        "",
        description="Comma-separated names of served models trained Matryoshka-style, whose vectors "
        "/v1/embeddings may shorten to `dimensions` (the first N values, re-normalised).",
    )
    rerank_model: str = Field(
        "",
        description="A local cross-encoder directory (PATH or name=PATH) for /v1/rerank and rerank in search.",
    )
    rerank_token_budget: int = Field(
        4096, ge=256, description="Most tokens in one rerank batch (query and document of each pair)."
    )

    def api_key_list(self) -> list[str]:
        return [key.strip() for key in self.api_keys.split(",") if key.strip()]

    def model_paths(self) -> dict[str, Path]:
        """ARRWDB_MODELS as {name: directory}; a malformed entry or a repeated name is a ValueError."""
        found: dict[str, Path] = {}
        for entry in (part.strip() for part in self.models.split(",")):
            if not entry:
                continue
            name, sep, path = (piece.strip() for piece in entry.partition("="))
            if not sep or not _MODEL_NAME.fullmatch(name) or not path:
                raise ValueError(f"ARRWDB_MODELS: {entry!r} is not name=PATH (a name of letters, digits and . _ : / -)")
            if name in found:
                raise ValueError(f"ARRWDB_MODELS: the name {name!r} is given twice")
            found[name] = Path(path).expanduser()
        return found

    def matryoshka_model_names(self) -> list[str]:
        """ARRWDB_MATRYOSHKA_MODELS as names (checked against the loaded models at start)."""
        return [name.strip() for name in self.matryoshka_models.split(",") if name.strip()]

    def rerank_model_path(self) -> tuple[str, Path] | None:
        """ARRWDB_RERANK_MODEL as (name, directory): ``name=PATH``, or a PATH named by its last folder."""
        entry = self.rerank_model.strip()
        if not entry:
            return None
        name, sep, path = (piece.strip() for piece in entry.partition("="))
        if not sep:
            name, path = Path(entry).expanduser().name, entry
        if not _MODEL_NAME.fullmatch(name) or not path:
            raise ValueError(f"ARRWDB_RERANK_MODEL: {entry!r} is not PATH or name=PATH")
        return name, Path(path).expanduser()

    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    def auth_enabled(self) -> bool:
        """Keys are required once any key is configured: tenant keys, or an admin key that mints them."""
        return bool(self.api_key_list() or self.admin_key.strip())
