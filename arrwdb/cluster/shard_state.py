"""Who holds each shard of a library and in which role: pure functions on catalog entries.

A shard has one or more copies on different engines (``copies[s]``).  One is its primary
(``placement[s]``): it takes the shard's writes and ships them to the others, its replicas.  The
copies that hold every acknowledged write are in sync (``in_sync[s]``, the primary always among them):
a write is acknowledged once all of them have it durable, so any of them can answer a read, and one
of them is promoted when the primary is lost.  ``epochs[s]`` counts the shard's primaries: it grows
at each promotion, and every role change names the epoch it expects, so a former primary that comes
back cannot undo what its successor decided.

Changes (``change``): ``drop_in_sync`` / ``add_in_sync`` (by the primary, about one replica),
``promote`` (a frontend, once the primary has been gone long enough), ``add_copy`` / ``remove_copy``
(an operator moving a replica).  Each either applies to the entry as the caller saw it or raises
``Conflict`` and changes nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from arrwdb.errors import Conflict, InvalidInput

Entry = dict[str, Any]


@dataclass
class ShardCopies:
    """One shard's copies as the catalog says."""

    tenant: str
    key: str  # the shard library's name in every copy's store
    library_id: str  # the library's id in the catalog
    shard: int
    epoch: int
    primary: str
    copies: list[str]
    in_sync: list[str]
    settings: dict[str, Any] = field(default_factory=dict)


def shard_copies(entry: Entry, shard: int) -> ShardCopies:
    entry = with_copies(entry)
    return ShardCopies(
        tenant=entry["tenant"],
        key=f"{entry['id']}.s{shard}",
        library_id=entry["id"],
        shard=shard,
        epoch=entry["epochs"][shard],
        primary=entry["placement"][shard],
        copies=list(entry["copies"][shard]),
        in_sync=list(entry["in_sync"][shard]),
        settings=dict(entry.get("settings") or {}),
    )


def copies_placement(start: int, shards: int, replicas: int, engines: Sequence[str]) -> list[list[str]]:
    """The engines of each shard's copies, primary first: consecutive engines from ``start + shard``,
    so that a shard's copies are on ``replicas`` different engines and primaries spread out."""
    if replicas > len(engines):
        raise InvalidInput(
            f"replicas must be at most {len(engines)}: a shard's copies need different engines and the cluster "
            f"has {len(engines)}",
            param="replicas",
        )
    return [[engines[(start + s + r) % len(engines)] for r in range(replicas)] for s in range(shards)]


def with_copies(entry: Entry) -> Entry:
    """``entry`` with its copy fields (an entry of a library made with one copy per shard may lack them)."""
    shards = entry["shards"]
    if "copies" not in entry:
        entry["copies"] = [[engine] for engine in entry["placement"]]
    entry.setdefault("in_sync", [list(copies) for copies in entry["copies"]])
    entry.setdefault("epochs", [1] * shards)
    return entry


def copy_count(entry: Entry) -> int:
    return max(len(copies) for copies in with_copies(entry)["copies"])


def replicated(entry: Entry) -> bool:
    return copy_count(entry) > 1


def role_of(entry: Entry, shard: int, engine: str) -> str | None:
    """``primary``, ``replica`` or None (not a copy of this shard)."""
    entry = with_copies(entry)
    if entry["placement"][shard] == engine:
        return "primary"
    return "replica" if engine in entry["copies"][shard] else None


def readers(entry: Entry, shard: int) -> list[str]:
    """The copies that may answer a read of ``shard``, primary first."""
    entry = with_copies(entry)
    primary = entry["placement"][shard]
    return [primary] + [engine for engine in entry["in_sync"][shard] if engine != primary]


def change(entry: Entry, shard: int, op: str, epoch: int, engine: str, by: str | None = None) -> Entry:
    """A copy of ``entry`` with ``op`` applied to ``shard``, or Conflict when the entry is not as the
    caller saw it (``epoch``: the shard's epoch it knows; ``by``: the primary it knows)."""
    entry = with_copies(copy.deepcopy(entry))
    if not 0 <= shard < entry["shards"]:
        raise InvalidInput(f"shard must be between 0 and {entry['shards'] - 1}", param="shard")
    if op in {"drop_in_sync", "add_in_sync", "promote"} and entry["epochs"][shard] != epoch:
        raise Conflict(f"shard {shard} is at epoch {entry['epochs'][shard]}, not {epoch}")
    primary = entry["placement"][shard]
    copies, in_sync = entry["copies"][shard], entry["in_sync"][shard]
    if op in {"drop_in_sync", "add_in_sync"}:
        if by != primary or engine == primary or engine not in copies:
            raise Conflict(f"{by} is not the primary of shard {shard}, or {engine} is not its replica")
        if op == "drop_in_sync" and engine in in_sync:
            in_sync.remove(engine)
        elif op == "add_in_sync" and engine not in in_sync:
            in_sync.append(engine)
    elif op == "promote":
        if by != primary or engine not in in_sync or engine == primary:
            raise Conflict(f"shard {shard}'s primary is not {by}, or {engine} is not in sync")
        entry["placement"][shard] = engine
        entry["epochs"][shard] += 1
        entry["in_sync"][shard] = [engine]
    elif op == "add_copy":
        if engine in copies:
            raise Conflict(f"{engine} already holds shard {shard}")
        copies.append(engine)
    elif op == "remove_copy":
        if engine == primary:
            raise Conflict(f"{engine} is shard {shard}'s primary: only a replica can be removed")
        if engine not in copies:
            raise Conflict(f"{engine} does not hold shard {shard}")
        copies.remove(engine)
        if engine in in_sync:
            in_sync.remove(engine)
    else:
        raise ValueError(f"unknown shard change {op!r}")
    return entry
