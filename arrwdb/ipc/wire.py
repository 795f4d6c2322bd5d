"""The engine protocol's messages: a msgpack header, then raw frames (vectors, rendered hits).

A request is ``[header, *frames]`` with header ``{"i": id, "op": name, "g": engine generation, "a":
arguments, "r": rate-limit key or None, "ms": milliseconds left before the deadline}``.  A reply is
``[header, *frames]`` with header ``{"i": id, "v": value, "t": [queue_ms, compute_ms, batch_size]}``
or ``{"i": id, "e": [error class, message, retry_after_s]}``.  An abort is a request whose op is
``abort``: the engine cancels the request ``i`` names, and its queued work is dropped before compute.

Vectors travel as raw little-endian float32 frames, never as lists of numbers; token ids an HTTP
worker made (``arrwdb.embed.tokens``) as one little-endian int32 frame a message, each text naming its
tokenizer, offset and length in it; hits travel as the JSON the HTTP answer holds, written into it as
they are.  Errors travel as their class in
``arrwdb.errors`` and come out as the same typed error on the other side.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import numpy as np

from arrwdb import errors
from arrwdb.embed.tokens import TokenizedChunks, TokenizedText
from arrwdb.library.filters import parse_filter
from arrwdb.library.inputs import DocumentInput, RerankInput, Retrieval, SearchInput
from arrwdb.runtime.timings import Timings

ABORT = "abort"

_encoder = msgspec.msgpack.Encoder(enc_hook=lambda value: _plain(value))
_decoder = msgspec.msgpack.Decoder()
_ERRORS: dict[str, type[errors.ArrwdbError]] = {
    cls.__name__: cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.ArrwdbError)
}


def _plain(value: Any) -> Any:
    """msgpack has no numpy types: arrays become lists, numpy scalars Python numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot send {type(value).__name__} over the engine protocol")


def pack(header: dict[str, Any]) -> bytes:
    return _encoder.encode(header)


def unpack(frame: bytes | memoryview) -> dict[str, Any]:
    return _decoder.decode(frame)  # type: ignore[no-any-return]


# -- errors ------------------------------------------------------------------------------------------


def error_fields(exc: BaseException) -> list[Any]:
    if isinstance(exc, errors.ArrwdbError):
        return [type(exc).__name__, exc.message, getattr(exc, "retry_after_s", 1), exc.param]
    return ["ArrwdbError", f"the engine failed: {type(exc).__name__}: {exc}", 1, None]


def error_from(fields: list[Any]) -> errors.ArrwdbError:
    name, message, retry_after_s, param = fields
    cls = _ERRORS.get(name, errors.ArrwdbError)
    if issubclass(cls, (errors.Overloaded, errors.ShardUnavailable)):
        return cls(message, retry_after_s=retry_after_s)
    return cls(message, param=param)


def timings_fields(timings: Timings) -> list[Any]:
    return [timings.queue_ms, timings.compute_ms, timings.batch_size]


def timings_from(fields: list[Any] | None) -> Timings:
    return Timings() if fields is None else Timings(fields[0], fields[1], fields[2])


# -- vectors -----------------------------------------------------------------------------------------


def vector_frame(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def _framed(vector: np.ndarray | None, frames: list[bytes]) -> int:
    """Append the vector's frame; its index, or -1 for no vector."""
    if vector is None:
        return -1
    frames.append(vector_frame(vector))
    return len(frames) - 1


def vector_from(frame: bytes | memoryview) -> np.ndarray:
    return np.frombuffer(frame, dtype="<f4").copy()  # writable, and not tied to the message


# -- token ids -------------------------------------------------------------------------------------


class _IdsFrame:
    """The token ids of one message, gathered into one int32 frame appended after its other frames."""

    def __init__(self) -> None:
        self.parts: list[list[int]] = []
        self.count = 0
        self.marks: list[list[Any]] = []  # [tokenizer, frame index, offset, length], the index set by close

    def mark(self, tokenizer: str, ids: list[int]) -> list[Any]:
        made = [tokenizer, -1, self.count, len(ids)]
        self.parts.append(ids)
        self.count += len(ids)
        self.marks.append(made)
        return made

    def text(self, item: Any) -> list[Any] | None:
        """A text's mark when it carries ids, else None."""
        return self.mark(item.tokenizer, item.ids) if isinstance(item, TokenizedText) else None

    def close(self, frames: list[bytes]) -> None:
        if not self.parts:
            return
        ids = np.fromiter((i for part in self.parts for i in part), dtype="<i4", count=self.count)
        frames.append(ids.tobytes())
        for made in self.marks:
            made[1] = len(frames) - 1


def _ids_of(mark: list[Any], frames: list[Any]) -> list[int]:
    _, index, offset, length = mark
    return np.frombuffer(frames[index], dtype="<i4", count=length, offset=4 * offset).tolist()


def _text_in(text: Any, mark: list[Any] | None, frames: list[Any]) -> Any:
    return text if mark is None else TokenizedText(text, _ids_of(mark, frames), mark[0], by_worker=True)


def texts_out(items: list[Any], frames: list[bytes]) -> dict[str, Any]:
    """Texts (or OpenAI token arrays) to embed: ``s`` the items, ``tk`` each text's ids mark or None."""
    ids = _IdsFrame()
    marks = [ids.text(item) for item in items]
    ids.close(frames)
    return {"s": [str(item) if isinstance(item, str) else item for item in items], "tk": marks if ids.parts else None}


def texts_in(described: dict[str, Any], frames: list[Any]) -> list[Any]:
    marks = described["tk"] or [None] * len(described["s"])
    return [_text_in(item, mark, frames) for item, mark in zip(described["s"], marks, strict=True)]


# -- search queries ------------------------------------------------------------------------------------


def queries_out(queries: list[SearchInput]) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The queries as header fields, and their client vectors as frames (``v`` is a frame's index)."""
    described: list[dict[str, Any]] = []
    frames: list[bytes] = []
    ids = _IdsFrame()
    for query in queries:
        position = _framed(query.embedding, frames)
        described.append(
            {
                "q": None if query.query is None else str(query.query),
                "tk": ids.text(query.query),
                "k": query.k,
                "f": query.filter_key if query.filter is not None else None,
                "t": query.include_text,
                "p": query.params,
                "v": position,
                "w": query.where,
                "vf": query.vector_field,
                "rr": None if query.rerank is None else [query.rerank.candidates, query.rerank.model],
                "x": None if query.retrieval is None else query.retrieval.plain(),
            }
        )
    ids.close(frames)
    return described, frames


def queries_in(described: list[dict[str, Any]], frames: list[Any]) -> list[SearchInput]:
    """The engine's side of ``queries_out``: filters parsed again from their canonical JSON (the HTTP
    worker checked them; parsing is what the engine needs of them)."""
    queries = []
    for fields in described:
        source = fields["f"]
        position = fields["v"]
        queries.append(
            SearchInput(
                query=_text_in(fields["q"], fields.get("tk"), frames),
                embedding=None if position < 0 else vector_from(frames[position]),
                k=fields["k"],
                filter=None if source is None else parse_filter(json.loads(source)),
                filter_key="" if source is None else source,
                include_text=fields["t"],
                params=fields["p"],
                json=True,
                where=fields["w"],
                vector_field=fields["vf"],
                rerank=None if fields["rr"] is None else RerankInput(*fields["rr"]),
                retrieval=None if fields["x"] is None else Retrieval.from_plain(fields["x"]),
            )
        )
    return queries


# -- documents -------------------------------------------------------------------------------------


def documents_out(docs: list[DocumentInput]) -> tuple[list[dict[str, Any]], list[bytes]]:
    described: list[dict[str, Any]] = []
    frames: list[bytes] = []
    ids = _IdsFrame()
    for doc in docs:
        position = _framed(doc.embedding, frames)
        chunks = doc.chunks
        described.append(
            {
                "ck": None
                if chunks is None
                else [chunks.spans, [ids.mark(chunks.tokenizer, chunk) for chunk in chunks.ids]],
                "id": doc.id,
                "title": doc.title,
                "text": doc.text,
                "m": doc.metadata,
                "v": position,
                "w": doc.where,
                "vf": doc.vector_field,
            }
        )
    ids.close(frames)
    return described, frames


def _chunks_in(fields: list[Any] | None, frames: list[Any]) -> TokenizedChunks | None:
    if fields is None:
        return None
    spans, marks = fields
    return TokenizedChunks(
        marks[0][0] if marks else "",
        [tuple(span) for span in spans],
        [_ids_of(mark, frames) for mark in marks],
        by_worker=True,
    )


def documents_in(described: list[dict[str, Any]], frames: list[Any]) -> list[DocumentInput]:
    return [
        DocumentInput(
            id=fields["id"],
            title=fields["title"],
            text=fields["text"],
            embedding=None if fields["v"] < 0 else vector_from(frames[fields["v"]]),
            metadata=fields["m"],
            where=fields["w"],
            vector_field=fields["vf"],
            chunks=_chunks_in(fields.get("ck"), frames),
        )
        for fields in described
    ]
