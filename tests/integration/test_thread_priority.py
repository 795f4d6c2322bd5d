"""A serving engine's device and finishing threads run below the event loop's priority."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import pytest

from arrwdb.runtime import thread_priority


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux's")
def test_the_device_threads_run_below_the_event_loop(server: Any, client: Any) -> None:
    client.create_library("p", dimension=4)
    client.add_document("p", {"id": "a", "embedding": [1, 0, 0, 0]})
    assert client.search("p", embedding=[1, 0, 0, 0], k=1)[0]["document_id"] == "a"
    loop_thread = server.thread.native_id  # uvicorn's event loop runs on the harness's thread
    loop = (os.sched_getscheduler(loop_thread), os.getpriority(os.PRIO_PROCESS, loop_thread))
    assert loop[0] == os.SCHED_OTHER
    expected = {
        "idle": (os.SCHED_IDLE, loop[1]),
        "low": (loop[0], min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + thread_priority.LOW_NICE_STEPS)),
    }[thread_priority.resolve(server.settings.worker_priority)]
    # Every thread arrwdb starts is named arrwdb-...: the device worker, its pools, the writers.
    ours = {t.name: t.native_id for t in threading.enumerate() if t.name.startswith("arrwdb-")}
    assert server.engine.worker._thread.name in ours
    assert {name: (os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid)) for name, tid in ours.items()} == {
        name: expected for name in ours
    }
