"""Start `arrwdb serve` as a separate process on a loopback port for a benchmark, and stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx


def process_rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux /proc), 0 when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        python: str | None = None,
    ) -> None:
        """``python``: the interpreter to serve with (another checkout's environment, to compare with)."""
        self.data_dir = data_dir
        self.python = python or sys.executable
        self.port = free_port()
        self.env = {**os.environ, "ARRWDB_LOG_LEVEL": "warning", **(env or {})}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 300.0) -> ServerProcess:
        command = [
            self.python,
            "-P",  # not the working directory's arrwdb/: the interpreter's own install (another checkout's)
            "-m",
            "arrwdb.cli",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"arrwdb serve exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("arrwdb serve did not become ready")

    def wait_settled(self, timeout: float = 600.0) -> None:
        """Wait until start-up work behind /ready is done: the documents' metadata loaded in the
        background while the GC freezes what it made every 0.25 s (pauses with the GIL held), then a
        last collection and freeze.  A measurement started before it would time those pauses."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError("arrwdb serve is not running")
            for line in httpx.get(f"{self.url}/metrics", timeout=30).text.splitlines():
                if line.startswith("arrwdb_gc_frozen_objects ") and float(line.split()[1]) > 0:
                    return
            time.sleep(0.2)
        raise RuntimeError("arrwdb serve never settled after start-up")

    def rss_bytes(self) -> int:
        """Resident memory of the server: its process and every child (engine, HTTP workers)."""
        return 0 if self.process is None else sum(process_rss_bytes(pid) for pid in process_tree(self.process.pid))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
