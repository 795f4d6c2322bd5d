"""A serving engine's device and finishing threads run below the event loop's priority."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import pytest

from arrwdb.thread_priority import DEFAULT_STEPS


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_the_device_threads_run_below_the_event_loop(server: Any, client: Any) -> None:
    client.create_library("p", dimension=4)
    client.add_document("p", {"id": "a", "embedding": [1, 0, 0, 0]})
    assert client.search("p", embedding=[1, 0, 0, 0], k=1)["results"][0]["document_id"] == "a"
    loop_thread = server.thread.native_id  # uvicorn's event loop runs on the harness's thread
    loop_nice = os.getpriority(os.PRIO_PROCESS, loop_thread)
    scheduler = server.engine.scheduler
    compute_threads = [server.engine.worker._thread, *scheduler._finish_pool._threads]
    assert len(compute_threads) >= 2
    for thread in compute_threads:
        assert isinstance(thread, threading.Thread)
        assert os.getpriority(os.PRIO_PROCESS, thread.native_id) == min(19, loop_nice + DEFAULT_STEPS)
