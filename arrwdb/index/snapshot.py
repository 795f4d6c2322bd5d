"""Crash-safe snapshot files beside the store.

A snapshot is a few data files plus a JSON meta file holding each file's size and CRC32.  Writes go
to temp files that are fsync'd, renamed into place (the meta file last: it is what makes a snapshot
count), and the directory is fsync'd.  A crash at any moment leaves the old complete snapshot or the
new complete one; a truncated or corrupt file fails its check and is never served.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

_CHUNK = 64 << 20  # bytes read (and CRC-checked) at a time


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


Data = bytes | memoryview | Iterable[memoryview]  # a part whole, or chunk by chunk


def write(base: Path, parts: Mapping[str, Data], meta: dict[str, Any]) -> None:
    """Write the parts (each one buffer, or an iterable of chunks written as they come: a part need
    not fit in memory twice), then the meta with their sizes and CRCs, then rename them all."""
    base.parent.mkdir(parents=True, exist_ok=True)
    checks = {}
    for suffix, data in parts.items():
        size, crc = 0, 0
        with open(part(base, suffix + ".tmp"), "wb") as handle:
            for chunk in [data] if isinstance(data, bytes | memoryview) else data:
                view = memoryview(chunk).cast("B")
                handle.write(view)
                size, crc = size + len(view), zlib.crc32(view, crc)
            handle.flush()
            os.fsync(handle.fileno())
        checks[suffix] = {"bytes": size, "crc32": crc}
    with open(part(base, ".json.tmp"), "wb") as handle:
        handle.write(json.dumps({**meta, "parts": checks}).encode())
        handle.flush()
        os.fsync(handle.fileno())
    for suffix in [*parts, ".json"]:  # the meta last: it is what makes the snapshot count
        os.replace(part(base, suffix + ".tmp"), part(base, suffix))
    _fsync_dir(base.parent)


def verify(base: Path, expected: Mapping[str, Any]) -> dict[str, Any]:
    """The meta of a complete snapshot whose every part has its recorded size and CRC, made for the
    ``expected`` meta values.  Nothing is kept in memory; the files' pages stay in the page cache for
    the reader that follows."""
    meta = read_meta(base, expected)
    for suffix, check in meta["parts"].items():
        try:
            with open(part(base, suffix), "rb", buffering=0) as handle:
                size = os.fstat(handle.fileno()).st_size
                crc = _crc_of_file(handle, size) if size == check["bytes"] else None
        except OSError as exc:
            raise SnapshotError(f"unreadable snapshot {base.name}{suffix}: {exc}") from exc
        if crc != check["crc32"]:
            raise SnapshotError(f"snapshot file {base.name}{suffix} is truncated or corrupt")
    return meta


def read_into(base: Path, suffix: str, check: Mapping[str, int], out: memoryview) -> None:
    """Read one part into ``out`` (exactly its recorded size), checking its CRC as it arrives, chunk by
    chunk: no Python bytes object and no second read of the file."""
    out = out.cast("B")
    if len(out) != check["bytes"]:
        raise SnapshotError(f"snapshot file {base.name}{suffix} does not fit its buffer")
    done = 0
    # zlib releases the GIL: chunk i is checked on a helper thread while chunk i+1 is read, so a cold
    # start pays for the disk, not for the disk plus the CRC.
    with ThreadPoolExecutor(1, thread_name_prefix="arrwdb-crc") as pool:
        crc: Future[int] = pool.submit(zlib.crc32, b"")
        try:
            with open(part(base, suffix), "rb", buffering=0) as handle:
                if os.fstat(handle.fileno()).st_size != check["bytes"]:
                    raise SnapshotError(f"snapshot file {base.name}{suffix} is truncated or corrupt")
                while done < len(out):
                    got = handle.readinto(out[done : done + _CHUNK])
                    if not got:
                        break
                    crc = pool.submit(zlib.crc32, out[done : done + got], crc.result())
                    done += got
        except OSError as exc:
            raise SnapshotError(f"unreadable snapshot {base.name}{suffix}: {exc}") from exc
        final = crc.result()
    if done != len(out) or final != check["crc32"]:
        raise SnapshotError(f"snapshot file {base.name}{suffix} is truncated or corrupt")


def read_meta(base: Path, expected: Mapping[str, Any]) -> dict[str, Any]:
    try:
        meta = json.loads(part(base, ".json").read_bytes())
        parts = meta["parts"]
        if not isinstance(parts, dict):
            raise TypeError("parts is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"unreadable snapshot {base.name}: {exc}") from exc
    for key, value in expected.items():
        if meta.get(key) != value:
            raise SnapshotError(f"snapshot {base.name} was made for {key}={meta.get(key)!r}, not {value!r}")
    return meta


def _crc_of_file(handle: BinaryIO, size: int) -> int:
    """Sequential reads through one reused buffer: the kernel's read-ahead streams a cold file several
    times faster than page faults on a mapping would."""
    buffer = memoryview(bytearray(min(size, _CHUNK)))
    crc = zlib.crc32(b"")
    while True:
        got = handle.readinto(buffer)
        if not got:
            return crc
        crc = zlib.crc32(buffer[:got], crc)


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


def save_vectors(
    base: Path, rows: np.ndarray, vectors: np.ndarray, meta: dict[str, Any], alive: np.ndarray | None = None
) -> int:
    """Save the rows of ``vectors`` (those whose ``alive`` flag is set, when given) with their ids,
    copying at most one chunk at a time (a million 384-d rows are 1.5 GB); returns how many."""
    ids = np.ascontiguousarray(rows if alive is None else rows[alive], dtype=np.int64)
    step = max(1, _CHUNK // max(1, vectors.shape[1] * 4))

    def chunks() -> Iterator[memoryview]:
        for start in range(0, len(vectors), step):
            block = vectors[start : start + step]
            keep = None if alive is None else alive[start : start + step]
            yield memoryview(np.ascontiguousarray(block if keep is None or keep.all() else block[keep], np.float32))

    write(base, {".ids": memoryview(ids), ".f32": chunks()}, {**meta, "count": len(ids)})
    return len(ids)


def load_vectors(
    base: Path, expected: Mapping[str, Any], dimension: int, spare_fraction: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(row ids, a writable float32 buffer [rows * (1 + spare_fraction), dimension]) whose first rows
    hold the saved vectors, read straight into place: the exact index can adopt the buffer as it is."""
    meta = read_meta(base, expected)
    checks = meta["parts"]
    try:
        count = int(meta["count"])
        if checks[".ids"]["bytes"] != count * 8 or checks[".f32"]["bytes"] != count * dimension * 4:
            raise SnapshotError(f"snapshot {base.name} has inconsistent sizes")
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"snapshot {base.name} has an unreadable meta: {exc}") from exc
    rows = np.empty(count, dtype=np.int64)
    read_into(base, ".ids", checks[".ids"], memoryview(rows))
    vectors = np.empty((count + math.ceil(count * spare_fraction), dimension), dtype=np.float32)
    read_into(base, ".f32", checks[".f32"], memoryview(vectors[:count].reshape(-1)))
    return rows, vectors
