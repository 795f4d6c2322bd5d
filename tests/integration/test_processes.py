"""``arrwdb serve --workers N``: a parent, one engine process and N HTTP workers, as real processes on
a loopback port.  What one process guaranteed holds across them: a write acknowledged through one
worker is seen by the next search through another, minted keys work at once everywhere, one scrape
of /metrics counts every worker, the answers are those of the single-process server; and the faults:
the engine or a worker killed with SIGKILL, the parent killed, a stop with requests in flight."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.processes import (
    ADMIN_KEY,
    alive,
    children,
    engine_pid,
    kill,
    metric_sum,
    pinned_clients,
    start_processes,
    wait_ready,
    worker_pids,
)

DIMENSION = 8


def _vector(seed: int) -> list[float]:
    return np.random.default_rng(seed).standard_normal(DIMENSION).astype(np.float32).tolist()


def _mint(url: str, tenant: str = "acme") -> dict[str, str]:
    answer = httpx.post(f"{url}/v1/admin/keys", json={"tenant": tenant}, headers={"X-API-Key": ADMIN_KEY})
    assert answer.status_code == 201, answer.text
    return {"X-API-Key": answer.json()["key"], "_id": answer.json()["id"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    server = start_processes(tmp_path_factory.mktemp("processes") / "data", workers=2)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def key(server) -> dict[str, str]:
    minted = _mint(server.url)
    return {"X-API-Key": minted["X-API-Key"]}


def test_http_workers_load_neither_torch_nor_faiss(server, key):
    workers = worker_pids(server.url, 2)
    for pid in workers:
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "libtorch" not in maps and "_swigfaiss" not in maps, f"HTTP worker {pid} loaded torch or FAISS"
    engine = engine_pid(server, workers)
    assert "libtorch" in Path(f"/proc/{engine}/maps").read_text()  # the check above can fail


def test_a_write_through_one_worker_is_seen_at_once_through_another(server, key):
    (_, first), (_, second) = pinned_clients(server.url, 2, headers=key)
    try:
        assert first.post("/v1/libraries", json={"name": "ryw", "dimension": DIMENSION}).status_code == 201
        for i in range(20):
            doc = {"id": f"d{i}", "embedding": _vector(i), "metadata": {"i": i}}
            assert first.post("/v1/libraries/ryw/documents", json=doc).status_code == 201
            hits = second.post("/v1/libraries/ryw/search", json={"embedding": _vector(i), "k": 1}).json()["results"]
            assert hits[0]["document_id"] == f"d{i}"  # the write just acknowledged, through the other worker
            assert second.get(f"/v1/libraries/ryw/documents/d{i}").json()["metadata"] == {"i": i}
    finally:
        first.close()
        second.close()


def test_one_scrape_of_metrics_counts_every_worker(server, key):
    pinned = pinned_clients(server.url, 2, headers=key)
    before = httpx.get(f"{server.url}/metrics").text
    try:
        for _, client in pinned:
            for _ in range(5):
                assert client.get("/v1/libraries").status_code == 200
        assert pinned[0][1].post("/v1/embed", json={"texts": ["one batch"]}).status_code == 200
    finally:
        for _, client in pinned:
            client.close()
    after = httpx.get(f"{server.url}/metrics").text
    counted = metric_sum(after, "arrwdb_http_requests_total", route="/v1/libraries", method="GET")
    counted -= metric_sum(before, "arrwdb_http_requests_total", route="/v1/libraries", method="GET")
    assert counted == 10  # 5 through each worker, whichever answered the scrape
    assert metric_sum(after, "arrwdb_device_busy_fraction") >= 0  # the engine's own figures are there too
    assert "arrwdb_batch_size_bucket" in after


def test_a_key_minted_through_one_worker_works_at_once_on_every_worker(server):
    pinned = pinned_clients(server.url, 2)
    try:
        for minter, _ in pinned:
            minted = httpx.post(
                f"{server.url}/v1/admin/keys", json={"tenant": f"t{minter}"}, headers={"X-API-Key": ADMIN_KEY}
            ).json()
            for _, client in pinned:  # the very next request, on each worker
                answer = client.get("/v1/libraries", headers={"X-API-Key": minted["key"]})
                assert answer.status_code == 200, answer.text
            revoked = httpx.delete(f"{server.url}/v1/admin/keys/{minted['id']}", headers={"X-API-Key": ADMIN_KEY})
            assert revoked.status_code == 204
            for _, client in pinned:
                assert client.get("/v1/libraries", headers={"X-API-Key": minted["key"]}).status_code == 401
    finally:
        for _, client in pinned:
            client.close()


def test_a_full_engine_queue_is_refused_at_the_worker_with_the_api_error(tmp_path):
    server = start_processes(tmp_path / "data", workers=1, ARRWDB_MAX_QUEUE="1")
    try:
        headers = {"X-API-Key": _mint(server.url)["X-API-Key"]}
        statuses: list[int] = []
        bodies: list[dict] = []

        def embed() -> None:
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
                for n in range(3):
                    answer = client.post("/v1/embed", json={"texts": [f"text {n} {i}" for i in range(64)]})
                    statuses.append(answer.status_code)
                    if answer.status_code == 429:
                        bodies.append(answer.json())
                        assert answer.headers["retry-after"] == "1"

        threads = [threading.Thread(target=embed) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert 200 in statuses and 429 in statuses, statuses
        assert set(statuses) <= {200, 429}
        assert all(body["error"]["type"] == "overloaded" for body in bodies)
    finally:
        server.stop()


def test_the_rate_limit_is_one_for_the_whole_server(tmp_path):
    server = start_processes(tmp_path / "data", workers=2, ARRWDB_RATE_LIMIT_PER_S="0.01", ARRWDB_RATE_LIMIT_BURST="3")
    try:
        headers = {"X-API-Key": _mint(server.url)["X-API-Key"]}
        pinned = pinned_clients(server.url, 2, headers=headers)
        try:
            statuses = [client.get("/v1/libraries").status_code for _ in range(2) for _, client in pinned]
        finally:
            for _, client in pinned:
                client.close()
        assert statuses == [200, 200, 200, 429]  # one bucket of 3 for the key, across both workers
    finally:
        server.stop()


def test_answers_equal_the_single_process_servers(tmp_path):
    data_dir = tmp_path / "data"
    queries = [{"embedding": _vector(1000 + i), "k": 5, "filter": {"i": {"$gte": i}}} for i in range(10)]
    server = start_processes(data_dir, workers=2, ARRWDB_ADMIN_KEY="")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.post("/v1/libraries", json={"name": "same", "dimension": DIMENSION}).status_code == 201
            docs = [{"id": f"d{i}", "embedding": _vector(i), "metadata": {"i": i % 20}} for i in range(300)]
            assert client.post("/v1/libraries/same/documents/batch", json={"documents": docs}).status_code == 201
            many = client.post("/v1/libraries/same/search/batch", json={"queries": queries}).json()["results"]
            one = [client.post("/v1/libraries/same/search", json=q).json()["results"] for q in queries]
    finally:
        server.stop()
    single = start_processes(data_dir, workers=0, ARRWDB_ADMIN_KEY="")
    try:
        with httpx.Client(base_url=single.url, timeout=60) as client:
            reference = client.post("/v1/libraries/same/search/batch", json={"queries": queries}).json()["results"]
    finally:
        single.stop()
    assert many == reference and one == reference


TEXTS = [f"passage {i} about {topic}" for i, topic in enumerate(["rivers", "mountains", "cities", "music"] * 6)]
LONG_TEXT = " ".join(f"sentence{i} on the long document" for i in range(300))  # several chunks
TEXT_QUERIES = [{"query": q, "k": 4} for q in ("rivers and lakes", "music", "tall mountains", "long document")]


def _text_answers(client: httpx.Client) -> tuple[list, list, list]:
    many = client.post("/v1/libraries/texts/search/batch", json={"queries": TEXT_QUERIES}).json()["results"]
    one = [client.post("/v1/libraries/texts/search", json=q).json()["results"] for q in TEXT_QUERIES]
    vectors = client.post("/v1/embeddings", json={"input": ["one input", "two inputs"]}).json()["data"]
    return many, one, [item["embedding"] for item in vectors]


def _same_hits(got: list, expected: list) -> None:
    assert [[h["document_id"] for h in hits] for hits in got] == [[h["document_id"] for h in hits] for hits in expected]
    for hits, reference in zip(got, expected, strict=True):
        np.testing.assert_allclose([h["score"] for h in hits], [h["score"] for h in reference], atol=1e-4)


def test_texts_leave_a_worker_tokenized_and_answer_as_the_single_process_server(tmp_path):
    """The engine embeds a worker's token ids (counted by arrwdb_embed_tokenized_texts_total), and
    what it answers is what the single-process server, which tokenizes itself, answers."""
    data_dir = tmp_path / "data"
    server = start_processes(data_dir, workers=2, ARRWDB_ADMIN_KEY="")
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            assert client.post("/v1/libraries", json={"name": "texts", "dimension": 384}).status_code == 201
            docs = [{"id": f"t{i}", "text": text} for i, text in enumerate(TEXTS)] + [{"id": "long", "text": LONG_TEXT}]
            assert client.post("/v1/libraries/texts/documents/batch", json={"documents": docs}).status_code == 201
            before = metric_sum(client.get("/metrics").text, "arrwdb_embed_tokenized_texts_total", by="worker")
            many, one, vectors = _text_answers(client)
            scrape = client.get("/metrics").text
    finally:
        server.stop()
    by_worker = metric_sum(scrape, "arrwdb_embed_tokenized_texts_total", by="worker")
    assert before >= len(TEXTS) + 2  # every document, the long one in several chunks
    assert by_worker - before >= len(TEXT_QUERIES) + 2  # the queries (once each: then cached) and the inputs
    assert metric_sum(scrape, "arrwdb_embed_tokenized_texts_total", by="engine") == 0
    single = start_processes(data_dir, workers=0, ARRWDB_ADMIN_KEY="")
    try:
        with httpx.Client(base_url=single.url, timeout=120) as client:
            reference_many, _, reference_vectors = _text_answers(client)
            assert metric_sum(client.get("/metrics").text, "arrwdb_embed_tokenized_texts_total", by="engine") > 0
    finally:
        single.stop()
    _same_hits(many, reference_many)
    _same_hits(one, reference_many)
    np.testing.assert_allclose(vectors, reference_vectors, atol=1e-4)


def test_the_engine_killed_answers_503_at_once_then_recovers_with_every_write(tmp_path):
    server = start_processes(tmp_path / "data", workers=2, ARRWDB_ADMIN_KEY="")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.post("/v1/libraries", json={"name": "kept", "dimension": DIMENSION}).status_code == 201
            for i in range(30):
                doc = {"id": f"d{i}", "embedding": _vector(i)}
                assert client.post("/v1/libraries/kept/documents", json=doc).status_code == 201
        workers = worker_pids(server.url, 2)
        engine = engine_pid(server, workers)
        statuses: list[int] = []
        slowest = [0.0]
        stop = threading.Event()

        def searching() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                while not stop.is_set():
                    started = time.monotonic()
                    answer = client.post("/v1/libraries/kept/search", json={"embedding": _vector(3), "k": 3})
                    slowest[0] = max(slowest[0], time.monotonic() - started)
                    statuses.append(answer.status_code)

        threads = [threading.Thread(target=searching) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        kill(engine)
        time.sleep(0.5)
        assert httpx.get(f"{server.url}/ready").status_code == 503
        recovered_in = wait_ready(server.url)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert 503 in statuses and statuses[-1] == 200
        assert set(statuses) <= {200, 503}, set(statuses)
        assert slowest[0] < 5.0  # nothing hung waiting on the dead engine (its restart took longer)
        assert recovered_in > 0
        assert set(worker_pids(server.url, 2)) == workers  # the workers went on
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.get("/v1/libraries/kept/statistics").json()["document_count"] == 30
    finally:
        server.stop()


def test_a_killed_worker_is_restarted_and_the_other_goes_on(tmp_path):
    server = start_processes(tmp_path / "data", workers=2, ARRWDB_ADMIN_KEY="")
    try:
        (victim, _), (survivor, client) = pinned_clients(server.url, 2)
        try:
            kill(victim)
            for _ in range(20):
                assert client.get("/health").json()["pid"] == survivor
                time.sleep(0.05)
        finally:
            client.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = {pid for pid in children(server.pid) if alive(pid)}
            if victim not in pids and len(pids) >= 4:  # engine, 2 workers, resource tracker
                break
            time.sleep(0.2)
        assert len(worker_pids(server.url, 2) - {victim}) == 2
    finally:
        server.stop()


def test_killing_the_parent_leaves_no_process_of_the_server(tmp_path):
    server = start_processes(tmp_path / "data", workers=2, ARRWDB_ADMIN_KEY="")
    descendants = children(server.pid)
    assert len(descendants) >= 3
    server.kill()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in descendants) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in descendants if alive(pid)]


def test_a_stop_answers_the_requests_in_flight(tmp_path):
    server = start_processes(tmp_path / "data", workers=2, ARRWDB_ADMIN_KEY="")
    statuses: list[int] = []

    def embed_many() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            texts = [f"a sentence to embed, number {i}, with some words" for i in range(600)]
            statuses.append(client.post("/v1/embed", json={"texts": texts}).status_code)

    threads = [threading.Thread(target=embed_many) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    descendants = children(server.pid)
    server.stop()  # SIGTERM to the parent
    for thread in threads:
        thread.join(timeout=120)
    assert statuses == [200, 200, 200]
    # The parent joined the engine and the workers; multiprocessing's resource tracker leaves when it sees
    # the parent's pipe close, a moment later.
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in descendants) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in descendants if alive(pid)]


def test_minted_keys_stay_enforced_by_every_worker_after_a_restart_without_the_admin_key(tmp_path):
    data_dir = tmp_path / "data"
    server = start_processes(data_dir, workers=2)
    try:
        minted = _mint(server.url)
    finally:
        server.stop()
    server = start_processes(data_dir, workers=2, ARRWDB_ADMIN_KEY="")
    try:
        pinned = pinned_clients(server.url, 2)
        try:
            for _, client in pinned:
                assert client.get("/v1/libraries", headers={"X-API-Key": "not-a-key"}).status_code == 401
                assert client.get("/v1/libraries").status_code == 401
                assert client.get("/v1/libraries", headers={"X-API-Key": minted["X-API-Key"]}).status_code == 200
        finally:
            for _, client in pinned:
                client.close()
    finally:
        server.stop()
