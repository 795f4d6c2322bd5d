"""Storage faults on real filesystems: a full disk and a disk that turns read-only under the server.

Writes must fail with a clear 507 (and do nothing), reads must keep working, nothing on disk may be
corrupted, and once space returns writes work again at once, with every acknowledged write intact.
"""

from __future__ import annotations

import gc
import sqlite3

import httpx
import numpy as np

from tests.reliability.mounts import ext4_image, fail_read_only, fill, mount_ext4, tmpfs, unmount

DIM = 8


def vectors(seed: int, count: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, DIM))


def batch(prefix: str, seed: int, count: int = 200) -> dict:
    docs = [
        {"id": f"{prefix}-{i}", "text": f"payload {prefix} {i} " + "x" * 200, "embedding": v.tolist()}
        for i, v in enumerate(vectors(seed, count))
    ]
    return {"documents": docs}


def check_documents(http: httpx.Client, acknowledged: dict[str, dict], refused: set[str]) -> None:
    """Every acknowledged document exactly as written (float32 vectors), nothing of a refused write."""
    listed = {}
    cursor = None
    while True:
        page = http.get("/v1/libraries/v/documents", params={"limit": 1000, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        listed.update((d["id"], d) for d in page.json()["documents"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert listed.keys() == acknowledged.keys()
    assert not refused & listed.keys()
    for doc_id, doc in acknowledged.items():
        got = np.asarray(listed[doc_id]["embedding"], dtype=np.float32)
        assert np.array_equal(got, np.asarray(doc["embedding"]).astype(np.float32)), doc_id
        assert listed[doc_id]["text"] == doc["text"]
    stats = http.get("/v1/libraries/v/statistics").json()
    assert stats["document_count"] == stats["vector_count"] == len(acknowledged)
    probe = next(iter(acknowledged.values()))
    top = http.post("/v1/libraries/v/search", json={"embedding": probe["embedding"], "k": 1}).json()["results"]
    assert top[0]["document_id"] == probe["id"]


def write_until_refused(http: httpx.Client, acknowledged: dict, refused: set, prefix: str) -> httpx.Response:
    """Batch writes until one is refused (a full disk may still hold a few pages of WAL)."""
    for attempt in range(50):
        body = batch(f"{prefix}{attempt}", seed=1000 + attempt)
        response = http.post("/v1/libraries/v/documents/batch", json=body)
        ids = {d["id"]: d for d in body["documents"]}
        if response.status_code == 201:
            acknowledged.update(ids)
            continue
        refused.update(ids)
        return response
    raise AssertionError("50 batches fitted on a disk that was full")


def integrity(path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def test_full_disk_refuses_writes_with_507_serves_reads_and_recovers(start_server, tmp_path):
    with tmpfs(tmp_path / "disk", size_mib=24) as disk:
        server = start_server(disk / "data")
        acknowledged: dict[str, dict] = {}
        refused: set[str] = set()
        with httpx.Client(base_url=server.url, timeout=60) as http:
            assert http.post("/v1/libraries", json={"name": "v", "dimension": DIM, "metric": "l2"}).status_code == 201
            body = batch("before", seed=1)
            assert http.post("/v1/libraries/v/documents/batch", json=body).status_code == 201
            acknowledged.update((d["id"], d) for d in body["documents"])

            filler = fill(disk)
            failed = write_until_refused(http, acknowledged, refused, "full")
            assert failed.status_code == 507, failed.text
            assert failed.json()["error"]["type"] == "storage_failure"
            assert "disk is full" in failed.json()["error"]["message"]
            single = http.post("/v1/libraries/v/documents", json={"id": "one", "embedding": [1.0] * DIM})
            if single.status_code == 507:
                refused.add("one")
            else:  # a single row may still fit in a page the WAL already holds
                assert single.status_code == 201
                acknowledged["one"] = {"id": "one", "text": None, "embedding": [1.0] * DIM}
            # Reads keep working, and show exactly the acknowledged writes.
            assert http.get("/ready").status_code == 200
            check_documents(http, acknowledged, refused)
            # Library DDL either fits or is refused whole.
            created = http.post("/v1/libraries", json={"name": "w", "dimension": 4})
            assert created.status_code in (201, 507), created.text
            names = [lib["name"] for lib in http.get("/v1/libraries").json()["libraries"]]
            assert ("w" in names) == (created.status_code == 201)

            # Space returns: the next write works, at once.
            filler.unlink()
            body = batch("after", seed=2)
            assert http.post("/v1/libraries/v/documents/batch", json=body).status_code == 201
            acknowledged.update((d["id"], d) for d in body["documents"])
            check_documents(http, acknowledged, refused)
        server.stop()
        assert integrity(disk / "data" / "arrwdb.sqlite3") == "ok"
        again = start_server(disk / "data")
        with httpx.Client(base_url=again.url, timeout=60) as http:
            check_documents(http, acknowledged, refused)
        again.stop()


def test_read_only_disk_refuses_writes_with_507_and_serves_reads(start_server, tmp_path):
    image, mountpoint = tmp_path / "disk.img", tmp_path / "mnt"
    with ext4_image(image, mountpoint, size_mib=64):
        server = start_server(mountpoint / "data")
        acknowledged: dict[str, dict] = {}
        refused: set[str] = set()
        with httpx.Client(base_url=server.url, timeout=60) as http:
            assert http.post("/v1/libraries", json={"name": "v", "dimension": DIM, "metric": "l2"}).status_code == 201
            body = batch("before", seed=3)
            assert http.post("/v1/libraries/v/documents/batch", json=body).status_code == 201
            acknowledged.update((d["id"], d) for d in body["documents"])

            fail_read_only(mountpoint)  # the kernel remounts it read-only under the open store
            failed = write_until_refused(http, acknowledged, refused, "ro")
            assert failed.status_code == 507, failed.text
            assert failed.json()["error"]["type"] == "storage_failure"
            deleted = http.delete(f"/v1/libraries/v/documents/{next(iter(acknowledged))}")
            assert deleted.status_code == 507
            assert http.post("/v1/libraries", json={"name": "w", "dimension": 4}).status_code == 507
            assert http.delete("/v1/libraries/v").status_code == 507
            assert http.get("/ready").status_code == 200
            check_documents(http, acknowledged, refused)
        server.stop()
        # The operator repairs the disk (here: unmount, and mount again, which replays the journal).
        # The in-process server's reader connections are freed by the garbage collector; until then
        # SQLite keeps their files open, and the filesystem busy.
        gc.collect()
        unmount(mountpoint)
        mount_ext4(image, mountpoint)
        assert integrity(mountpoint / "data" / "arrwdb.sqlite3") == "ok"
        again = start_server(mountpoint / "data")
        with httpx.Client(base_url=again.url, timeout=60) as http:
            check_documents(http, acknowledged, refused)
            body = batch("repaired", seed=4)
            assert http.post("/v1/libraries/v/documents/batch", json=body).status_code == 201
        again.stop()
