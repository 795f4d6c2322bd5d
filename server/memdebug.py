"""Opt-in memory debugging: ``ARRWDB_TRACEMALLOC=N`` (N > 0 frames) starts tracemalloc in the server
and adds ``POST /debug/memory/snapshot``.

tracemalloc must run inside the server process to see its allocations, and it slows every
allocation down, so it is off by default and the route does not exist unless it is on.  Each call
takes a snapshot and answers with the process RSS, the traced totals, the largest allocation sites,
and the top *growth* since the previous call's snapshot: call it once before a load run and once
after (``loadtest/memreport.py`` does exactly that).  It needs an API key when keys are configured.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from starlette.responses import Response

from arrwdb.server.auth import tenant
from arrwdb.server.responses import JSON

router = APIRouter(tags=["debug"])

# Allocations of tracemalloc itself and of the import machinery are noise in a growth report.
_FILTERS = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _stat(stat: tracemalloc.Statistic | tracemalloc.StatisticDiff) -> dict[str, Any]:
    frame = stat.traceback[0]
    out: dict[str, Any] = {"where": f"{frame.filename}:{frame.lineno}", "size": stat.size, "count": stat.count}
    if isinstance(stat, tracemalloc.StatisticDiff):
        out["size_diff"] = stat.size_diff
        out["count_diff"] = stat.count_diff
    return out


class _Snapshots:
    def __init__(self) -> None:
        self.previous: tracemalloc.Snapshot | None = None
        self.taken = 0
        self.lock = asyncio.Lock()  # two overlapping calls would compare against the wrong baseline

    def take(self, limit: int) -> dict[str, Any]:
        snapshot = tracemalloc.take_snapshot().filter_traces(_FILTERS)
        current, peak = tracemalloc.get_traced_memory()
        body: dict[str, Any] = {
            "snapshot": self.taken,
            "rss_bytes": rss_bytes(),
            "traced_bytes": current,
            "traced_peak_bytes": peak,
            "top": [_stat(s) for s in snapshot.statistics("lineno")[:limit]],
            "growth": None,
        }
        if self.previous is not None:
            diff = snapshot.compare_to(self.previous, "lineno")
            body["growth"] = [_stat(s) for s in diff[:limit]]
        self.previous = snapshot
        self.taken += 1
        return body


@router.post("/debug/memory/snapshot")
async def memory_snapshot(
    request: Request, limit: int = Query(25, ge=1, le=500), _tenant: str = Depends(tenant)
) -> Response:
    snapshots: _Snapshots = request.app.state.memory_snapshots
    async with snapshots.lock:
        # Taking a snapshot of a large heap takes a while: keep it off the event loop.
        body = await asyncio.to_thread(snapshots.take, limit)
    return JSON(body)


def install_memory_debug(app: FastAPI, frames: int) -> None:
    """Start tracing with ``frames`` frames per allocation and add the snapshot route."""
    if not tracemalloc.is_tracing():
        tracemalloc.start(frames)
    app.state.memory_snapshots = _Snapshots()
    app.include_router(router)
