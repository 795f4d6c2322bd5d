"""The frontend's link to each engine actor: calls with a deadline, and no waiting on a dead engine.

A call to an engine that died (or is being restarted by Ray) fails at once with 503 and
``Retry-After`` (``ShardUnavailable``), or, for a write that was already sent, ``OutcomeUnknown``: it
may have committed before the engine died.  The link then marks the engine down and probes it in the
background until it answers again; calls meanwhile fail fast instead of queuing behind Ray's restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from arrwdb.errors import DeadlineExceeded, OutcomeUnknown, ShardUnavailable, WorkerFailure
from arrwdb.ipc import wire

log = logging.getLogger("arrwdb.cluster")

PROBE_EVERY_S = 0.25
PROBE_TIMEOUT_S = 2.0
NO_DEADLINE_S = 60.0  # calls without a deadline (reads, library changes) wait at most this long
REPLY_GRACE_S = 1.0  # past a request's deadline, how long its reply may take to arrive


def _ray_failure(exc: BaseException) -> bool:
    from ray.exceptions import RayActorError

    return isinstance(exc, RayActorError)


class EngineLink:
    def __init__(self, name: str, handle: Any) -> None:
        self.name = name
        self.handle = handle
        self.up = True
        self.down_since = 0.0
        self._probe: asyncio.Task[None] | None = None

    async def ask(self, method: str, *args: Any, write: bool = False, deadline: float | None = None) -> Any:
        """``method`` of the actor with ``args``; its value, or its typed error raised here."""
        if not self.up:
            raise ShardUnavailable(f"engine {self.name} is restarting; try again shortly")
        now = time.monotonic()
        wait_s = NO_DEADLINE_S if deadline is None else max(0.0, deadline - now) + REPLY_GRACE_S
        try:
            status, value = await asyncio.wait_for(getattr(self.handle, method).remote(*args), wait_s)
        except TimeoutError:
            if write:
                raise OutcomeUnknown(f"engine {self.name} did not answer a write in time: read back first") from None
            raise DeadlineExceeded(f"engine {self.name} did not answer in time") from None
        except Exception as exc:
            if not _ray_failure(exc):
                raise WorkerFailure(f"engine {self.name} failed: {type(exc).__name__}") from exc
            self.mark_down()
            if write:
                raise OutcomeUnknown(
                    f"engine {self.name} ended during a write, which may or may not have been applied: read back first"
                ) from None
            raise ShardUnavailable(f"engine {self.name} is restarting; try again shortly") from None
        if status == "err":
            raise wire.error_from(value)
        return value

    def mark_down(self) -> None:
        if self.up:
            log.warning("cluster: engine %s is down; probing it until it answers", self.name)
            self.up = False
            self.down_since = time.monotonic()
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._until_up())

    async def _until_up(self) -> None:
        while not self.up:
            await asyncio.sleep(PROBE_EVERY_S)
            try:
                status, _ = await asyncio.wait_for(self.handle.call.remote("ready", {}), PROBE_TIMEOUT_S)
            except Exception:  # still restarting (Ray errors, timeouts)
                continue
            if status == "ok":
                self.up = True
                log.warning("cluster: engine %s is back after %.1f s", self.name, time.monotonic() - self.down_since)

    def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
