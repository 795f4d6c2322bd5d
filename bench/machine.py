"""What a benchmark ran on: recorded in every JSON result so that runs can be compared honestly."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from arrwdb.runtime.cpuinfo import cpu_flags, cpuinfo_field

# The CPU features that decide the model's dtype and the kernels' speed (arrwdb/runtime/device.py).
_NOTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def _noted_flags() -> list[str]:
    flags = cpu_flags()
    return [flag for flag in _NOTED_FLAGS if flag in flags]


def _cpu_model() -> str:
    return cpuinfo_field("model name") or platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "cpu": _cpu_model(),
        "cpu_family": cpuinfo_field("cpu family"),
        "cpu_flags": _noted_flags(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in ("arrwdb", "torch", "faiss-cpu", "fastapi", "uvicorn", "numpy")},
    }
