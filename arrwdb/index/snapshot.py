"""Crash-safe snapshot files beside the store.

A snapshot is a few data files plus a JSON meta file holding each file's size and CRC32.  Writes go
to temp files that are fsync'd, renamed into place (the meta file last: it is what makes a snapshot
count), and the directory is fsync'd.  A crash at any moment leaves the old complete snapshot or the
new complete one; a truncated or corrupt file fails its check and is never served.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


class SnapshotError(Exception):
    """A snapshot that is missing, truncated, corrupt or made for other settings."""


def part(base: Path, suffix: str) -> Path:
    return Path(f"{base}{suffix}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(base: Path, parts: Mapping[str, bytes | memoryview], meta: dict[str, Any]) -> None:
    base.parent.mkdir(parents=True, exist_ok=True)
    checks = {
        suffix: {"bytes": len(memoryview(data).cast("B")), "crc32": zlib.crc32(data)} for suffix, data in parts.items()
    }
    files = {**parts, ".json": json.dumps({**meta, "parts": checks}).encode()}
    for suffix, data in files.items():
        with open(part(base, suffix + ".tmp"), "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    for suffix in files:  # ".json" was added last: renamed last
        os.replace(part(base, suffix + ".tmp"), part(base, suffix))
    _fsync_dir(base.parent)


def read(base: Path, expected: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The meta and every part, verified (sizes, CRCs, and the ``expected`` meta values)."""
    try:
        meta = json.loads(part(base, ".json").read_bytes())
        parts = {suffix: part(base, suffix).read_bytes() for suffix in meta["parts"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"unreadable snapshot {base.name}: {exc}") from exc
    for key, value in expected.items():
        if meta.get(key) != value:
            raise SnapshotError(f"snapshot {base.name} was made for {key}={meta.get(key)!r}, not {value!r}")
    for suffix, check in meta["parts"].items():
        data = parts[suffix]
        if len(data) != check["bytes"] or zlib.crc32(data) != check["crc32"]:
            raise SnapshotError(f"snapshot file {base.name}{suffix} is truncated or corrupt")
    return meta, parts


def exists(base: Path) -> bool:
    return part(base, ".json").exists()


def remove(base: Path) -> None:
    meta_file = part(base, ".json")
    try:
        suffixes = list(json.loads(meta_file.read_bytes()).get("parts", {}))
    except (OSError, ValueError, AttributeError):
        suffixes = []
    meta_file.unlink(missing_ok=True)  # first: without it the rest no longer counts
    for suffix in suffixes:
        part(base, suffix).unlink(missing_ok=True)


# -- the exact vectors of a library (for a fast cold start) ------------------------------------------


def save_vectors(base: Path, rows: np.ndarray, vectors: np.ndarray, meta: dict[str, Any]) -> None:
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    write(base, {".ids": memoryview(rows), ".f32": memoryview(vectors)}, {**meta, "count": len(rows)})


def load_vectors(base: Path, expected: Mapping[str, Any], dimension: int) -> tuple[np.ndarray, np.ndarray]:
    meta, parts = read(base, expected)
    rows = np.frombuffer(parts[".ids"], dtype=np.int64)
    vectors = np.frombuffer(parts[".f32"], dtype=np.float32)
    if len(rows) != meta.get("count") or vectors.size != len(rows) * dimension:
        raise SnapshotError(f"snapshot {base.name} has inconsistent sizes")
    return rows, vectors.reshape(len(rows), dimension)
