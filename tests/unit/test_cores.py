"""arrwdb/runtime/cores.py: the cores a process may use, and an engine's share of a host it shares."""

from __future__ import annotations

import os

from arrwdb.runtime.cores import take_share, usable_cores


def test_usable_cores_is_the_affinity() -> None:
    assert usable_cores() == len(os.sched_getaffinity(0)) >= 1


def test_take_share_keeps_the_process_on_its_slot() -> None:
    before = os.sched_getaffinity(0)
    allowed = sorted(before)
    try:
        assert take_share(len(allowed), 0) is None  # all of them already: nothing to do
        assert os.sched_getaffinity(0) == before
        if len(allowed) >= 2:
            chosen = take_share(1, 1)
            assert chosen == [allowed[1]] and os.sched_getaffinity(0) == {allowed[1]}
            os.sched_setaffinity(0, before)
            assert take_share(1, len(allowed)) == [allowed[0]]  # slots wrap around
            assert usable_cores() == 1
    finally:
        os.sched_setaffinity(0, before)
