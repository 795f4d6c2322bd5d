"""A real arrwdb server under uvicorn on a loopback port, in a thread of the test process.

Running it in-process lets every server of a test session share one loaded MiniLM model (loading
costs seconds); everything else is real: uvicorn, HTTP, the device worker, SQLite in a temp dir.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from arrwdb.client.client import Client
from arrwdb.config import Settings
from arrwdb.embed.protocol import Embedder
from arrwdb.server.app import create_app, uvicorn_options


class ServerThread:
    def __init__(self, data_dir: Path, embedder: Embedder, **settings: Any) -> None:
        self.settings = Settings(data_dir=data_dir, host="127.0.0.1", port=0, device="cpu", **settings)
        self.app = create_app(self.settings, embedder_factory=lambda device: embedder)
        # The production HTTP protocol (header deadline, refusals written at the door) as ``serve``
        # runs it, without its process-wide settings (log config, GIL and GC tuning).
        protocol = uvicorn_options(self.settings, self.app.state.admission_door)["http"]
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=0, log_level="warning", access_log=False, http=protocol
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def engine(self) -> Any:
        return self.app.state.engine

    def start(self, timeout: float = 60.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        with self.client() as client:
            client.wait_until_ready(timeout=timeout)
        return self

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, api_key: str | None = None) -> Client:
        return Client(self.url, api_key=api_key, timeout=60.0)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        if self.thread.is_alive():
            raise RuntimeError("the test server did not stop")
