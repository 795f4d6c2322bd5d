"""A real ``arrwdb serve`` subprocess that the reliability harnesses can SIGKILL and restart."""

from __future__ import annotations

import signal
from pathlib import Path

from arrwdb.bench.serverproc import ServerProcess


class KillableServer(ServerProcess):
    """``arrwdb serve`` on a loopback port; ``start`` may be called again after ``kill`` (same port,
    same data dir), which is what a crash-and-restart looks like to the store."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, log_path: Path | None = None) -> None:
        base = {"ARRWDB_DEVICE": "cpu", "ARRWDB_LOG_LEVEL": "warning"}
        super().__init__(data_dir, env={**base, **(env or {})}, log_path=log_path)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, no buffer is flushed, nothing is checkpointed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid
