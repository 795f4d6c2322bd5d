"""arrwdb.client.ingest against httpx.MockTransport: batching, order, validation and retry."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

import arrwdb.client.ingest as ingest_module
from arrwdb.client.client import ApiError, Client
from arrwdb.client.ingest import IngestError, ingest_jsonl

URL = "http://arrwdb.test"


class BatchServer:
    """Accepts documents/batch requests, records their documents, can refuse the first N."""

    def __init__(self, refusals: list[httpx.Response] | None = None) -> None:
        self.batches: list[list[dict]] = []
        self.refusals = list(refusals or [])
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        assert request.method == "POST"
        assert request.url.path == "/v1/libraries/docs/documents/batch"
        if self.refusals:
            return self.refusals.pop(0)
        documents = orjson.loads(request.read())["documents"]
        self.batches.append(documents)
        return httpx.Response(201, json={"ids": [doc.get("id", "gen") for doc in documents]})

    def client(self) -> Client:
        return Client(URL, transport=httpx.MockTransport(self))


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def docs(count: int) -> list[str]:
    return [orjson.dumps({"id": f"d{i}", "text": f"text {i}"}).decode() for i in range(count)]


def test_batches_have_the_right_size_in_input_order(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", docs(7))
    server = BatchServer()
    report = ingest_jsonl(path, "docs", server.client(), batch_size=3, progress=False)
    assert [len(batch) for batch in server.batches] == [3, 3, 1]
    assert [doc["id"] for batch in server.batches for doc in batch] == [f"d{i}" for i in range(7)]
    assert (report.documents, report.batches) == (7, 3)
    assert report.seconds >= 0


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    lines = docs(3)
    path = write_jsonl(tmp_path / "in.jsonl", ["", lines[0], "   ", lines[1], "", lines[2], ""])
    server = BatchServer()
    report = ingest_jsonl(path, "docs", server.client(), batch_size=2, progress=False)
    assert [[doc["id"] for doc in batch] for batch in server.batches] == [["d0", "d1"], ["d2"]]
    assert report.documents == 3


def test_empty_file_sends_nothing(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", ["", ""])
    server = BatchServer()
    report = ingest_jsonl(path, "docs", server.client(), progress=False)
    assert (server.calls, report.documents, report.batches) == (0, 0, 0)


def test_malformed_line_names_line_and_sends_nothing_of_its_batch(tmp_path: Path) -> None:
    lines = docs(6)
    lines[4] = '{"id": "broken", "text": '  # line 5, inside the second batch of 3
    path = write_jsonl(tmp_path / "in.jsonl", lines)
    server = BatchServer()
    with pytest.raises(IngestError, match=r"in\.jsonl:5: invalid JSON"):
        ingest_jsonl(path, "docs", server.client(), batch_size=3, progress=False)
    # The first batch was committed; no document of the broken batch (d3, d5) reached the server.
    assert [[doc["id"] for doc in batch] for batch in server.batches] == [["d0", "d1", "d2"]]


def test_line_that_is_not_an_object_is_rejected(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [*docs(1), "[1, 2]"])
    server = BatchServer()
    with pytest.raises(IngestError, match=r":2: expected a JSON object"):
        ingest_jsonl(path, "docs", server.client(), batch_size=10, progress=False)
    assert server.calls == 0


def test_429_is_retried_after_retry_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(ingest_module, "_sleep", sleeps.append)
    overloaded = {"error": {"type": "overloaded", "message": "queue full"}}
    refusals = [
        httpx.Response(429, json=overloaded, headers={"Retry-After": "3"}),
        httpx.Response(503, json={"error": {"type": "not_ready", "message": "loading"}}),
    ]
    path = write_jsonl(tmp_path / "in.jsonl", docs(4))
    server = BatchServer(refusals)
    report = ingest_jsonl(path, "docs", server.client(), batch_size=2, progress=False)
    assert sleeps[0] == 3.0  # the server's Retry-After is honoured
    assert len(sleeps) == 2 and sleeps[1] > 0  # a 503 without Retry-After backs off
    assert [[doc["id"] for doc in batch] for batch in server.batches] == [["d0", "d1"], ["d2", "d3"]]
    assert (report.documents, report.batches, server.calls) == (4, 2, 4)


def test_retries_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_module, "_sleep", lambda seconds: None)
    refusal = httpx.Response(429, headers={"Retry-After": "0"})
    path = write_jsonl(tmp_path / "in.jsonl", docs(1))
    server = BatchServer([refusal] * 10)
    with pytest.raises(ApiError) as info:
        ingest_jsonl(path, "docs", server.client(), progress=False, max_retries=3)
    assert info.value.status == 429
    assert server.calls == 4  # the first try and three retries


def test_other_errors_are_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_module, "_sleep", lambda seconds: pytest.fail("must not sleep"))
    invalid = httpx.Response(422, json={"error": {"type": "invalid_input", "message": "bad dimension"}})
    path = write_jsonl(tmp_path / "in.jsonl", docs(2))
    server = BatchServer([invalid])
    with pytest.raises(ApiError, match="bad dimension"):
        ingest_jsonl(path, "docs", server.client(), progress=False)
    assert server.calls == 1


@pytest.mark.parametrize("size", [0, 1001])
def test_batch_size_is_bounded(tmp_path: Path, size: int) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", docs(1))
    with pytest.raises(ValueError, match="batch_size"):
        ingest_jsonl(path, "docs", BatchServer().client(), batch_size=size, progress=False)
