"""What the crash harness expects to find: every document's content as a function of (library, id,
version), and a ledger of the versions each document may be at.

A write answered 2xx pins the document to its new version (a delete: to "absent").  A write answered
with an error did nothing (API.md), so the document keeps its versions.  A write whose answer never
came (the server was killed mid-request) may or may not have landed: the document may be at either
version until a restart shows which, and a batch must have landed whole or not at all.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ABSENT = -1  # the "version" of a document that does not exist (never created, or deleted)

_WORDS = (
    "river stone cloud lantern orbit maple signal harbor copper meadow falcon prism ember tide glacier "
    "violet engine canyon thistle beacon quartz willow comet saddle marble anchor ribbon summit"
).split()


@dataclass(frozen=True)
class LibrarySpec:
    name: str
    index_type: str
    metric: str
    dimension: int | None  # None: the model's; the server embeds the text
    cap: int  # writers stop creating documents beyond this many live ones (bounds verification)
    weight: float  # share of the writers' operations
    batch: tuple[int, int]  # documents per batch write (low, high)

    @property
    def vectors(self) -> bool:
        return self.dimension is not None


def content(lib: LibrarySpec, doc_id: str, version: int) -> dict[str, Any]:
    """The exact body written for ``doc_id`` at ``version`` (deterministic: the verifier rebuilds it)."""
    # A 64-bit hash of the name as the seed: CRC32 is linear, so ids of one length collide at many
    # versions (two documents would get the same vector, and tie as each other's nearest neighbour).
    digest = hashlib.blake2b(f"{lib.name}/{doc_id}/{version}".encode(), digest_size=8).digest()
    rng = np.random.default_rng(int.from_bytes(digest, "little"))
    words = " ".join(rng.choice(_WORDS, size=int(rng.integers(4, 16))))
    doc: dict[str, Any] = {
        "id": doc_id,
        "title": f"{doc_id} v{version}",
        "text": f"{doc_id} version {version}: {words}",
        "metadata": {"v": version, "doc": doc_id, "tags": [str(t) for t in rng.choice(_WORDS, size=2)]},
    }
    if lib.dimension is not None:
        # float64 values: the server stores float32, and the verifier compares as float32.
        doc["embedding"] = rng.normal(size=lib.dimension).tolist()
    return doc


def expected_vector(doc: dict[str, Any]) -> np.ndarray:
    return np.asarray(doc["embedding"], dtype=np.float64).astype(np.float32)


@dataclass
class UnknownBatch:
    """A batch write whose answer never came: after the restart all of it or none of it is there."""

    library: str
    versions: dict[str, tuple[int, int]]  # doc id -> (version before, version written)


@dataclass
class Ledger:
    # library -> doc id -> the versions it may be at (one once known; two after an unanswered write)
    docs: dict[str, dict[str, set[int]]] = field(default_factory=dict)
    next_version: dict[tuple[str, str], int] = field(default_factory=dict)
    unknown_batches: list[UnknownBatch] = field(default_factory=list)
    # (library, doc id) -> the version it had when an acknowledged delete removed it
    deleted_from: dict[tuple[str, str], int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def versions(self, library: str, doc_id: str) -> set[int]:
        with self.lock:
            return set(self.docs.setdefault(library, {}).get(doc_id, {ABSENT}))

    def current(self, library: str, doc_id: str) -> int:
        """The one version a document is at (writers only touch documents whose version is known)."""
        (version,) = self.versions(library, doc_id)
        return version

    def live(self, library: str, owner_prefix: str) -> list[str]:
        with self.lock:
            return [
                doc_id
                for doc_id, versions in self.docs.setdefault(library, {}).items()
                if doc_id.startswith(owner_prefix) and versions != {ABSENT}
            ]

    def bump(self, library: str, doc_id: str) -> int:
        with self.lock:
            key = (library, doc_id)
            self.next_version[key] = self.next_version.get(key, 0) + 1
            return self.next_version[key]

    def acknowledge(self, library: str, writes: dict[str, int], previous: dict[str, int]) -> None:
        with self.lock:
            lib = self.docs.setdefault(library, {})
            for doc_id, version in writes.items():
                lib[doc_id] = {version}
                if version == ABSENT and previous[doc_id] != ABSENT:
                    self.deleted_from[(library, doc_id)] = previous[doc_id]

    def unanswered(self, library: str, writes: dict[str, int]) -> None:
        with self.lock:
            lib = self.docs.setdefault(library, {})
            before = {doc_id: next(iter(lib.get(doc_id, {ABSENT}))) for doc_id in writes}
            for doc_id, version in writes.items():
                lib[doc_id] = {before[doc_id], version}
            if len(writes) > 1:
                self.unknown_batches.append(UnknownBatch(library, {d: (before[d], v) for d, v in writes.items()}))

    def resolve(self, library: str, found: dict[str, int]) -> None:
        """After a verified restart: every document is at the version found (absent if not found)."""
        with self.lock:
            lib = self.docs.setdefault(library, {})
            for doc_id in lib:
                lib[doc_id] = {found.get(doc_id, ABSENT)}
            self.unknown_batches = [b for b in self.unknown_batches if b.library != library]
