"""`arrwdb.bench.cpu_use`: the cores a process used over a block, and the machine's idle cores."""

from __future__ import annotations

import os
import sys
import time

import pytest

from arrwdb.bench.cpu_use import CpuUse, machine_idle_seconds, process_cpu_seconds

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")


def test_a_busy_block_shows_about_one_core_of_this_process():
    with CpuUse([os.getpid()]) as use:
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            pass
    figures = use.figures()
    assert 0.5 < figures["server_cores"] <= 1.2  # one thread spinning (clock ticks are 10 ms)
    assert figures["idle_cores"] is not None and 0.0 <= figures["idle_cores"] <= os.cpu_count()


def test_a_sleeping_block_uses_almost_nothing():
    with CpuUse([os.getpid()]) as use:
        time.sleep(0.3)
    assert use.figures()["server_cores"] < 0.3


def test_readings_of_a_missing_process_count_nothing_and_figures_need_the_block_ended():
    assert process_cpu_seconds(2**22 + 12345) == 0.0
    assert machine_idle_seconds() is not None
    use = CpuUse([os.getpid()])
    with pytest.raises(RuntimeError, match="after the with block"):
        use.figures()
