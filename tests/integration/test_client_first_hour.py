"""The Python client and `arrwdb ingest` as a newcomer meets them, against a real server: the README
example runs twice, 2,000 documents go up in one call, the key comes from ARRWDB_API_KEY, a 401 says
how to pass a key, and --create makes a missing library."""

from __future__ import annotations

import pytest

from arrwdb.cli import main
from arrwdb.client.client import ApiError, AsyncClient, Client

KEY = "first-hour-key"


def _readme_example(url: str) -> list[dict]:
    with Client(url) as db:
        db.get_or_create_library("notes")
        db.add_documents("notes", [{"id": "milk", "text": "buy milk"}, {"id": "plumber", "text": "call the plumber"}])
        return db.search("notes", query="groceries", k=1)


def test_the_readme_example_runs_twice(server):
    first = _readme_example(server.url)
    again = _readme_example(server.url)
    assert [hit["document_id"] for hit in first] == ["milk"]
    assert [hit["document_id"] for hit in again] == ["milk"]
    with server.client() as db:
        assert [library["name"] for library in db.list_libraries()] == ["notes"]
        assert db.statistics("notes")["document_count"] == 2
        with pytest.raises(ApiError) as info:
            db.create_library("notes")  # create_library itself still refuses a taken name
        assert info.value.status == 409
        with pytest.raises(ValueError, match="metric is 'cosine', not 'l2'"):
            db.get_or_create_library("notes", metric="l2")


def test_add_documents_uploads_2000_documents_in_batches(server):
    documents = [{"id": f"p{i}", "embedding": [1.0, float(i), 0.5, -1.0], "metadata": {"i": i}} for i in range(2000)]
    with server.client() as db:
        db.create_library("points", dimension=4, metric="l2")
        assert db.add_documents("points", documents, progress=True) == [d["id"] for d in documents]
        assert db.statistics("points")["document_count"] == 2000
        hits = db.search("points", embedding=[1.0, 1234.0, 0.5, -1.0], k=1)
        assert hits[0]["document_id"] == "p1234"


async def _async_upload(url: str) -> list[str]:
    async with AsyncClient(url) as db:
        await db.get_or_create_library("a", dimension=2)
        await db.get_or_create_library("a", dimension=2)
        return await db.add_documents("a", [{"embedding": [1.0, float(i)]} for i in range(1500)], batch_size=700)


def test_async_client_does_the_same(server):
    import asyncio

    ids = asyncio.run(_async_upload(server.url))
    assert len(ids) == len(set(ids)) == 1500
    with server.client() as db:
        assert db.statistics("a")["document_count"] == 1500


def test_key_from_the_environment_and_401_that_says_how(start_server, monkeypatch):
    server = start_server(api_keys=KEY)
    monkeypatch.delenv("ARRWDB_API_KEY", raising=False)
    with Client(server.url) as db, pytest.raises(ApiError) as info:
        db.list_libraries()
    assert info.value.status == 401
    assert "no API key was sent" in info.value.message and "ARRWDB_API_KEY" in info.value.message
    monkeypatch.setenv("ARRWDB_API_KEY", KEY)
    with Client(server.url) as db:
        assert db.get_or_create_library("keyed")["name"] == "keyed"


def test_ingest_with_create_and_its_messages(start_server, tmp_path, monkeypatch, capsys):
    server = start_server(api_keys=KEY)
    path = tmp_path / "docs.jsonl"
    path.write_text(
        "".join(f'{{"id": "d{i}", "embedding": [0.5, {i}.0], "metadata": {{"i": {i}}}}}\n' for i in range(5))
    )
    ingest = ["ingest", str(path), "--url", server.url, "--no-progress"]
    monkeypatch.delenv("ARRWDB_API_KEY", raising=False)

    assert main([*ingest, "--library", "fresh"]) == 1
    error = capsys.readouterr().err
    assert "401 unauthorized" in error and "--api-key" in error and "ARRWDB_API_KEY" in error

    monkeypatch.setenv("ARRWDB_API_KEY", KEY)
    with server.client(KEY) as db:
        db.create_library("two", dimension=2)
    assert main([*ingest, "--library", "missing"]) == 1
    assert "add --create to create library 'missing'" in capsys.readouterr().err

    # --create makes a library with the server's defaults (the model's 384 dimensions): 2-d documents
    # go to a library made beforehand, and --create on an existing library just uses it.
    assert main([*ingest, "--library", "two", "--create"]) == 0
    assert "ingested 5 documents" in capsys.readouterr().out
    (tmp_path / "t.jsonl").write_text('{"id": "t", "text": "a short note"}\n')
    assert (
        main(
            [
                "ingest",
                str(tmp_path / "t.jsonl"),
                "--url",
                server.url,
                "--library",
                "texts",
                "--create",
                "--no-progress",
            ]
        )
        == 0
    )
    with server.client(KEY) as db:
        assert db.statistics("two")["document_count"] == 5
        assert db.get_library("texts")["dimension"] == 384
