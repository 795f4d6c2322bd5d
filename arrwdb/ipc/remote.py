"""The HTTP worker's side of the engine protocol: ``RemoteEngine`` answers ``EngineAPI`` by sending
each call to the engine process over one ZMQ DEALER socket and awaiting its reply.

One socket and one reader task serve every request of the worker; replies find their callers by id.
A caller that is cancelled (its HTTP client went away) sends an abort, and the engine drops the
request's work before compute.  Nothing waits on an engine that is not there: while the board says the
engine is not ready, calls fail at once with 503; when the engine process ends, every call waiting on
it fails with 503 at once, and the socket is made anew so that nothing sent to the dead engine is
delivered to its successor.  A reply that does not come within the request's deadline (and a grace
for the answer's trip) is a 504.  A write that was sent and got no reply is the exception: it may
have been applied before the engine ended, so it fails with ``OutcomeUnknown`` (503,
``outcome_unknown``), never with an error that would say nothing was done.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

import numpy as np
import zmq
import zmq.asyncio

from arrwdb.engine.api import replicas_need_ray
from arrwdb.errors import ArrwdbError, DeadlineExceeded, NotReady, OutcomeUnknown
from arrwdb.ipc import wire
from arrwdb.ipc.board import FAILED, READY, Board
from arrwdb.ipc.worker_tokenizers import WorkerTokenizers
from arrwdb.library.hits_json import HitsJSON
from arrwdb.library.inputs import DocumentInput, SearchInput
from arrwdb.runtime.ratelimit import RATE_KEY
from arrwdb.runtime.timings import Timings

log = logging.getLogger("arrwdb.server")

_WATCH_S = 0.02  # how often the worker looks at the board for an engine that ended or restarted
_REPLY_GRACE_S = 1.0  # past a request's deadline, how long its reply may take to arrive
_NO_DEADLINE_S = 60.0  # calls without a deadline (reads, key changes) wait at most this long

Reply = tuple[dict[str, Any], list[bytes]]
_WRITES = frozenset(
    {
        "create_library",
        "delete_library",
        "upsert_documents",
        "delete_document",
        "patch_document",
        "delete_documents",
        "create_api_key",
        "revoke_api_key",
    }
)


class RemoteEngine:
    def __init__(self, endpoint: str, board: Board, request_timeout_ms: float) -> None:
        self.endpoint = endpoint
        self.board = board
        self.request_timeout_ms = request_timeout_ms
        self._context = zmq.asyncio.Context()
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Reply], bool]] = {}  # id -> (future, a write?)
        self._socket: zmq.asyncio.Socket | None = None
        self._generation = -1
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox: list[tuple[int, list[bytes]]] = []  # (request id, or 0 for an abort; message)
        self._flush_scheduled = False
        # Texts to embed leave tokenized (the engine receives token ids; arrwdb.ipc.worker_tokenizers).
        self.tokenizers = WorkerTokenizers(self.models)

    # -- life cycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._connect()
        self._tasks = [asyncio.create_task(self._watch())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._fail_pending(NotReady("the server is shutting down"))
        if self._socket is not None:
            self._socket.close(0)
        self._context.term()

    def _connect(self) -> None:
        if self._socket is not None:
            self._socket.close(0)  # unsent messages to the old engine are dropped with it
        self._generation = self.board.generation
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDHWM, 0)  # admission bounds what is in flight
        socket.setsockopt(zmq.RCVHWM, 0)
        socket.connect(self.endpoint)
        self._socket = socket
        reader = asyncio.create_task(self._read(socket))
        self._tasks = [task for task in self._tasks if not task.done()] + [reader]

    async def _read(self, socket: zmq.asyncio.Socket) -> None:
        while True:
            try:
                head, *frames = await socket.recv_multipart()
            except (zmq.ZMQError, asyncio.CancelledError):
                return  # the socket was closed: a new one has its own reader
            try:
                header = wire.unpack(head)
            except Exception:
                log.exception("an unreadable reply from the engine was dropped")
                continue
            entry = self._pending.pop(header["i"], None)
            if entry is not None and not entry[0].done():
                entry[0].set_result((header, frames))

    async def _watch(self) -> None:
        """Fail every waiting call the moment the engine process is gone or replaced."""
        while True:
            await asyncio.sleep(_WATCH_S)
            board = self.board
            if board.generation != self._generation:
                self._fail_pending(NotReady("the engine restarted: try again"))
                self._connect()
            elif board.state != READY and self._pending:
                self._fail_pending(NotReady("the engine is not running: try again once /ready answers 200"))

    def _fail_pending(self, error: ArrwdbError) -> None:
        pending, self._pending = self._pending, {}
        for future, write in pending.values():
            if not future.done():
                future.set_exception(_unanswered(error) if write else error)

    # -- calls ---------------------------------------------------------------------------------------

    async def _call(
        self, op: str, args: dict[str, Any], frames: list[bytes] | None = None, deadline: float | None = None
    ) -> Reply:
        board = self.board
        if board.state != READY or board.generation != self._generation:
            if board.state == FAILED:
                raise NotReady("the engine's start-up failed: the server log says why")
            raise NotReady("the engine is not ready: try again once /ready answers 200")
        request_id = next(self._ids)
        header: dict[str, Any] = {"i": request_id, "op": op, "g": self._generation, "a": args, "r": RATE_KEY.get()}
        now = time.monotonic()
        wait_s = _NO_DEADLINE_S
        if deadline is not None:
            header["ms"] = max(0.0, (deadline - now) * 1000.0)
            wait_s = deadline - now + _REPLY_GRACE_S
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        write = op in _WRITES
        self._pending[request_id] = (future, write)
        timer = loop.call_later(wait_s, _time_out, future, write)
        self._post(request_id, [wire.pack(header), *(frames or ())])
        try:
            reply, out_frames = await future
        except asyncio.CancelledError:
            if self._pending.pop(request_id, None) is not None:
                self._post(0, [wire.pack({"i": request_id, "op": wire.ABORT})])
            raise
        finally:
            timer.cancel()
            self._pending.pop(request_id, None)
        error = reply.get("e")
        if error is not None:
            raise wire.error_from(error)
        return reply, out_frames

    def _post(self, request_id: int, message: list[bytes]) -> None:
        """Queue a message; the queue goes out once the event loop has run what is ready now.  Requests
        whose headers arrived together (a closed loop of clients answering a batch) then reach the
        engine together, and its scheduler forms one batch of them, as one process would."""
        self._outbox.append((request_id, message))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, []
        socket = self._socket
        if socket is None:
            return
        for request_id, message in outbox:
            sent = socket.send_multipart(message, flags=zmq.NOBLOCK, copy=False)
            sent.add_done_callback(lambda sent, request_id=request_id: self._check_sent(sent, request_id))

    def _check_sent(self, sent: asyncio.Future[Any], request_id: int) -> None:
        """A message the socket refused fails its call at once (503: it never left this process)."""
        error = None if sent.cancelled() else sent.exception()
        if error is None:
            return
        log.warning("the engine protocol could not send request %d: %r", request_id, error)
        entry = self._pending.pop(request_id, None)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(NotReady(f"the request could not be sent to the engine ({error!r}): try again"))

    async def _value(self, op: str, **args: Any) -> Any:
        reply, _ = await self._call(op, args)
        return reply["v"]

    async def ready(self) -> dict[str, Any]:
        return await self._value("ready")  # type: ignore[no-any-return]

    async def cluster(self) -> dict[str, Any]:
        return await self._value("cluster")  # type: ignore[no-any-return]

    async def change_replicas(self, tenant: str, key: str, shard: int, engine: str, add: bool) -> dict[str, Any]:
        await self.get_library(tenant, key)  # an unknown library is a 404 first
        raise replicas_need_ray()

    async def create_library(
        self,
        tenant: str,
        name: str,
        dimension: int | None,
        index_type: str,
        metric: str,
        params: dict[str, Any],
        model: str | None = None,
        shards: int = 1,
        replicas: int = 1,
    ) -> dict[str, Any]:
        return await self._value(  # type: ignore[no-any-return]
            "create_library",
            tenant=tenant,
            name=name,
            dimension=dimension,
            index_type=index_type,
            metric=metric,
            params=params,
            model=model,
            shards=shards,
            replicas=replicas,
        )

    async def list_libraries(self, tenant: str) -> list[dict[str, Any]]:
        return await self._value("list_libraries", tenant=tenant)  # type: ignore[no-any-return]

    async def get_library(self, tenant: str, key: str) -> dict[str, Any]:
        return await self._value("get_library", tenant=tenant, key=key)  # type: ignore[no-any-return]

    async def delete_library(self, tenant: str, key: str) -> None:
        await self._value("delete_library", tenant=tenant, key=key)

    async def statistics(self, tenant: str, key: str) -> dict[str, Any]:
        return await self._value("statistics", tenant=tenant, key=key)  # type: ignore[no-any-return]

    async def upsert_documents(
        self, tenant: str, key: str, docs: list[DocumentInput], bulk: bool, deadline: float
    ) -> list[str]:
        described, frames = wire.documents_out(await self.tokenizers.documents(docs))
        args = {"tenant": tenant, "key": key, "docs": described, "bulk": bulk}
        reply, _ = await self._call("upsert_documents", args, frames, deadline)
        return reply["v"]  # type: ignore[no-any-return]

    async def delete_document(self, tenant: str, key: str, doc_id: str) -> None:
        await self._value("delete_document", tenant=tenant, key=key, doc_id=doc_id)

    async def patch_document(self, tenant: str, key: str, doc_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        answer = await self._value("patch_document", tenant=tenant, key=key, doc_id=doc_id, patch=patch)
        return answer  # type: ignore[no-any-return]

    async def delete_documents(
        self, tenant: str, key: str, ids: list[str] | None, filter_json: str | None, deadline: float
    ) -> int:
        args = {"tenant": tenant, "key": key, "ids": ids, "filter_json": filter_json}
        reply, _ = await self._call("delete_documents", args, [], deadline)
        return reply["v"]  # type: ignore[no-any-return]

    async def get_document(self, tenant: str, key: str, doc_id: str) -> dict[str, Any]:
        return await self._value("get_document", tenant=tenant, key=key, doc_id=doc_id)  # type: ignore[no-any-return]

    async def list_documents(
        self, tenant: str, key: str, limit: int, after: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        docs, last = await self._value("list_documents", tenant=tenant, key=key, limit=limit, after=after)
        return docs, last

    async def search(
        self, tenant: str, key: str, queries: list[SearchInput], deadline: float
    ) -> tuple[list[HitsJSON], Timings]:
        described, frames = wire.queries_out(await self.tokenizers.queries(queries))
        args = {"tenant": tenant, "key": key, "queries": described}
        reply, hits = await self._call("search", args, frames, deadline)
        return [HitsJSON(bytes(frame)) for frame in hits], wire.timings_from(reply.get("t"))

    async def embed(self, texts: list[str], deadline: float, model: str | None = None) -> tuple[np.ndarray, Timings]:
        sent: list[bytes] = []
        described = wire.texts_out(await self.tokenizers.texts(texts, model), sent)
        reply, frames = await self._call("embed", {"texts": described, "model": model}, sent, deadline)
        rows, dimension = reply["v"]
        vectors = np.frombuffer(frames[0], dtype="<f4").reshape(rows, dimension)
        return vectors, wire.timings_from(reply.get("t"))

    async def embeddings(
        self, inputs: list[str | list[int]], model: str | None, deadline: float, dimensions: int | None = None
    ) -> tuple[np.ndarray, int, str, Timings]:
        sent: list[bytes] = []
        described = wire.texts_out(await self.tokenizers.texts(inputs, model), sent)
        args = {"inputs": described, "model": model, "dimensions": dimensions}
        reply, frames = await self._call("embeddings", args, sent, deadline)
        rows, dimension, tokens, name = reply["v"]
        vectors = np.frombuffer(frames[0], dtype="<f4").reshape(rows, dimension)
        return vectors, tokens, name, wire.timings_from(reply.get("t"))

    async def rerank(
        self, query: str, documents: list[str], model: str | None, deadline: float
    ) -> tuple[np.ndarray, str, Timings]:
        args = {"query": query, "documents": documents, "model": model}
        reply, frames = await self._call("rerank", args, None, deadline)
        return np.frombuffer(frames[0], dtype="<f4"), reply["v"], wire.timings_from(reply.get("t"))

    async def models(self) -> list[dict[str, Any]]:
        return await self._value("models")  # type: ignore[no-any-return]

    async def create_api_key(self, record: dict[str, Any]) -> None:
        await self._value("create_api_key", record=record)

    async def revoke_api_key(self, key_id: str) -> None:
        await self._value("revoke_api_key", key_id=key_id)

    async def api_keys(self, tenant: str | None) -> list[dict[str, Any]]:
        return await self._value("api_keys", tenant=tenant)  # type: ignore[no-any-return]

    async def metrics(self) -> bytes:
        _, frames = await self._call("metrics", {})
        return bytes(frames[0])


def _time_out(future: asyncio.Future[Reply], write: bool) -> None:
    if not future.done():
        error = DeadlineExceeded("the engine did not answer within the request's deadline")
        future.set_exception(_unanswered(error) if write else error)


def _unanswered(error: ArrwdbError) -> OutcomeUnknown:
    return OutcomeUnknown(
        f"{error.message} while this write was in flight: it may or may not have been applied "
        "(read it back before writing again)"
    )
