"""Replicated shards on a real Ray cluster (3 nodes on 127.0.0.1, an engine each): engines killed with
``kill -9`` under concurrent reads and writes (reads answer in full throughout, writes resume, no
acknowledged write lost, every copy back in sync), and a replica moved to another engine (bootstrapped
from the primary, then serving reads when the primary is killed)."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from arrwdb.bench.ray_cluster import LocalRayCluster
from arrwdb.bench.serverproc import ServerProcess
from arrwdb.cluster.sharding import shard_of
from tests.cluster.conftest import KILL_ROUNDS, start_server
from tests.cluster.test_cluster_faults import DIM, Ledger, _doc, _verify, _writer

FAILOVER_S = 2.0


@pytest.fixture(scope="module")
def replicated_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("replicas")
    with LocalRayCluster(nodes=3) as cluster:
        env = {"ARRWDB_FAILOVER_AFTER_S": str(FAILOVER_S)}
        server = start_server(cluster, root / "data", root / "server.log", workers=0, env=env)
        try:
            yield server
        finally:
            server.stop()


def _copies(client: httpx.Client, library: str) -> list[dict[str, Any]]:
    """Every copy of the library's shards, with the engine that holds it."""
    answer = client.get("/v1/cluster")
    assert answer.status_code == 200, answer.text
    return [
        {**copy, "engine": engine["name"], "pid": engine["pid"]}
        for engine in answer.json()["engines"]
        for copy in engine["shards"]
        if copy["library"] == library
    ]


def _wait_in_sync(client: httpx.Client, library: str, copies: int, timeout_s: float = 90.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        found = _copies(client, library)
        if len(found) == copies and all(c["in_sync"] and c.get("lag", 0) == 0 for c in found):
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"copies of {library} not back in sync: {_copies(client, library)}")


def _until_both_shards_take_writes(client: httpx.Client, library: str, ledger: Ledger, prefix: str) -> float:
    """Seconds from now until a batch with a document for each shard is acknowledged in full."""
    started = time.monotonic()
    for n in range(2000):  # bounded in count and in time
        candidates = [f"{prefix}-{n}-{i}" for i in range(64)]
        ids = [i for i in candidates if shard_of(i, 2) == 0][:3] + [i for i in candidates if shard_of(i, 2) == 1][:3]
        answer = client.post(f"/v1/libraries/{library}/documents/batch", json={"documents": [_doc(i) for i in ids]})
        ledger.record(ids, answer)
        if answer.status_code == 201:
            return time.monotonic() - started
        assert time.monotonic() - started < 90, f"writes did not resume: {answer.text}"
        time.sleep(0.1)
    raise AssertionError("writes did not resume")


class Reader:
    """Searches while engines die: every answer must be a full 200 (a replica answers for a lost primary)."""

    def __init__(self, url: str, library: str) -> None:
        self.url, self.library = url, library
        self.answers: dict[int, int] = {}
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for n in range(100_000):  # bounded in count, and by ``stop`` in time
                if self.stop.is_set():
                    return
                vector = _doc(f"query-{n}")["embedding"]
                answer = client.post(f"/v1/libraries/{self.library}/search", json={"embedding": vector, "k": 5})
                self.answers[answer.status_code] = self.answers.get(answer.status_code, 0) + 1
                if answer.status_code != 200:
                    self.failures.append(answer.text[:300])
                time.sleep(0.01)


def test_engines_killed_under_reads_and_writes_lose_no_acknowledged_write(replicated_server: ServerProcess) -> None:
    server = replicated_server
    client = httpx.Client(base_url=server.url, timeout=60)
    library = f"replicated-{uuid.uuid4().hex[:6]}"
    body = {"name": library, "dimension": DIM, "shards": 2, "replicas": 2}
    created = client.post("/v1/libraries", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["replicas"] == 2
    seed = [_doc(f"seed-{i}") for i in range(40)]
    assert client.post(f"/v1/libraries/{library}/documents/batch", json={"documents": seed}).status_code == 201
    _wait_in_sync(client, library, copies=4)
    ledger = Ledger()
    ledger.present += [d["id"] for d in seed]
    reader = Reader(server.url, library)
    reader.thread.start()
    try:
        for round_ in range(KILL_ROUNDS):
            stop = threading.Event()
            writers = [
                threading.Thread(target=_writer, args=(server.url, library, ledger, stop, f"r{round_}w{w}"))
                for w in range(2)
            ]
            for thread in writers:
                thread.start()
            time.sleep(1.0)
            # Each engine in turn: one holding a shard's primary (its reads move to a replica, its writes
            # wait for a promotion, or for Ray's restart when it is the catalog engine), or only replicas
            # (writes wait until it has left the in-sync set; it catches up when back).
            copies = _copies(client, library)
            victim = f"arrwdb-engine-{round_ % 3}"
            roles = sorted(f"{c['role']} of shard {c['shard']}" for c in copies if c["engine"] == victim)
            os.kill(next(c["pid"] for c in copies if c["engine"] == victim), signal.SIGKILL)
            resumed_s = _until_both_shards_take_writes(client, library, ledger, f"probe{round_}")
            stop.set()
            for thread in writers:
                thread.join(timeout=60)
            in_sync_s = _wait_in_sync(client, library, copies=4)
            epochs = sorted({(c["shard"], c["epoch"]) for c in _copies(client, library)})
            print(
                f"round {round_}: {victim} ({', '.join(roles)}) killed; "
                f"both shards took writes again after {resumed_s:.1f} s; "
                f"all copies in sync {in_sync_s:.1f} s after the writers stopped; (shard, epoch) {epochs}; "
                f"answers {ledger.statuses}"
            )
    finally:
        reader.stop.set()
        reader.thread.join(timeout=60)
    print(f"reads: {reader.answers}")
    assert reader.failures == [], reader.failures[:5]
    assert reader.answers.get(200, 0) > 0
    assert ledger.retry_after_missing == 0
    _verify(client, library, ledger)
    count = client.get(f"/v1/libraries/{library}").json()["document_count"]
    assert count >= len(ledger.present)


def test_replica_moved_to_another_engine_bootstraps_and_answers_for_a_lost_primary(
    replicated_server: ServerProcess,
) -> None:
    client = httpx.Client(base_url=replicated_server.url, timeout=60)
    library = f"moved-{uuid.uuid4().hex[:6]}"
    body = {"name": library, "dimension": DIM, "shards": 1, "replicas": 2}
    assert client.post("/v1/libraries", json=body).status_code == 201
    docs = [_doc(f"m-{i}") for i in range(300)]
    for start in range(0, len(docs), 100):
        part = {"documents": docs[start : start + 100]}
        assert client.post(f"/v1/libraries/{library}/documents/batch", json=part).status_code == 201
    _wait_in_sync(client, library, copies=2)
    layout = {c["engine"]: c for c in _copies(client, library)}
    primary = next(name for name, c in layout.items() if c["role"] == "primary")
    replica = next(name for name, c in layout.items() if c["role"] == "replica")
    engines = {e["name"] for e in client.get("/v1/cluster").json()["engines"]}
    spare = sorted(engines - set(layout))[0]

    added = client.post(f"/v1/libraries/{library}/shards/0/replicas", json={"engine": spare})
    assert added.status_code == 202, added.text
    assert spare in added.json()["copies"] and spare not in added.json()["in_sync"]
    assert client.post(f"/v1/libraries/{library}/shards/0/replicas", json={"engine": spare}).status_code == 409
    bootstrap_s = _wait_in_sync(client, library, copies=3)
    removed = client.delete(f"/v1/libraries/{library}/shards/0/replicas/{replica}")
    assert removed.status_code == 200, removed.text
    assert removed.json()["copies"] == [primary, spare]
    refused = client.delete(f"/v1/libraries/{library}/shards/0/replicas/{primary}")
    assert refused.status_code == 409, refused.text

    # The primary lost: every document is read from the bootstrapped copy.
    os.kill(layout[primary]["pid"], signal.SIGKILL)
    ids = [d["id"] for d in docs]
    for doc_id in ids:
        found = client.get(f"/v1/libraries/{library}/documents/{doc_id}")
        assert found.status_code == 200, (doc_id, found.text)
    hits = client.post(f"/v1/libraries/{library}/search", json={"embedding": docs[7]["embedding"], "k": 1})
    assert hits.status_code == 200, hits.text
    assert hits.json()["results"][0]["document_id"] == docs[7]["id"]
    print(f"bootstrap of {len(docs)} documents on {spare}: in sync after {bootstrap_s:.1f} s")
    _wait_in_sync(client, library, copies=2)


def test_a_replica_restarted_catches_up_and_then_holds_every_acknowledged_write(
    replicated_server: ServerProcess,
) -> None:
    client = httpx.Client(base_url=replicated_server.url, timeout=60)
    library = f"catchup-{uuid.uuid4().hex[:6]}"
    assert client.post("/v1/libraries", json={"name": library, "dimension": DIM, "replicas": 2}).status_code == 201
    acknowledged: list[str] = []

    def write(prefix: str, batches: int) -> None:
        for b in range(batches):
            docs = [_doc(f"{prefix}-{b}-{i}") for i in range(10)]
            for _ in range(300):  # bounded: a batch refused while the replica leaves the set is sent again
                answer = client.post(f"/v1/libraries/{library}/documents/batch", json={"documents": docs})
                if answer.status_code == 201:
                    acknowledged.extend(d["id"] for d in docs)
                    break
                assert answer.status_code == 503, answer.text
                time.sleep(0.1)
            else:
                raise AssertionError("a batch was never acknowledged")

    write("before", 5)
    _wait_in_sync(client, library, copies=2)
    layout = {c["role"]: c for c in _copies(client, library)}
    os.kill(layout["replica"]["pid"], signal.SIGKILL)
    write("while-away", 10)  # acknowledged by the primary once the replica has left the in-sync set
    caught_up_s = _wait_in_sync(client, library, copies=2)
    # The catalog lists it in sync; the replica itself learns so from its primary at once, or from the
    # catalog within a second (the primary may be the catalog engine, which is about to be killed).
    time.sleep(1.5)
    after = {c["role"]: c for c in _copies(client, library)}
    assert after["replica"]["engine"] == layout["replica"]["engine"]
    assert after["replica"]["epoch"] == layout["replica"]["epoch"]  # no promotion happened
    # Only the caught-up copy is left: every acknowledged write must be there.
    os.kill(after["primary"]["pid"], signal.SIGKILL)
    for doc_id in acknowledged:
        found = client.get(f"/v1/libraries/{library}/documents/{doc_id}")
        assert found.status_code == 200, (doc_id, found.text)
        assert found.json()["text"] == _doc(doc_id)["text"]
    print(f"replica back in sync {caught_up_s:.1f} s after the writes; {len(acknowledged)} documents read from it")
    _wait_in_sync(client, library, copies=2)
