"""The embedding models an engine serves: looked up by name, described for ``GET /v1/models``, and
the inputs of an OpenAI-style embeddings call checked against the model's vocabulary and window."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from arrwdb.embed.protocol import Embedder, Item
from arrwdb.errors import InvalidInput, NotReady, UnknownModel

if TYPE_CHECKING:
    import torch

    from arrwdb.config import Settings


class ModelRegistry:
    """Loaded embedders by name; the first one added is the default (the packaged MiniLM)."""

    def __init__(self) -> None:
        self.embedders: dict[str, Embedder] = {}
        self.created: dict[str, int] = {}  # Unix seconds when each model was loaded ("created" in /v1/models)
        self.default: str | None = None
        self.matryoshka: set[str] = set()  # models whose vectors may be shortened (OpenAI's ``dimensions``)

    def add(self, embedder: Embedder, name: str | None = None) -> None:
        name = name or embedder.name
        if name in self.embedders:
            raise ValueError(f"two models are named {name!r}")
        self.embedders[name] = embedder
        self.created[name] = int(time.time())
        if self.default is None:
            self.default = name

    def names(self) -> list[str]:
        return list(self.embedders)

    def allow_shortening(self, names: Sequence[str]) -> None:
        """Mark ``names`` (ARRWDB_MATRYOSHKA_MODELS) as Matryoshka models; a name that is not loaded is a
        ValueError, so that a typo stops the start instead of leaving ``dimensions`` refused."""
        unknown = [name for name in names if name not in self.embedders]
        if unknown:
            known = ", ".join(repr(name) for name in self.embedders)
            raise ValueError(f"ARRWDB_MATRYOSHKA_MODELS names {unknown}, which are not loaded; the models are {known}")
        self.matryoshka = set(names)

    def name_of(self, model: str | None) -> str:
        """The name of the model a request asks for (None: the default); a 404 naming the known ones
        for a model that is not loaded."""
        if self.default is None:
            raise NotReady("the embedding model is still loading")
        if model is None:
            return self.default
        if model not in self.embedders:
            known = ", ".join(repr(name) for name in self.embedders)
            raise UnknownModel(f"model {model!r} is not served here; the models are {known}", param="model")
        return model

    def get(self, model: str | None) -> Embedder:
        return self.embedders[self.name_of(model)]

    def describe(self) -> list[dict[str, Any]]:
        """Each model as plain values: its id, when it was loaded, its dimension and window."""
        return [
            {
                "id": name,
                "created": self.created[name],
                "dimension": embedder.dimension,
                "max_tokens": embedder.max_tokens,
                "default": name == self.default,
                "matryoshka": name in self.matryoshka,
                "memory_bytes": model_memory(embedder),
                "kind": "embedding",
                "vocab_size": embedder.vocab_size,  # for the OpenAPI schema's token ids; not in /v1/models
                "tokenizer": tokenizer_source(embedder),  # for HTTP workers, which tokenize; not in /v1/models
            }
            for name, embedder in self.embedders.items()
        ]


def tokenizer_source(embedder: Embedder) -> dict[str, Any] | None:
    """Where an HTTP worker loads the tokenizer that gives this embedder's ids (``TextTokenizer``), and
    the fingerprint it must come out with; None for an embedder without one."""
    tokenizer = getattr(embedder, "tokenizer", None)
    model_dir = getattr(embedder, "model_dir", None)
    if not embedder.tokenizer_id or tokenizer is None or model_dir is None:
        return None
    return {
        "id": embedder.tokenizer_id,
        "dir": str(model_dir),
        "window": tokenizer.window,
        "overlap": tokenizer.chunk_overlap,
    }


def model_memory(embedder: Embedder) -> int:
    """Bytes of the model's weights on its device (0 for a model-free embedder)."""
    return int(getattr(embedder, "memory_bytes", 0))


def check_token_inputs(embedder: Embedder, inputs: Sequence[Item]) -> None:
    """Token-id inputs must be ids of the model's vocabulary: anything else is the client's error (a
    422 naming the input), never an index error on the device."""
    vocab = embedder.vocab_size
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            if not item.strip():
                raise InvalidInput(f"input[{i}] must not be empty", param="input")
            continue
        if len(item) == 0:
            raise InvalidInput(f"input[{i}] must hold at least one token id", param="input")
        bad = next((token for token in item if not 0 <= token < vocab), None)
        if bad is not None:
            raise InvalidInput(
                f"input[{i}] holds token id {bad}, outside the vocabulary of {embedder.name!r} (0 to {vocab - 1})",
                param="input",
            )


def output_dimension(embedder: Embedder, name: str, dimensions: int | None, matryoshka: bool) -> int:
    """The length of the vectors an embeddings call answers with (OpenAI's ``dimensions``).

    A Matryoshka model (trained so that a vector's first N values are themselves a good embedding)
    answers with any length from 1 to its own; any other model only with its own, and a clear 422
    otherwise: cutting its vectors would silently lose most of their meaning."""
    full = embedder.dimension
    if dimensions is None or dimensions == full:
        return full
    if not matryoshka:
        raise InvalidInput(
            f"model {name!r} gives {full}-dimensional vectors and cannot shorten them (it is not listed in "
            f"ARRWDB_MATRYOSHKA_MODELS): leave dimensions out or set it to {full}",
            param="dimensions",
        )
    if not 1 <= dimensions <= full:
        raise InvalidInput(
            f"model {name!r} gives {full}-dimensional vectors: dimensions must be from 1 to {full}",
            param="dimensions",
        )
    return dimensions


def shorten(vectors: np.ndarray, dimensions: int) -> np.ndarray:
    """Matryoshka truncation as OpenAI and TEI do it: the first ``dimensions`` values of each row,
    rescaled to unit length (a row of zeros stays zeros)."""
    if dimensions >= vectors.shape[1]:
        return vectors
    head = np.ascontiguousarray(vectors[:, :dimensions], dtype=np.float32)
    norms = np.linalg.norm(head, axis=1, keepdims=True)
    return head / np.where(norms > 0, norms, 1.0)


def load_configured_models(settings: Settings, device: torch.device) -> tuple[dict[str, Embedder], dict[str, Any]]:
    """The models the settings name besides the default: each of ARRWDB_MODELS by name, and the
    ARRWDB_RERANK_MODEL cross-encoder, loaded offline on ``device`` in the engine's dtype."""
    from arrwdb.embed.loader import load_embedder
    from arrwdb.runtime.device import model_dtype

    dtype = model_dtype(device, settings.embed_precision)
    extra = {
        name: load_embedder(device, model_dir=path, dtype=dtype, name=name)
        for name, path in settings.model_paths().items()
    }
    rerankers: dict[str, Any] = {}
    rerank = settings.rerank_model_path()
    if rerank is not None:
        from arrwdb.embed.cross_encoder import CrossEncoder

        rerankers[rerank[0]] = CrossEncoder(rerank[1], rerank[0], device, dtype)
    return extra, rerankers
