"""arrwdb's threads lower their own CPU priority below the event loop's, and nobody else's."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator

import pytest

from arrwdb.runtime import thread_priority

LINUX = sys.platform.startswith("linux")


def priority_of(thread_id: int) -> tuple[int, int]:
    """(scheduling policy, nice value) of a thread."""
    return os.sched_getscheduler(thread_id), os.getpriority(os.PRIO_PROCESS, thread_id)


def in_a_new_thread(lower: bool) -> tuple[tuple[int, int], tuple[int, int]]:
    """A new thread's priority before and after ``lower_this_thread`` (or nothing) ran in it."""
    seen: list[tuple[int, int]] = []

    def body() -> None:
        me = threading.get_native_id()
        seen.append(priority_of(me))
        if lower:
            thread_priority.lower_this_thread()
        seen.append(priority_of(me))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return seen[0], seen[1]


@pytest.fixture(autouse=True)
def restore() -> Iterator[None]:
    yield
    thread_priority.configure("auto")


def test_idle_moves_the_calling_thread_alone_to_sched_idle() -> None:
    here = priority_of(threading.get_native_id())
    thread_priority.configure("idle")
    before, after = in_a_new_thread(lower=True)
    assert before == here  # a new thread starts with its creator's priority
    assert after == ((os.SCHED_IDLE, here[1]) if LINUX else before)
    assert priority_of(threading.get_native_id()) == here  # the calling (event loop's) thread is untouched


def test_low_lowers_the_thread_ten_nice_values_below_the_main_thread() -> None:
    main = priority_of(os.getpid())
    thread_priority.configure("low")
    before, after = in_a_new_thread(lower=True)
    assert after == ((before[0], min(19, main[1] + 10)) if LINUX else before)


def test_a_thread_started_by_a_lowered_thread_is_not_lowered_twice() -> None:
    thread_priority.configure("low")
    seen: list[tuple[tuple[int, int], tuple[int, int]]] = []

    def parent() -> None:
        thread_priority.lower_this_thread()
        seen.append(in_a_new_thread(lower=True))  # a pool thread the device thread starts

    thread = threading.Thread(target=parent)
    thread.start()
    thread.join()
    main = priority_of(os.getpid())
    expected = (main[0], min(19, main[1] + 10)) if LINUX else main
    assert seen == [(expected, expected)]


def test_normal_leaves_threads_alone() -> None:
    thread_priority.configure("normal")
    before, after = in_a_new_thread(lower=True)
    assert after == before


def test_auto_is_idle_with_two_cores_and_low_with_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(thread_priority, "usable_cores", lambda: 2)
    assert thread_priority.resolve("auto") == "idle"
    monkeypatch.setattr(thread_priority, "usable_cores", lambda: 1)
    assert thread_priority.resolve("auto") == "low"
    assert thread_priority.resolve("normal") == "normal"
    with pytest.raises(ValueError):
        thread_priority.resolve("realtime")
