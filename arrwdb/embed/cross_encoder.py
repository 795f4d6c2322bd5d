"""A cross-encoder reranker (an ms-marco-style BERT sequence classifier with one label) from a local
directory, scored the way sentence-transformers' CrossEncoder scores it: each (query, document) pair
tokenised together (token types 0 and 1, the longer side truncated first to the window), the
classifier's logit, then its activation (sigmoid unless the directory's config names another).

Like the embedders, the work is split in two: ``prepare`` (tokenisation, padding: CPU work on the
scheduler's prepare thread) and ``score_prepared`` (the forward passes, on the device worker).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from arrwdb.embed.chunking import token_estimate
from arrwdb.embed.hub_kernels import load_hub_kernels_first
from arrwdb.embed.st_config import model_window, read_json

DEFAULT_FORWARD_BATCH = 32  # pairs per forward pass: pairs are long (query + a chunk)
Pair = tuple[str, str]


@dataclass
class PairBatch:
    """Tokenised pairs sorted by length into padded groups: ``(ids, token types, mask)`` each."""

    n: int
    order: np.ndarray
    groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]

    def __len__(self) -> int:
        return self.n


def pair_cost(query: str, document: str, window: int) -> int:
    """Tokens a pair is expected to take (a batch's token budget counts these), at most the window."""
    return min(window, token_estimate(query) + token_estimate(document) + 3)


class CrossEncoder:
    def __init__(
        self,
        model_dir: Path,
        name: str,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        forward_batch: int = DEFAULT_FORWARD_BATCH,
    ) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"  # local directories only: nothing is downloaded at run time
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        from tokenizers import Tokenizer

        load_hub_kernels_first()
        from transformers import AutoModelForSequenceClassification
        from transformers.utils import logging as hf_logging

        from arrwdb.embed.minilm import tokenizer_json

        model_dir = Path(model_dir)
        config = read_json(model_dir / "config.json")
        self.name = name
        self.created = int(time.time())  # "created" in /v1/models
        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        self.forward_batch = forward_batch
        self.window = model_window(model_dir, config)
        hf_logging.disable_progress_bar()
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), local_files_only=True)
        if model.config.num_labels != 1:
            labels = model.config.num_labels
            raise ValueError(f"{model_dir}: a reranker has one label (a relevance score), not {labels}")
        self._model = model.to(device=self.device, dtype=self.dtype).eval()
        self.memory_bytes = sum(p.numel() * p.element_size() for p in self._model.parameters())
        self._sigmoid = _activation(config, model_dir)
        self._tokenizer = Tokenizer.from_str(tokenizer_json(model_dir))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=self.window, strategy="longest_first")

    def cost(self, query: str, document: str) -> int:
        return pair_cost(query, document, self.window)

    def prepare(self, pairs: Sequence[Pair]) -> PairBatch:
        encodings = self._tokenizer.encode_batch(list(pairs))
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(-lengths, kind="stable")
        groups = []
        for start in range(0, len(order), self.forward_batch):
            idx = order[start : start + self.forward_batch]
            width = int(lengths[idx].max())
            ids = np.zeros((len(idx), width), dtype=np.int64)
            types = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                encoding = encodings[i]
                ids[row, : lengths[i]] = encoding.ids
                types[row, : lengths[i]] = encoding.type_ids
                mask[row, : lengths[i]] = 1
            groups.append((torch.from_numpy(ids), torch.from_numpy(types), torch.from_numpy(mask)))
        return PairBatch(len(encodings), order, groups)

    def score_prepared(self, batch: PairBatch) -> np.ndarray:
        """Float32 relevance scores, one per pair, in input order."""
        out = np.empty(batch.n, dtype=np.float32)
        if batch.n == 0:
            return out
        scores = []
        with torch.inference_mode():
            for ids, types, mask in batch.groups:
                inputs = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}
                logits = self._model(**{k: v.to(self.device) for k, v in inputs.items()}).logits[:, 0]
                logits = logits.to(torch.float32)
                scores.append(torch.sigmoid(logits) if self._sigmoid else logits)
            out[batch.order] = torch.cat(scores).cpu().numpy()
        return out

    def score(self, pairs: Sequence[Pair]) -> np.ndarray:
        return self.score_prepared(self.prepare(pairs))


def _activation(config: dict, model_dir: Path) -> bool:  # type: ignore[type-arg]
    """Whether scores go through a sigmoid: sentence-transformers' default for one label, unless the
    directory's config names its activation (Identity for raw logits)."""
    saved = config.get("sentence_transformers", {}).get("activation_fn")
    if saved is None or saved.endswith("Sigmoid"):
        return True
    if saved.endswith("Identity"):
        return False
    raise ValueError(f"{model_dir}: activation {saved!r} is not supported (Sigmoid and Identity are)")
