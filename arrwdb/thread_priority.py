"""arrwdb's own threads run at a lower CPU priority (a higher nice value) than the event loop.

The event loop answers every request, refusals included, while the device worker's threads (its
OpenMP team, the forward-pass lanes, the finishing and writing threads) keep the cores busy.  At equal
priority the loop waited for a core a quarter of the time under overload on 2 cores (scheduler
statistics: 0.24-0.31 of the wall time runnable but not running), and a 429 waited with it: 429 p99
11-22 ms with the refusal written at the door.  Ten steps lower, the loop waits 0.08-0.14 of the time
and 429 p99 is 4-10 ms; 64 clients of exact searches lose nothing measurable (the compute threads
still get every cycle the loop leaves).  Linux only: there a nice value belongs to a thread, and a
thread's OpenMP team, started later, inherits it.  ``ARRWDB_WORKER_NICE`` sets the steps; 0 is off.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger("arrwdb.threads")

DEFAULT_STEPS = 10
_steps = DEFAULT_STEPS


def configure(steps: int) -> None:
    """How many nice steps below the event loop the threads started from now on run (0: none)."""
    global _steps
    _steps = max(0, min(19, steps))


def lower_this_thread() -> None:
    """Run the calling thread ``steps`` nice values below the process's main thread (which runs the
    event loop under ``serve``), at most 19, never higher than it already ran: a thread started by one
    already lowered (a pool's thread started from the device thread) is not lowered twice.  A no-op off
    Linux, where ``setpriority`` with a thread id would name a process."""
    if _steps == 0 or not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + _steps)  # the main thread's, on Linux
        if os.getpriority(os.PRIO_PROCESS, thread) < target:
            os.setpriority(os.PRIO_PROCESS, thread, target)
    except OSError as exc:  # a sandbox that forbids it: the thread keeps the loop's priority
        log.debug("could not lower the priority of thread %d: %s", thread, exc)
