"""A real ``arrwdb serve`` subprocess that the reliability harnesses can SIGKILL and restart."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

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

    def engine_pid(self) -> int:
        """The engine process: the one child of the server that loaded torch."""
        if self.process is None:
            raise RuntimeError("the server is not running")
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                try:
                    if "libtorch" in Path(f"/proc/{child}/maps").read_text():
                        return int(child)
                except OSError:
                    continue
        raise RuntimeError("no engine process found (a server with ARRWDB_WORKERS=0 runs one process)")

    def kill_engine(self) -> None:
        """SIGKILL to the engine process alone; the server's parent restarts it."""
        os.kill(self.engine_pid(), signal.SIGKILL)

    def wait_ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the server did not become ready again")

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid
