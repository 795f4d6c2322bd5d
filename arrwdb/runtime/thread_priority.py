"""arrwdb's own threads run at a lower CPU priority than the event loop.

The event loop answers every request, refusals included, while the device worker's threads (its
OpenMP team, the forward-pass lanes, the finishing and writing threads) keep the cores busy.  At equal
priority the loop waited for a core a quarter of the time under overload on 2 cores (scheduler
statistics: 0.24-0.31 of the wall time runnable but not running), and a 429 waited with it.  Linux
only: there a scheduling policy and a nice value belong to a thread, and a thread's OpenMP team,
started later, inherits them.  ``ARRWDB_WORKER_PRIORITY`` chooses:

- ``idle``: the ``SCHED_IDLE`` policy: a thread of the loop's that wakes takes the core at once.  Under
  twice the saturating load on 2 cores the loop waited 0.02 of the time and 429 p99 was 2.6-5.0 ms;
  throughput at 64 clients unchanged (exact search, text search and inserts, alternated in one server).
  Such threads get a core only when nothing else wants it, so not on a single core.
- ``low``: 10 nice values below the process's main thread: the loop waited 0.08-0.11 of the time, 429
  p99 4.3-10 ms.
- ``normal``: unchanged.
- ``auto`` (the default): ``idle`` with two cores or more, ``low`` on one.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from arrwdb.runtime.cores import usable_cores
from arrwdb.runtime.tuning import LOW_NICE_STEPS

log = logging.getLogger("arrwdb.threads")

PRIORITIES = ("auto", "idle", "low", "normal")


def resolve(priority: str) -> str:
    """What ``auto`` means on this machine; the other choices stand."""
    if priority not in PRIORITIES:
        raise ValueError(f"the worker priority must be one of {PRIORITIES}, not {priority!r}")
    if priority == "auto":
        return "idle" if usable_cores() >= 2 else "low"
    return priority


def configure(priority: str) -> None:
    """The priority of the threads that call ``lower_this_thread`` from now on."""
    global _mode
    _mode = resolve(priority)


_mode = resolve("auto")  # until ``configure`` (create_app calls it with the setting)


def lower_this_thread() -> None:
    """Run the calling thread below the event loop, as configured; never raises its priority.  A
    no-op off Linux, where a thread's id would name a process."""
    if _mode == "normal" or not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        if _mode == "idle":
            os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
            return
        target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + LOW_NICE_STEPS)  # the main thread's
        # Not lowered twice: a pool's thread started from the device thread already inherits its value.
        if os.getpriority(os.PRIO_PROCESS, thread) < target:
            os.setpriority(os.PRIO_PROCESS, thread, target)
    except OSError as exc:  # a sandbox that forbids it: the thread keeps the loop's priority
        log.debug("could not lower the priority of thread %d: %s", thread, exc)
