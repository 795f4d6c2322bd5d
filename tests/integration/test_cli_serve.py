"""`arrwdb serve` and `arrwdb ingest` as a user runs them: real processes, defaults from the environment."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arrwdb.client.client import Client

ARRWDB = [sys.executable, "-m", "arrwdb.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path):
    port = free_port()
    env = {**os.environ, "ARRWDB_PORT": str(port)}
    # No --data-dir: the default ./data under the working directory.
    process = subprocess.Popen(
        [*ARRWDB, "serve"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    client = Client(f"http://127.0.0.1:{port}")
    try:
        client.wait_until_ready(timeout=120)
        yield client, tmp_path, port
    finally:
        client.close()
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output


def test_serve_on_defaults_and_ingest(served):
    client, cwd, port = served
    assert (cwd / "data" / "arrwdb.sqlite3").exists()
    client.create_library("books")
    path = Path(cwd / "docs.jsonl")
    lines = [json.dumps({"id": f"b{i}", "text": f"Chapter {i} of a long story about ships."}) for i in range(30)]
    path.write_text("\n".join(lines) + "\n\n")
    started = time.monotonic()
    result = subprocess.run(
        [*ARRWDB, "ingest", str(path), "--library", "books", "--url", f"http://127.0.0.1:{port}", "--batch", "8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 120
    assert client.get_library("books")["document_count"] == 30
    assert client.search("books", query="Chapter 12", k=1)[0]["document_id"].startswith("b")


def test_serve_refuses_public_host_without_keys(tmp_path):
    result = subprocess.run(
        [*ARRWDB, "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ARRWDB_API_KEYS": ""},
    )
    assert result.returncode != 0
    assert "API keys" in result.stderr
