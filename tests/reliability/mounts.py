"""Small real filesystems for storage-fault tests: a size-limited tmpfs (a disk that fills up) and an
ext4 image on a loop device that can be made to fail read-only the way a real disk does.

Both need root and mount(2), which the project's machines and CI have; without them the tests fail
with this explanation rather than pretending (a SQLite page limit would not be a full disk).
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MIB = 1024 * 1024


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({result.stderr.strip()}): the storage-fault tests need root and "
            "mount(2) to make a small real filesystem"
        )


def _unmount(mountpoint: Path) -> None:
    # Lazy: a file the test still holds open must not leave the mount (and the test) stuck.
    subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=60)


@contextmanager
def tmpfs(mountpoint: Path, size_mib: int) -> Iterator[Path]:
    """A tmpfs of ``size_mib``: writes past it fail with ENOSPC, like a full disk."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(mountpoint))
    try:
        yield mountpoint
    finally:
        _unmount(mountpoint)


@contextmanager
def ext4_image(image: Path, mountpoint: Path, size_mib: int) -> Iterator[Path]:
    """An ext4 filesystem in a file, mounted through a loop device with ``errors=remount-ro``."""
    with open(image, "wb") as handle:
        handle.truncate(size_mib * MIB)
    _run("mkfs.ext4", "-q", "-F", str(image))
    mountpoint.mkdir(parents=True, exist_ok=True)
    mount_ext4(image, mountpoint)
    try:
        yield mountpoint
    finally:
        _unmount(mountpoint)


def mount_ext4(image: Path, mountpoint: Path) -> None:
    _run("mount", "-o", "loop,errors=remount-ro", str(image), str(mountpoint))


def unmount(mountpoint: Path) -> None:
    _run("umount", str(mountpoint))


def fail_read_only(mountpoint: Path) -> None:
    """Abort the ext4 journal: with errors=remount-ro the kernel turns the mounted filesystem
    read-only at once, open files included (what a failing disk does); reads keep working."""
    _run("mount", "-o", "remount,abort", str(mountpoint))


def fill(directory: Path, name: str = "filler") -> Path:
    """Write zeros into ``directory`` until the filesystem says ENOSPC; returns the filler file."""
    path = directory / name
    chunk = b"\0" * MIB
    with open(path, "wb", buffering=0) as handle:
        size = len(chunk)
        while size:
            try:
                handle.write(chunk[:size])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size //= 2  # the last free pages, down to one byte
        os.fsync(handle.fileno())
    return path
