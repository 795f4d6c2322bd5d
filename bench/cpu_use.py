"""Where a load's CPU went: the cores a server's processes used and the machine's idle cores over an
interval, from Linux's /proc (None elsewhere).  A closed loop that leaves cores idle is bound by
something serial (a thread, a lock such as the GIL), not by the CPU."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far, 0 when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def machine_idle_seconds() -> float | None:
    """Idle + iowait CPU seconds of the whole machine so far (all cores), None without /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    return (int(fields[3]) + int(fields[4])) / _TICKS_PER_S


class CpuUse:
    """``with CpuUse(pids) as use: ...``; then ``use.figures()``: the cores ``pids`` used on average
    over the block (``server_cores``) and the machine's idle cores (``idle_cores``)."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self._start: tuple[float, float, float | None] | None = None
        self._end: tuple[float, float, float | None] | None = None

    def _reading(self) -> tuple[float, float, float | None]:
        return time.monotonic(), sum(process_cpu_seconds(pid) for pid in self.pids), machine_idle_seconds()

    def __enter__(self) -> CpuUse:
        self._start = self._reading()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._end = self._reading()

    def figures(self) -> dict[str, float | None]:
        if self._start is None or self._end is None:
            raise RuntimeError("CpuUse.figures() is read after the with block")
        (t0, cpu0, idle0), (t1, cpu1, idle1) = self._start, self._end
        elapsed = max(t1 - t0, 1e-9)
        idle = None if idle0 is None or idle1 is None else round((idle1 - idle0) / elapsed, 3)
        return {"server_cores": round((cpu1 - cpu0) / elapsed, 3), "idle_cores": idle}
