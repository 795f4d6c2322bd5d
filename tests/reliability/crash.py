"""Crash harness: writers insert, upsert and delete while ``arrwdb serve`` is SIGKILLed, again and again.

Each round starts the writers (threads, each owning its own document ids, across a text library, a
brute-force vector library and an HNSW library past its build threshold), kills the server at a
moment chosen by the round's mode, checks the SQLite file's integrity, restarts the server and
verifies everything against the ledger (see ledger.py):

- every acknowledged write is there with its exact title, text, metadata and float32 vector;
- every acknowledged delete is gone (not listed, 404, and its old vector no longer finds it);
- an unanswered write landed whole or not at all (a batch: all of its documents or none);
- nothing unknown appeared; statistics (the in-memory indexes) count what the store lists;
- every live document is the top hit of a search with its own vector (or, for text, its own text).

Kill targets: ``server`` (SIGKILL to ``arrwdb serve``'s parent process, which takes every process of
the server with it) or ``engine`` (SIGKILL to the engine process alone: the HTTP workers answer 503
while the parent restarts it; a write in flight then answers ``outcome_unknown``, counted as unanswered).

Kill modes: ``random`` (a random moment of the write load), ``build`` (while the HNSW library's
index is being built in the background) and ``snapshot`` (while an index snapshot's temp files are
being written).

    python -m tests.reliability.crash --rounds 50            # the long run (docs/RELIABILITY.md)
    python -m tests.reliability.crash --rounds 2 --writers 3 # about a minute
    python -m tests.reliability.crash --rounds 20 --target engine
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.reliability.ledger import ABSENT, Ledger, LibrarySpec, content, expected_vector
from tests.reliability.server import KillableServer

LIBRARIES = (
    LibrarySpec("txt", "brute_force", "cosine", None, cap=120, weight=0.15, batch=(2, 6)),
    LibrarySpec("vec", "brute_force", "l2", 16, cap=1500, weight=0.35, batch=(10, 80)),
    LibrarySpec("ann", "hnsw", "cosine", 32, cap=5000, weight=0.50, batch=(100, 300)),
)
BY_NAME = {lib.name: lib for lib in LIBRARIES}
ANN_SEED_DOCS = 2600  # past the 2048 rows at which an hnsw library builds its graph in the background
ANN_EF_SEARCH = 512  # verification searches the graph wide: a miss must mean a lost row, not recall
KILL_MODES = ("random", "build", "snapshot")
MODE_WAIT_S = 40.0  # longest a build/snapshot round waits for its moment before killing anyway


@dataclass
class Report:
    rounds: int = 0
    kills: int = 0
    kill_modes: Counter[str] = field(default_factory=Counter)
    kills_during_build: int = 0
    kills_during_snapshot_write: int = 0
    acknowledged_ops: int = 0
    acknowledged_docs: int = 0
    unanswered_ops: int = 0
    unanswered_docs_landed: int = 0  # documents of unanswered writes found at their new version
    unanswered_docs_not_landed: int = 0
    refused_while_down: int = 0  # 503 not_ready while the engine restarted: did nothing
    error_answers: Counter[str] = field(default_factory=Counter)
    docs_verified: int = 0
    deletes_verified: int = 0
    searches_verified: int = 0
    integrity_checks: int = 0
    snapshot_discards: int = 0
    seconds: float = 0.0
    restart_seconds: list[float] = field(default_factory=list)  # kill -> ready again
    verify_seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, amount: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + amount)

    def fail(self, message: str) -> None:
        with self.lock:
            if len(self.failures) < 200:
                self.failures.append(message)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "lock"}


# -- writers ------------------------------------------------------------------------------------------


class Writer(threading.Thread):
    """One client: random writes on its own documents until the server dies or ``stop`` is set."""

    def __init__(
        self, index: int, writers: int, url: str, ledger: Ledger, report: Report, stop: threading.Event, seed: int
    ) -> None:
        super().__init__(name=f"writer-{index}", daemon=True)
        self.writers = writers
        self.prefix = f"w{index}-"
        self.url = url
        self.ledger = ledger
        self.report = report
        self.stop = stop
        self.rng = random.Random(seed)
        self.created = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=120.0) as http:
            while not self.stop.is_set():
                lib = self.rng.choices(LIBRARIES, weights=[lib.weight for lib in LIBRARIES])[0]
                if not self.write_once(http, lib):
                    return

    def new_id(self) -> str:
        self.created += 1
        return f"{self.prefix}{self.created}-{self.rng.randrange(1 << 30):x}"

    def write_once(self, http: httpx.Client, lib: LibrarySpec) -> bool:
        """One write; False once the server is gone (the thread then stops)."""
        live = self.ledger.live(lib.name, self.prefix)
        full = len(live) * self.writers >= lib.cap  # each writer keeps to its share of the cap
        op = self.rng.choices(
            ("insert", "insert_batch", "update", "update_batch", "delete"),
            weights=(0 if full else 2, 0 if full else 3, 3 if live else 0, 2 if live else 0, 2 if live else 0),
        )[0]
        if op == "delete":
            doc_id = self.rng.choice(live)
            writes = {doc_id: ABSENT}
            request: dict[str, Any] = {"method": "DELETE", "url": f"/v1/libraries/{lib.name}/documents/{doc_id}"}
        else:
            if op == "insert":
                ids = [self.new_id()]
            elif op == "update":
                ids = [self.rng.choice(live)]
            else:
                count = self.rng.randint(*lib.batch)
                ids = [self.new_id() for _ in range(count)] if op == "insert_batch" else []
                if op == "update_batch":
                    ids = [*self.rng.sample(live, min(len(live), count)), self.new_id()]
            writes = {doc_id: self.ledger.bump(lib.name, doc_id) for doc_id in ids}
            docs = [content(lib, doc_id, version) for doc_id, version in writes.items()]
            if len(docs) == 1 and op in ("insert", "update"):
                request = {"method": "POST", "url": f"/v1/libraries/{lib.name}/documents", "json": docs[0]}
            else:
                request = {
                    "method": "POST",
                    "url": f"/v1/libraries/{lib.name}/documents/batch",
                    "json": {"documents": docs},
                }
        previous = {doc_id: self.ledger.current(lib.name, doc_id) for doc_id in writes}
        try:
            response = http.request(**request)
        except httpx.ConnectError:
            return False  # never reached a server: nothing happened
        except httpx.TransportError:
            # Sent, but the answer never came: it may or may not have landed.
            self.ledger.unanswered(lib.name, writes)
            self.report.add("unanswered_ops")
            return False
        if response.status_code == 503:
            kind = response.json()["error"]["type"]
            if kind == "outcome_unknown":  # in flight when the engine ended: as if cut off
                self.ledger.unanswered(lib.name, writes)
                self.report.add("unanswered_ops")
                return False
            if kind == "not_ready":  # the engine is restarting: refused, nothing done
                self.report.add("refused_while_down")
                time.sleep(0.05)
                return True
        if response.status_code >= 300:
            self.report.error_answers[str(response.status_code)] += 1
            self.report.fail(
                f"{request['method']} {request['url']} answered {response.status_code}: {response.text[:200]}"
            )
            return True  # an error answer did nothing: the ledger keeps the old versions
        self.ledger.acknowledge(lib.name, writes, previous)
        self.report.add("acknowledged_ops")
        self.report.add("acknowledged_docs", len(writes))
        return True


# -- killing ------------------------------------------------------------------------------------------


def snapshot_temp_files(data_dir: Path, since: float) -> list[Path]:
    """Snapshot temp files written since ``since``: a snapshot write in progress (or cut short)."""
    found = []
    try:
        for entry in os.scandir(data_dir / "indexes"):
            if entry.name.endswith(".tmp") and entry.stat().st_mtime >= since:
                found.append(Path(entry.path))
    except FileNotFoundError:
        pass
    return found


def wait_for_moment(mode: str, server: KillableServer, data_dir: Path, rng: random.Random, since: float) -> bool:
    """Block until the round's kill moment; True when the wanted moment (build, snapshot) was seen."""
    if mode == "random":
        time.sleep(rng.uniform(0.3, 4.0))
        return True
    deadline = time.monotonic() + MODE_WAIT_S
    with httpx.Client(base_url=server.url, timeout=5.0) as http:
        while time.monotonic() < deadline:
            if mode == "snapshot":
                if snapshot_temp_files(data_dir, since):
                    return True
                time.sleep(0.0005)
                continue
            try:
                stats = http.get("/v1/libraries/ann/statistics").json()
            except (httpx.TransportError, ValueError):
                return False
            if stats.get("index", {}).get("state") == "building":
                time.sleep(rng.uniform(0.0, 0.3))  # somewhere inside the build, not always at its start
                return True
            time.sleep(0.01)
    return False


def integrity_check(data_dir: Path) -> str:
    """SQLite's own check of the file the killed server left (WAL recovery included)."""
    conn = sqlite3.connect(data_dir / "arrwdb.sqlite3")
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


# -- verification -------------------------------------------------------------------------------------


def list_all(http: httpx.Client, library: str) -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = http.get(f"/v1/libraries/{library}/documents", params=params).raise_for_status().json()
        docs.update((doc["id"], doc) for doc in page["documents"])
        cursor = page["next_cursor"]
        if cursor is None:
            return docs


def check_content(lib: LibrarySpec, found: dict[str, Any], version: int, report: Report) -> None:
    want = content(lib, found["id"], version)
    for key in ("title", "text", "metadata"):
        if found.get(key) != want[key]:
            report.fail(f"{lib.name}/{found['id']} v{version}: {key} is {found.get(key)!r}, wrote {want[key]!r}")
    if lib.vectors:
        got = np.asarray(found.get("embedding") or [], dtype=np.float64).astype(np.float32)
        if got.shape != (lib.dimension,) or not np.array_equal(got, expected_vector(want)):
            report.fail(f"{lib.name}/{found['id']} v{version}: the stored vector differs from the one written")


def search_each(http: httpx.Client, lib: LibrarySpec, queries: list[dict[str, Any]]) -> list[str | None]:
    """Top hit of each query, through batch searches."""
    params = {"ef_search": ANN_EF_SEARCH} if lib.index_type == "hnsw" else None
    top: list[str | None] = []
    for start in range(0, len(queries), 500):
        batch = [
            {**q, "k": 1, "include_text": False, **({"params": params} if params else {})}
            for q in queries[start : start + 500]
        ]
        answer = http.post(f"/v1/libraries/{lib.name}/search/batch", json={"queries": batch}, timeout=300)
        answer.raise_for_status()
        top.extend(hits[0]["document_id"] if hits else None for hits in answer.json()["results"])
    return top


def verify(url: str, ledger: Ledger, report: Report) -> None:
    with httpx.Client(base_url=url, timeout=120.0) as http:
        for lib in LIBRARIES:
            verify_library(http, lib, ledger, report)


def verify_library(http: httpx.Client, lib: LibrarySpec, ledger: Ledger, report: Report) -> None:
    found = list_all(http, lib.name)
    expected = ledger.docs.get(lib.name, {})
    versions = {doc_id: int(doc["metadata"]["v"]) for doc_id, doc in found.items()}
    for doc_id in found.keys() - expected.keys():
        report.fail(f"{lib.name}/{doc_id}: present, but no write of it was ever sent")
    for doc_id, possible in expected.items():
        version = versions.get(doc_id, ABSENT)
        if version not in possible:
            report.fail(f"{lib.name}/{doc_id}: found at version {version}, expected one of {sorted(possible)}")
        if len(possible) > 1:
            report.add("unanswered_docs_landed" if version == max(possible) else "unanswered_docs_not_landed")
        if version != ABSENT:
            check_content(lib, found[doc_id], version, report)
    report.add("docs_verified", len(expected))
    for batch in ledger.unknown_batches:
        if batch.library == lib.name:
            landed = {versions.get(d, ABSENT) == new for d, (_old, new) in batch.versions.items()}
            if len(landed) > 1:
                report.fail(f"{lib.name}: an unanswered batch of {len(batch.versions)} landed in part")
    stats = http.get(f"/v1/libraries/{lib.name}/statistics").raise_for_status().json()
    if stats["document_count"] != len(found) or stats["vector_count"] != len(found):
        report.fail(
            f"{lib.name}: statistics count {stats['document_count']} documents / {stats['vector_count']} vectors,"
            f" the store lists {len(found)} single-chunk documents"
        )
    # Every live document is its own top hit.
    live = sorted(found)
    if lib.vectors:
        queries = [{"embedding": found[d]["embedding"]} for d in live]
    else:
        queries = [{"query": found[d]["text"]} for d in live]
    for doc_id, top in zip(live, search_each(http, lib, queries), strict=True):
        if top != doc_id:
            report.fail(f"{lib.name}/{doc_id}: a search with its own vector found {top!r} first")
    report.add("searches_verified", len(live))
    # Every acknowledged delete is gone: 404, and its last vector no longer finds it.
    deleted = [(d, v) for (name, d), v in ledger.deleted_from.items() if name == lib.name and d not in found]
    sample = deleted[-200:]
    for doc_id, _version in sample[:50]:
        if http.get(f"/v1/libraries/{lib.name}/documents/{doc_id}").status_code != 404:
            report.fail(f"{lib.name}/{doc_id}: deleted, but still served")
    if lib.vectors and sample:
        queries = [{"embedding": content(lib, d, v)["embedding"]} for d, v in sample]
        for (doc_id, _), top in zip(sample, search_each(http, lib, queries), strict=True):
            if top == doc_id:
                report.fail(f"{lib.name}/{doc_id}: deleted, but a search still finds it")
    report.add("deletes_verified", len(sample))
    ledger.resolve(lib.name, versions)


# -- the run ------------------------------------------------------------------------------------------


def create_libraries(url: str) -> None:
    with httpx.Client(base_url=url, timeout=60.0) as http:
        for lib in LIBRARIES:
            body: dict[str, Any] = {"name": lib.name, "index_type": lib.index_type, "metric": lib.metric}
            if lib.dimension is not None:
                body["dimension"] = lib.dimension
            http.post("/v1/libraries", json=body).raise_for_status()


def seed_ann(url: str, ledger: Ledger, writers: int) -> None:
    """Acknowledged documents enough for the HNSW library to build (owned by the writers)."""
    lib = BY_NAME["ann"]
    with httpx.Client(base_url=url, timeout=300.0) as http:
        for start in range(0, ANN_SEED_DOCS, 500):
            writes = {f"w{i % writers}-s{i}": 1 for i in range(start, min(start + 500, ANN_SEED_DOCS))}
            docs = [content(lib, doc_id, version) for doc_id, version in writes.items()]
            http.post("/v1/libraries/ann/documents/batch", json={"documents": docs}).raise_for_status()
            for doc_id in writes:
                ledger.bump(lib.name, doc_id)
            ledger.acknowledge(lib.name, writes, dict.fromkeys(writes, ABSENT))


def run_round(
    server: KillableServer,
    data_dir: Path,
    mode: str,
    ledger: Ledger,
    report: Report,
    writers: int,
    rng: random.Random,
    target: str = "server",
) -> None:
    since = time.time() - 1.0  # mtime granularity
    stop = threading.Event()
    threads = [Writer(i, writers, server.url, ledger, report, stop, rng.randrange(1 << 30)) for i in range(writers)]
    for thread in threads:
        thread.start()
    seen = wait_for_moment(mode, server, data_dir, rng, since)
    if target == "engine":
        server.kill_engine()
        time.sleep(0.5)  # the parent has seen it end: /ready answers for the next engine only
    else:
        server.kill()
    killed_at = time.monotonic()
    interrupted_snapshot = bool(snapshot_temp_files(data_dir, since))
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    report.add("kills")
    report.kill_modes[mode if seen else f"{mode}-not-seen"] += 1
    if mode == "build" and seen:
        report.add("kills_during_build")
    if mode == "snapshot" and seen and interrupted_snapshot:
        report.add("kills_during_snapshot_write")
    result = integrity_check(data_dir)
    report.add("integrity_checks")
    if result != "ok":
        report.fail(f"SQLite integrity check after the kill: {result}")
    if target == "engine":
        server.wait_ready()  # the parent restarted the engine
    else:
        server.start()
    restarted_at = time.monotonic()
    verify(server.url, ledger, report)
    report.restart_seconds.append(round(restarted_at - killed_at, 1))
    report.verify_seconds.append(round(time.monotonic() - restarted_at, 1))
    report.add("rounds")


def run(
    rounds: int,
    writers: int = 4,
    seed: int = 0,
    work_dir: Path | None = None,
    modes: tuple[str, ...] = KILL_MODES,
    progress: bool = False,
    target: str = "server",
    workers: int = 2,
) -> Report:
    report = Report()
    started = time.monotonic()
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="arrwdb-crash-") as scratch:
        root = work_dir or Path(scratch)
        data_dir = root / "data"
        log_path = root / "server.log"
        env = {"ARRWDB_WORKERS": str(workers)}  # the multi-process server (0: one process)
        server = KillableServer(data_dir, env=env, log_path=log_path).start()
        ledger = Ledger()
        try:
            create_libraries(server.url)
            seed_ann(server.url, ledger, writers)
            for number in range(rounds):
                mode = modes[number % len(modes)]
                run_round(server, data_dir, mode, ledger, report, writers, rng, target)
                if progress:
                    print(
                        f"[{time.monotonic() - started:6.1f} s] round {number + 1}/{rounds} ({mode}): "
                        f"{report.acknowledged_docs} docs acknowledged, "
                        f"{report.docs_verified} verified, {len(report.failures)} failures",
                        flush=True,
                    )
        finally:
            server.stop()
        report.integrity_checks += 1
        final = integrity_check(data_dir)
        if final != "ok":
            report.fail(f"SQLite integrity check after the last stop: {final}")
        if log_path.exists():
            report.snapshot_discards = log_path.read_text(errors="replace").count("discarding snapshot")
    report.seconds = round(time.monotonic() - started, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.crash", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", default=",".join(KILL_MODES), help="kill modes, taken in turn")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the store and server log here")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    parser.add_argument("--target", choices=("server", "engine"), default="server", help="what each round kills")
    parser.add_argument("--workers", type=int, default=2, help="HTTP worker processes of the server (0: one process)")
    args = parser.parse_args(argv)
    modes = tuple(args.modes.split(","))
    if set(modes) - set(KILL_MODES):
        parser.error(f"--modes takes {', '.join(KILL_MODES)}")
    report = run(
        args.rounds,
        args.writers,
        args.seed,
        args.work_dir,
        modes,
        progress=True,
        target=args.target,
        workers=args.workers,
    )
    summary = report.as_dict()
    print(json.dumps(summary, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
