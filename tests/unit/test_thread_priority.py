"""arrwdb's threads lower their own CPU priority below the event loop's, and nobody else's."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator

import pytest

from arrwdb import thread_priority


def nice_of(thread_id: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, thread_id)


def niceness_in_a_thread(lower: bool) -> tuple[int, int]:
    """(the new thread's nice before, after) ``lower_this_thread`` (or nothing) ran in it."""
    seen: list[int] = []

    def body() -> None:
        me = threading.get_native_id()
        seen.append(nice_of(me))
        if lower:
            thread_priority.lower_this_thread()
        seen.append(nice_of(me))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return seen[0], seen[1]


@pytest.fixture
def steps() -> Iterator[None]:
    yield
    thread_priority.configure(thread_priority.DEFAULT_STEPS)


def test_a_thread_lowers_its_own_priority_only(steps: None) -> None:
    here = nice_of(threading.get_native_id())
    thread_priority.configure(5)
    before, after = niceness_in_a_thread(lower=True)
    assert before == here  # a new thread starts at its creator's nice value
    expected = min(19, before + 5) if sys.platform.startswith("linux") else before
    assert after == expected
    assert nice_of(threading.get_native_id()) == here  # the calling (event loop's) thread is untouched


def test_zero_steps_leave_threads_alone(steps: None) -> None:
    thread_priority.configure(0)
    before, after = niceness_in_a_thread(lower=True)
    assert after == before


def test_steps_are_bounded_by_the_lowest_priority(steps: None) -> None:
    thread_priority.configure(50)
    before, after = niceness_in_a_thread(lower=True)
    assert after == (19 if sys.platform.startswith("linux") else before)


def test_a_thread_started_by_a_lowered_thread_is_not_lowered_twice(steps: None) -> None:
    thread_priority.configure(4)
    seen: list[tuple[int, int]] = []

    def parent() -> None:
        thread_priority.lower_this_thread()
        seen.append(niceness_in_a_thread(lower=True))  # a pool thread the device thread starts

    thread = threading.Thread(target=parent)
    thread.start()
    thread.join()
    main = nice_of(os.getpid())
    expected = min(19, main + 4) if sys.platform.startswith("linux") else main
    assert seen == [(expected, expected)]
