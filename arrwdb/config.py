"""Settings: one object, read once at start (environment, prefix ``ARRWDB_``; CLI flags override).

Nothing reads configuration at import time: ``Settings()`` is built by the CLI (or a test) and passed
down explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARRWDB_", extra="ignore")

    data_dir: Path = Field(Path("./data"), description="Where the SQLite store and index snapshots live.")
    host: str = Field("127.0.0.1", description="Listen address.")
    port: int = Field(8000, ge=0, le=65535, description="Listen port (0 picks a free one).")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when torch sees a GPU, else the CPU. Resolved once at start."
    )

    # Batching.  256 keeps one CPU embed batch under a few seconds and fills a GPU matmul.
    max_batch_size: int = Field(256, ge=1, description="Most queries (or texts) in one batch; 1 = off.")
    # Only applies while the worker is busy: an idle worker takes a lone request at once.
    max_batch_wait_ms: float = Field(2.0, ge=0, le=5, description="Extra wait to fill a batch, from the oldest.")
    max_queue: int = Field(4096, ge=1, description="Admitted requests waiting; beyond it -> 429.")
    request_timeout_ms: int = Field(30000, ge=1, description="Default (and largest) deadline of a request.")
    max_request_bytes: int = Field(32 * MIB, ge=32 * MIB, description="Larger bodies get 413.")

    # Auth.  Empty = auth off, which is only allowed on a loopback host.
    api_keys: str = Field("", description="Comma-separated API keys; each key is a tenant of its own.")
    admin_key: str = Field("", description="Key that may manage tenants and keys.")

    # Embedding.
    embed_cache_bytes: int = Field(64 * MIB, ge=0, description="LRU cache of text -> vector, in bytes.")
    embed_token_budget: int = Field(
        8192, ge=256, description="Most tokens in one embed batch, so bulk work yields the worker often."
    )

    # Threads.  None = let torch decide (all cores).
    torch_threads: int | None = Field(None, ge=1, description="Intra-op threads of the device worker.")

    build_threads: int = Field(
        1, ge=1, description="FAISS threads of the background index builder (the rest serve queries)."
    )

    log_level: str = Field("info", description="Python logging level.")

    def api_key_list(self) -> list[str]:
        return [key.strip() for key in self.api_keys.split(",") if key.strip()]
