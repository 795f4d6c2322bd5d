"""Choosing and loading the embedder, without importing torch until a model is really wanted."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from arrwdb.embed.protocol import Embedder

log = logging.getLogger("arrwdb.embed")

if TYPE_CHECKING:
    import torch


def load_embedder(
    device: torch.device | str | None = None,
    *,
    model: str = "minilm",
    model_dir: Path | None = None,
    dtype: torch.dtype | str | None = None,
    name: str | None = None,
) -> Embedder:
    """Load the embedder named ``model`` ("minilm", or "hash" for the model-free fake).

    ``device`` None picks CUDA when there is one, else the CPU.  ``dtype`` may be a name such as
    "float16" (as it comes from configuration); None means float32.  ``model_dir``: a local BERT-family
    sentence-transformers / Hugging Face directory instead of the packaged MiniLM, called ``name``.
    """
    if model == "hash":
        from arrwdb.embed.fake import HashEmbedder

        return HashEmbedder()
    if model != "minilm":
        raise ValueError(f"unknown embedding model {model!r}: expected 'minilm' or 'hash'")
    import torch

    from arrwdb.embed.minilm import MiniLMEmbedder

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}")
        dtype = resolved
    started = time.perf_counter()
    if model_dir is not None and not (Path(model_dir) / "config.json").is_file():
        raise ValueError(f"model {name!r}: {model_dir} is not a model directory (it has no config.json)")
    embedder = MiniLMEmbedder(device=device, model_dir=model_dir, dtype=dtype, name=name)
    log.info("embedding model %s loaded in %.1f s", embedder.name, time.perf_counter() - started)
    return embedder
