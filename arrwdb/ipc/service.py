"""The engine process: one ``Engine`` (scheduler, device worker, indexes, model, store writer) serving
the engine protocol to every HTTP worker of the host over a ZMQ ROUTER socket.

Each request runs as a task on the engine's event loop, calling ``LocalEngine``: the same code an
in-process server runs, so answers cannot differ.  The engine posts its admission state and readiness
on the board (``arrwdb.ipc.board``) for the workers to read without asking.  Requests stamped with
another engine generation are refused: they were sent to a predecessor, and their client was told so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import zmq
import zmq.asyncio

from arrwdb.config import Settings
from arrwdb.engine.api import LocalEngine
from arrwdb.engine.core import Engine
from arrwdb.errors import ArrwdbError, BadRequest, NotReady
from arrwdb.ipc import wire
from arrwdb.ipc.board import Board
from arrwdb.ipc.lifetime import die_with_parent
from arrwdb.runtime.gc_tuning import freeze_gc_when_ready
from arrwdb.runtime.ratelimit import RateLimiter

log = logging.getLogger("arrwdb.engine.core")

Reply = tuple[Any, list[bytes], Any]  # (value, frames, timings or None)

# Arguments of the operations that take and give plain values only: passed to LocalEngine by name.
_PLAIN_OPS = frozenset(
    {
        "ready",
        "create_library",
        "list_libraries",
        "get_library",
        "delete_library",
        "statistics",
        "delete_document",
        "patch_document",
        "get_document",
        "list_documents",
        "api_keys",
        "models",
        "cluster",
    }
)
_KEY_OPS = frozenset({"create_api_key", "revoke_api_key"})  # workers reload their key rings after these


class EngineService:
    def __init__(self, settings: Settings, endpoint: str, board: Board, generation: int) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self.board = board
        self.generation = generation
        self.engine = Engine(settings)
        self.api = LocalEngine(self.engine)
        self.limiter = (
            RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst) if settings.rate_limit_per_s > 0 else None
        )
        self._tasks: dict[tuple[bytes, int], asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        engine = self.engine
        await engine.start()
        engine.scheduler.on_dispatched = lambda: self.board.post_queue_full(engine.scheduler.full)
        context = zmq.asyncio.Context()
        self.socket = context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        # No high-water marks: admission bounds what is in flight, and a ROUTER drops what exceeds one.
        self.socket.setsockopt(zmq.SNDHWM, 0)
        self.socket.setsockopt(zmq.RCVHWM, 0)
        self.socket.bind(self.endpoint)
        ready = asyncio.create_task(self._post_ready())
        freezing = asyncio.create_task(freeze_gc_when_ready(engine))
        receiving = asyncio.create_task(self._receive())
        await self._stopping.wait()
        log.info("engine stopping: %d requests in flight", len(self._tasks))
        receiving.cancel()
        ready.cancel()
        freezing.cancel()
        # In-flight requests are answered (workers stop first, so none arrive now) before the engine stops.
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()), timeout=self.settings.request_timeout_ms / 1000.0)
        await engine.stop()
        self.socket.close(0)
        context.term()

    def stop(self) -> None:
        self._stopping.set()

    async def _post_ready(self) -> None:
        while not self.engine.ready:
            if self.engine.load_error is not None:
                self.board.engine_failed()
                return
            await asyncio.sleep(0.02)
        self.board.engine_ready()

    async def _receive(self) -> None:
        """Take every message waiting before the loop moves on: requests that arrived together start
        together, and their submits reach the scheduler in one pass (one batch, not a batch of the
        first and another of the rest)."""
        socket = self.socket
        while True:
            self._start(await socket.recv_multipart())
            while True:
                try:
                    message = await socket.recv_multipart(flags=zmq.NOBLOCK)  # done at once, or Again
                except zmq.Again:
                    break
                self._start(message)

    def _start(self, message: list[bytes]) -> None:
        identity, head, *frames = message
        header = wire.unpack(head)
        key = (identity, header["i"])
        if header["op"] == wire.ABORT:
            running = self._tasks.get(key)
            if running is not None:
                running.cancel()
            return
        task = asyncio.create_task(self._serve(identity, header, frames))
        self._tasks[key] = task
        task.add_done_callback(lambda _, key=key: self._tasks.pop(key, None))

    async def _serve(self, identity: bytes, header: dict[str, Any], frames: list[bytes]) -> None:
        telemetry = self.engine.telemetry
        telemetry.request_started()
        try:
            value, out_frames, timings = await self._call(header, frames)
            reply = {"i": header["i"], "v": value}
            if timings is not None:
                reply["t"] = wire.timings_fields(timings)
        except asyncio.CancelledError:
            return  # aborted: the worker counts the disconnect and answers its client itself
        except Exception as exc:
            if not isinstance(exc, ArrwdbError):
                log.exception("engine request %s failed", header.get("op"))
            reply, out_frames = {"i": header["i"], "e": wire.error_fields(exc)}, []
        finally:
            telemetry.request_ended()
        await self.socket.send_multipart([identity, wire.pack(reply), *out_frames], copy=False)

    async def _call(self, header: dict[str, Any], frames: list[bytes]) -> Reply:
        if header["g"] != self.generation:
            raise NotReady("the engine restarted: send the request again")
        rate_key = header.get("r")
        if rate_key is not None and self.limiter is not None:
            self.limiter.take(rate_key)
        op, args = header["op"], header["a"]
        if op in _PLAIN_OPS:
            return await getattr(self.api, op)(**args), [], None
        if op in _KEY_OPS:
            await getattr(self.api, op)(**args)
            self.board.keys_changed()
            return None, [], None
        handler = self._HANDLERS.get(op)
        if handler is None:
            raise BadRequest(f"unknown engine operation {op!r}")
        return await handler(self, args, frames, self._deadline(header))

    def _deadline(self, header: dict[str, Any]) -> float:
        return self.engine.deadline(header.get("ms"))

    async def _search(self, args: dict[str, Any], frames: list[bytes], deadline: float) -> Reply:
        queries = wire.queries_in(args["queries"], frames)
        results, timings = await self.api.search(args["tenant"], args["key"], queries, deadline)
        return None, [hits.data for hits in results], timings

    async def _embed(self, args: dict[str, Any], frames: list[bytes], deadline: float) -> Reply:
        vectors, timings = await self.api.embed(wire.texts_in(args["texts"], frames), deadline, args.get("model"))
        return list(vectors.shape), [vectors.astype("<f4", copy=False).tobytes()], timings

    async def _embeddings(self, args: dict[str, Any], frames: list[bytes], deadline: float) -> Reply:
        vectors, tokens, name, timings = await self.api.embeddings(
            wire.texts_in(args["inputs"], frames), args["model"], deadline, args["dimensions"]
        )
        value = [*vectors.shape, tokens, name]
        return value, [vectors.astype("<f4", copy=False).tobytes()], timings

    async def _rerank(self, args: dict[str, Any], frames: list[bytes], deadline: float) -> Reply:
        scores, name, timings = await self.api.rerank(args["query"], args["documents"], args["model"], deadline)
        return name, [scores.astype("<f4", copy=False).tobytes()], timings

    async def _upsert(self, args: dict[str, Any], frames: list[bytes], deadline: float) -> Reply:
        docs = wire.documents_in(args["docs"], frames)
        ids = await self.api.upsert_documents(args["tenant"], args["key"], docs, args["bulk"], deadline)
        return ids, [], None

    async def _delete_documents(self, args: dict[str, Any], frames: list[bytes], deadline: float) -> Reply:
        count = await self.api.delete_documents(args["tenant"], args["key"], args["ids"], args["filter_json"], deadline)
        return count, [], None

    async def _metrics(self, args: dict[str, Any], frames: list[bytes], deadline: float) -> Reply:
        return None, [await self.api.metrics()], None

    _HANDLERS: ClassVar[dict[str, Callable[..., Awaitable[Reply]]]] = {
        "search": _search,
        "embed": _embed,
        "embeddings": _embeddings,
        "rerank": _rerank,
        "upsert_documents": _upsert,
        "delete_documents": _delete_documents,
        "metrics": _metrics,
    }


def run_engine(settings: Settings, endpoint: str, board_path: Path, generation: int) -> None:
    """The engine process's main: serve until SIGTERM or SIGINT, then drain and stop."""
    die_with_parent()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from arrwdb.runtime import gc_tuning, thread_priority

    gc_tuning.tune_process()
    thread_priority.configure(settings.worker_priority)
    board = Board(board_path)
    board.engine_started(os.getpid())

    async def main() -> None:
        service = EngineService(settings, endpoint, board, generation)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, service.stop)
        started = time.monotonic()
        await service.run()
        log.info("engine stopped after %.1f s", time.monotonic() - started)

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
