"""The arrwdb command line: flag parsing, settings precedence, dispatch, and import weight."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

import arrwdb.client.client
from arrwdb.cli import build_parser, main, settings_from_args

ENV_VARS = ("ARRWDB_HOST", "ARRWDB_PORT", "ARRWDB_DATA_DIR", "ARRWDB_DEVICE", "ARRWDB_API_KEY", "ARRWDB_URL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def test_serve_defaults_come_from_settings() -> None:
    settings = settings_from_args(build_parser().parse_args(["serve"]))
    assert (settings.host, settings.port, settings.data_dir, settings.device) == (
        "127.0.0.1",
        8000,
        Path("data"),
        "auto",
    )


def test_serve_overrides_only_given_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARRWDB_PORT", "9123")
    monkeypatch.setenv("ARRWDB_DEVICE", "cpu")
    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--data-dir", "/tmp/store"])
    settings = settings_from_args(args)
    assert settings.host == "0.0.0.0"
    assert settings.data_dir == Path("/tmp/store")
    assert settings.port == 9123  # not given on the command line: the environment wins
    assert settings.device == "cpu"


def test_serve_flag_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARRWDB_PORT", "9123")
    settings = settings_from_args(build_parser().parse_args(["serve", "--port", "7000", "--device", "cuda"]))
    assert (settings.port, settings.device) == (7000, "cuda")


def test_serve_rejects_unknown_device(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--device", "tpu"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_serve_hands_settings_to_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[Any] = []
    fake_app = types.ModuleType("arrwdb.server.serve")
    fake_app.serve = received.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "arrwdb.server.serve", fake_app)
    monkeypatch.setenv("ARRWDB_HOST", "127.0.0.2")
    assert main(["serve", "--port", "0"]) == 0
    assert len(received) == 1
    assert (received[0].host, received[0].port) == ("127.0.0.2", 0)


def test_serve_bad_environment_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ARRWDB_PORT", "not-a-port")
    assert main(["serve"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("arrwdb: error: invalid settings: port")
    assert err.count("\n") == 1


def test_serve_missing_module_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "arrwdb.server.serve", None)  # None in sys.modules: import fails
    assert main(["serve"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("arrwdb: error: cannot start the server:") and err.count("\n") == 1


def test_ingest_arguments() -> None:
    args = build_parser().parse_args(["ingest", "f.jsonl", "--library", "docs", "--batch", "50"])
    assert (args.file, args.library, args.batch, args.url) == (
        Path("f.jsonl"),
        "docs",
        50,
        "http://127.0.0.1:8000",
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ingest", "f.jsonl", "--library", "docs", "--batch", "1001"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ingest", "f.jsonl"])  # --library is required
    assert build_parser().parse_args(["ingest", "f.jsonl", "--library", "d", "--create"]).create
    assert "ARRWDB_API_KEY" in build_parser()._subparsers._group_actions[0].choices["ingest"].format_help()


def mock_client_class(handler: Any) -> type[arrwdb.client.client.Client]:
    """A Client whose transport is a MockTransport, recording the constructor's key and URL."""

    class MockClient(arrwdb.client.client.Client):
        seen: ClassVar[dict[str, Any]] = {}

        def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
            MockClient.seen.update(url=url, api_key=api_key)
            super().__init__(url, api_key=api_key, timeout=timeout, transport=httpx.MockTransport(handler))

    return MockClient


def test_ingest_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"ids": ["a", "b", "c"]})

    client_class = mock_client_class(handler)
    monkeypatch.setattr(arrwdb.client.client, "Client", client_class)
    monkeypatch.setenv("ARRWDB_API_KEY", "env-key")
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n{"text": "c"}\n')
    code = main(["ingest", str(path), "--library", "docs", "--url", "http://h:1", "--no-progress"])
    assert code == 0
    assert client_class.seen == {"url": "http://h:1", "api_key": None}  # None: the client reads the env
    assert [r.url.path for r in seen] == ["/v1/libraries/docs/documents/batch"]
    assert seen[0].headers["x-api-key"] == "env-key"
    assert "ingested 3 documents in 1 batches" in capsys.readouterr().out


def test_ingest_api_error_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {"error": {"type": "not_found", "message": "library 'nope' not found"}}
    monkeypatch.setattr(arrwdb.client.client, "Client", mock_client_class(lambda r: httpx.Response(404, json=body)))
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "a"}\n')
    assert main(["ingest", str(path), "--library", "nope", "--api-key", "k", "--no-progress"]) == 1
    assert capsys.readouterr().err == (
        "arrwdb: error: server answered 404 not_found: library 'nope' not found; add --create to create library 'nope'\n"
    )


def test_ingest_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", str(tmp_path / "missing.jsonl"), "--library", "docs", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("arrwdb: error:") and "missing.jsonl" in err and err.count("\n") == 1


def test_ingest_unreachable_server_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    monkeypatch.setattr(arrwdb.client.client, "Client", mock_client_class(refuse))
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "a"}\n')
    assert main(["ingest", str(path), "--library", "docs", "--no-progress"]) == 1
    assert capsys.readouterr().err == "arrwdb: error: cannot reach http://127.0.0.1:8000: connection refused\n"


def test_bench_forwards_remaining_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[list[str]] = []
    fake = types.ModuleType("arrwdb.bench.cli")
    fake.main = lambda argv: received.append(argv) or 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "arrwdb.bench.cli", fake)
    assert main(["bench", "--help", "run", "-x", "1"]) == 3
    assert received == [["--help", "run", "-x", "1"]]


def test_import_does_not_load_torch_or_the_server() -> None:
    code = "import arrwdb.cli, arrwdb.client.client, sys; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
    code = "import arrwdb.cli, sys; print(sorted(m for m in sys.modules if m.startswith('arrwdb.server')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_serve_on_an_unreadable_store_is_one_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "arrwdb.sqlite3").write_text("not a database")
    assert main(["serve", "--data-dir", str(tmp_path), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("arrwdb: error: cannot read the store") and err.count("\n") == 1
