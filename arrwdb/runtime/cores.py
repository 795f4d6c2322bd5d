"""The cores this process may use: its CPU affinity (a container's cpuset, ``taskset``, or the share an
engine actor took on a Ray node, ``take_share``), not the host's count."""

from __future__ import annotations

import os


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def take_share(cores: int, slot: int) -> list[int] | None:
    """Keep this process on ``cores`` of the cores it may use, the ``slot``-th such group (wrapping), and
    return them; None when it may use no more than ``cores`` already (nothing to do).  For engines that
    share a host while each is told it has ``cores`` (local multi-node Ray clusters): without it each
    would size its thread pools for every core of the host and the engines would oversubscribe them."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if cores <= 0 or cores >= len(allowed):
        return None
    chosen = [allowed[(slot * cores + i) % len(allowed)] for i in range(cores)]
    os.sched_setaffinity(0, chosen)
    return chosen
