"""Shared fixtures: the real model (loaded once a session) and real servers on loopback ports."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def fresh_slow_log_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets the slow-query log's full line budget: lines one test logs (its servers share
    this process) must not leave another without any, or with a ``suppressed`` count."""
    from arrwdb.server import slowlog

    monkeypatch.setattr(slowlog, "_budget", slowlog.LineBudget(slowlog.LINES_PER_SECOND))


@pytest.fixture(scope="session")
def minilm() -> Any:
    """The packaged all-MiniLM-L6-v2 on the CPU, shared by every server of the session."""
    from arrwdb.embed.minilm import MiniLMEmbedder

    return MiniLMEmbedder("cpu")


@pytest.fixture
def start_server(minilm: Any, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start servers on loopback ports (data in a temp dir unless given); all stopped at teardown."""
    from tests.harness import ServerThread

    started: list[ServerThread] = []

    def start(data_dir: Path | None = None, **settings: Any) -> ServerThread:
        server = ServerThread(data_dir or tmp_path / "data", minilm, **settings).start()
        started.append(server)
        return server

    yield start
    for server in started:
        if server.thread.is_alive():
            server.stop()


@pytest.fixture
def server(start_server: Callable[..., Any]) -> Any:
    return start_server()


@pytest.fixture
def client(server: Any) -> Iterator[Any]:
    with server.client() as c:
        yield c
