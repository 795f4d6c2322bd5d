"""Facts about the CPU read from /proc/cpuinfo (Linux): its name, family and feature flags."""

from __future__ import annotations

import functools


def cpuinfo_field(name: str) -> str | None:
    """The value of the first ``name : value`` line of /proc/cpuinfo, or None (no such line, or no file)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``avx512_bf16``, ``amx_bf16``, ...); empty where /proc/cpuinfo is absent."""
    return frozenset((cpuinfo_field("flags") or "").split())
