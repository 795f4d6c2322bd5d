"""Faults on a real Ray cluster: an engine killed with ``kill -9`` under concurrent writes (503 with
Retry-After while it is away, never a hang; no acknowledged write lost), and the whole cluster
stopped and started again (every library back)."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from arrwdb.bench.ray_cluster import LocalRayCluster
from arrwdb.bench.serverproc import ServerProcess
from tests.cluster.conftest import KILL_ROUNDS, start_server

DIM = 8
WRITERS = 2
BATCH = 6


def _doc(doc_id: str) -> dict[str, Any]:
    rng = np.random.default_rng(zlib.crc32(doc_id.encode()))
    return {"id": doc_id, "text": f"text of {doc_id}", "embedding": rng.normal(size=DIM).tolist(), "metadata": {}}


class Ledger:
    """What each write's answer promises: 2xx → every id is there; ``partial_write`` → its ``written``
    ids are there, those neither written nor ``unknown`` are not; ``shard_unavailable`` (nothing done)
    → none is; ``outcome_unknown`` → either."""

    def __init__(self) -> None:
        self.present: list[str] = []
        self.absent: list[str] = []
        self.statuses: dict[str, int] = {}
        self.retry_after_missing = 0
        self.lock = threading.Lock()

    def record(self, ids: list[str], answer: httpx.Response) -> None:
        with self.lock:
            error = answer.json().get("error", {}) if answer.status_code >= 400 else {}
            kind = "ok" if answer.status_code < 300 else error.get("type", str(answer.status_code))
            self.statuses[kind] = self.statuses.get(kind, 0) + 1
            refused = kind == "shard_unavailable" or (kind == "partial_write" and not error["unknown"])
            if refused and answer.status_code == 503 and "retry-after" not in answer.headers:
                self.retry_after_missing += 1
            if kind == "ok":
                self.present += ids
            elif kind == "partial_write":
                self.present += error["written"]
                self.absent += [i for i in ids if i not in error["written"] and i not in error["unknown"]]
            elif kind == "shard_unavailable":
                self.absent += ids


def _writer(url: str, library: str, ledger: Ledger, stop: threading.Event, prefix: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for n in range(10_000):  # bounded in count, and by ``stop`` in time
            if stop.is_set():
                return
            ids = [f"{prefix}-{n}-{i}" for i in range(BATCH)]
            try:
                answer = client.post(
                    f"/v1/libraries/{library}/documents/batch", json={"documents": [_doc(i) for i in ids]}
                )
            except httpx.TransportError:
                continue
            ledger.record(ids, answer)
            if answer.status_code == 503:
                time.sleep(0.05)


def _engine(client: httpx.Client, name: str) -> dict[str, Any]:
    answer = client.get("/v1/cluster")
    assert answer.status_code == 200, answer.text  # answers while an engine (even the catalog's) is down
    return next(e for e in answer.json()["engines"] if e["name"] == name)


def _verify(client: httpx.Client, library: str, ledger: Ledger) -> None:
    for doc_id in ledger.present:
        found = client.get(f"/v1/libraries/{library}/documents/{doc_id}")
        assert found.status_code == 200, (doc_id, found.text)
        body = found.json()
        assert body["text"] == _doc(doc_id)["text"]
        np.testing.assert_allclose(body["embedding"], np.float32(_doc(doc_id)["embedding"]), rtol=1e-6)
    for doc_id in ledger.absent:
        assert client.get(f"/v1/libraries/{library}/documents/{doc_id}").status_code == 404, doc_id


def test_engine_killed_under_writes_answers_503_then_recovers_losing_nothing(
    ray_server: tuple[LocalRayCluster, ServerProcess],
) -> None:
    _, server = ray_server
    client = httpx.Client(base_url=server.url, timeout=60)
    library = f"faults-{uuid.uuid4().hex[:6]}"
    assert client.post("/v1/libraries", json={"name": library, "dimension": DIM, "shards": 2}).status_code == 201
    ledger = Ledger()
    for round_ in range(KILL_ROUNDS):
        victim = f"arrwdb-engine-{round_ % 2}"  # engine 0 holds the catalog too
        stop = threading.Event()
        writers = [
            threading.Thread(target=_writer, args=(server.url, library, ledger, stop, f"r{round_}w{w}"))
            for w in range(WRITERS)
        ]
        for thread in writers:
            thread.start()
        time.sleep(1.0)
        before = _engine(client, victim)["pid"]
        os.kill(before, signal.SIGKILL)
        started = time.monotonic()
        # While it is away: a search that needs its shard answers at once (503, Retry-After), never hangs.
        saw_refusal = False
        for _ in range(200):
            answer = client.post(f"/v1/libraries/{library}/search", json={"embedding": [1.0] * DIM}, timeout=10)
            if answer.status_code == 503:
                assert answer.headers.get("retry-after") == "1", answer.headers
                assert answer.json()["error"]["type"] == "shard_unavailable"
                saw_refusal = True
                break
            time.sleep(0.02)
        assert saw_refusal, "no search was refused while an engine was down"
        for _ in range(600):  # Ray restarts it; the frontend's probe sees it back
            engine = _engine(client, victim)
            if engine["up"] and engine["pid"] not in (None, before):
                answer = client.post(f"/v1/libraries/{library}/search", json={"embedding": [1.0] * DIM})
                if answer.status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError(f"{victim} did not come back")
        recovered_s = time.monotonic() - started
        time.sleep(0.5)  # writes resume
        stop.set()
        for thread in writers:
            thread.join(timeout=60)
        print(f"round {round_}: {victim} back after {recovered_s:.1f} s; answers so far {ledger.statuses}")
    assert ledger.statuses.get("ok", 0) > 0
    assert ledger.retry_after_missing == 0
    _verify(client, library, ledger)
    count = client.get(f"/v1/libraries/{library}").json()["document_count"]
    assert count >= len(ledger.present)


def test_whole_cluster_stopped_and_started_brings_every_library_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    probe = {"embedding": _doc("probe")["embedding"], "k": 5}
    libraries = {"one-shard": 1, "three-shards": 3}
    answers: dict[str, Any] = {}
    with LocalRayCluster(nodes=2) as cluster:
        server = start_server(cluster, data, tmp_path / "first.log")
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                for name, shards in libraries.items():
                    body = {"name": name, "dimension": DIM, "shards": shards}
                    assert client.post("/v1/libraries", json=body).status_code == 201
                    docs = [_doc(f"{name}-{i}") for i in range(40)]
                    assert (
                        client.post(f"/v1/libraries/{name}/documents/batch", json={"documents": docs}).status_code
                        == 201
                    )
                    answers[name] = client.post(f"/v1/libraries/{name}/search", json=probe).json()["results"]
        finally:
            server.stop()
    with LocalRayCluster(nodes=2) as cluster:  # a new cluster: new nodes, new actors, the same disks
        server = start_server(cluster, data, tmp_path / "second.log")
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                listed = {lib["name"]: lib for lib in client.get("/v1/libraries").json()["libraries"]}
                assert set(listed) == set(libraries)
                for name, shards in libraries.items():
                    assert listed[name]["shards"] == shards
                    assert listed[name]["document_count"] == 40
                    again = client.post(f"/v1/libraries/{name}/search", json=probe).json()["results"]
                    assert [h["document_id"] for h in again] == [h["document_id"] for h in answers[name]]
        finally:
            server.stop()
