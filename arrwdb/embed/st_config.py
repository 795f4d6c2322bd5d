"""How a local model directory says to turn hidden states into a sentence vector, read the way
sentence-transformers reads it, so a user's BGE or MiniLM directory gives the vectors it gives there.

- ``modules.json`` lists the modules: Transformer, then Pooling (its folder's ``config.json`` names
  the mode: CLS token, mean, max, or mean / sqrt(length)), then Normalize when the vectors are to be
  L2-normalised.  Other modules (Dense projections, for one) are refused at load with a clear error.
- ``sentence_bert_config.json``'s ``max_seq_length`` is the window; without it, the smaller of the
  model's ``max_position_embeddings`` and the tokenizer's ``model_max_length``.
- A directory without ``modules.json`` is a plain Hugging Face encoder: sentence-transformers then
  uses mean pooling and does not normalise, and so does arrwdb.

Pure file reading: no torch here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POOLING_MODES = ("cls", "mean", "max", "mean_sqrt_len")
_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
}
_UNSUPPORTED_POOLING = ("pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")
_MODULE = "sentence_transformers.models."
_KNOWN_MODULES = {_MODULE + "Transformer", _MODULE + "Pooling", _MODULE + "Normalize"}
_UNBOUNDED_TOKENIZER = 10**6  # tokenizer_config.json's model_max_length for "no limit" is a huge number


@dataclass(frozen=True)
class SentenceSpec:
    """What a model directory says about its sentence vectors."""

    window: int  # tokens the model reads, special tokens included
    pooling: str  # one of POOLING_MODES
    normalize: bool


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read it as JSON ({exc})") from None


def read_sentence_spec(model_dir: Path) -> SentenceSpec:
    config = read_json(model_dir / "config.json")
    modules_file = model_dir / "modules.json"
    pooling, normalize = "mean", False
    if modules_file.exists():
        modules = read_json(modules_file)
        types = [module.get("type", "") for module in modules]
        unknown = [t for t in types if t not in _KNOWN_MODULES]
        if unknown:
            raise ValueError(f"{model_dir}: modules {unknown} are not supported (Transformer, Pooling, Normalize are)")
        normalize = _MODULE + "Normalize" in types
        for module in modules:
            if module.get("type") == _MODULE + "Pooling":
                pooling = _pooling_mode(model_dir / module.get("path", "") / "config.json")
    return SentenceSpec(window=model_window(model_dir, config), pooling=pooling, normalize=normalize)


def _pooling_mode(path: Path) -> str:
    settings = read_json(path)
    for key in _UNSUPPORTED_POOLING:
        if settings.get(key):
            raise ValueError(f"{path}: {key} is not supported (CLS, mean, max and mean-sqrt-len pooling are)")
    modes = [mode for key, mode in _POOLING_KEYS.items() if settings.get(key)]
    if len(modes) != 1:
        raise ValueError(f"{path}: exactly one pooling mode must be on, found {modes or 'none'}")
    return modes[0]


def model_window(model_dir: Path, config: dict[str, Any]) -> int:
    """Tokens the model reads (special tokens included), as sentence-transformers decides it."""
    positions = int(config.get("max_position_embeddings", 512))
    st_config = model_dir / "sentence_bert_config.json"
    if st_config.exists():
        window = read_json(st_config).get("max_seq_length")
        if window is not None:
            return min(int(window), positions)
    tokenizer_config = model_dir / "tokenizer_config.json"
    limit = positions
    if tokenizer_config.exists():
        declared = read_json(tokenizer_config).get("model_max_length")
        if isinstance(declared, int | float) and declared < _UNBOUNDED_TOKENIZER:
            limit = min(limit, int(declared))
    return limit
