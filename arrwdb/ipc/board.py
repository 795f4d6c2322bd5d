"""The board: a page of shared memory where the engine posts what HTTP workers must know at once,
without asking it (a round trip per request would cost the very thing the split saves).

- ``generation``: which start of the engine is serving; the parent raises it before each restart.  A
  worker stamps its requests with the generation it saw, and the engine drops any of another one, so
  a request sent to a dead engine never runs on its successor after its client was told 503.
- ``state``: starting, ready, failed (its start-up raised: the log says why), or down (set by the
  parent the moment the engine process ends).
- ``queue_full``: the engine's admission (``Scheduler.full``), posted after every dispatch pass:
  workers answer 429 while it is set, at the door, before reading a body.
- ``keys``: raised after every minted or revoked key, so every worker reloads its key ring before it
  checks the next request's key.

Each field is one aligned 8-byte word: a write is seen whole or not at all.  The page is a file under
the run directory, mapped by every process of the server.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

STARTING, READY, DOWN, FAILED = 0, 1, 2, 3
_FIELDS = ("generation", "state", "queue_full", "keys", "engine_pid")
_WORD = struct.Struct("<q")
_SIZE = mmap.PAGESIZE


class Board:
    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = path
        if create:
            with open(path, "wb") as file:
                file.write(b"\0" * _SIZE)
        fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)

    def _get(self, field: str) -> int:
        return int(_WORD.unpack_from(self._map, 8 * _FIELDS.index(field))[0])

    def _set(self, field: str, value: int) -> None:
        _WORD.pack_into(self._map, 8 * _FIELDS.index(field), value)

    @property
    def generation(self) -> int:
        return self._get("generation")

    @property
    def state(self) -> int:
        return self._get("state")

    @property
    def queue_full(self) -> bool:
        return bool(_WORD.unpack_from(self._map, 16)[0])

    @property
    def keys(self) -> int:
        return self._get("keys")

    @property
    def engine_pid(self) -> int:
        return self._get("engine_pid")

    # -- written by the parent ------------------------------------------------------------------------

    def engine_starting(self, generation: int) -> None:
        self._set("state", STARTING)
        self._set("queue_full", 0)
        self._set("generation", generation)

    def engine_down(self) -> None:
        self._set("state", DOWN)

    # -- written by the engine --------------------------------------------------------------------

    def engine_started(self, pid: int) -> None:
        self._set("engine_pid", pid)

    def engine_ready(self) -> None:
        self._set("state", READY)

    def engine_failed(self) -> None:
        self._set("state", FAILED)

    def post_queue_full(self, full: bool) -> None:
        _WORD.pack_into(self._map, 16, int(full))

    def keys_changed(self) -> None:
        self._set("keys", self.keys + 1)  # one engine process writes it

    def close(self) -> None:
        self._map.close()
