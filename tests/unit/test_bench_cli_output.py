"""`arrwdb bench embed --output` and `coldstart --output` write the report they print as JSON (the
files docs/PERFORMANCE.md cites under docs/results/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arrwdb.bench import cli, coldstart, embed


def test_embed_output_writes_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = {"benchmark": "embed", "model": "m", "device": "cpu", "dtype": "float32", "figures": []}
    monkeypatch.setattr(embed, "run_embed", lambda *args: report)
    target = tmp_path / "results" / "embed.json"
    assert cli.main(["embed", "--batches", "1", "--seconds", "0.1", "--output", str(target)]) == 0
    assert json.loads(target.read_text()) == report


def test_coldstart_output_writes_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = {"benchmark": "coldstart", "ready_s": 1.5, "first_ann_query_s": None}
    monkeypatch.setattr(coldstart, "run_coldstart", lambda data_dir, library: report)
    target = tmp_path / "coldstart.json"
    assert cli.main(["coldstart", str(tmp_path / "store"), "--library", "cold", "--output", str(target)]) == 0
    assert json.loads(target.read_text()) == report


def test_without_output_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coldstart, "run_coldstart", lambda data_dir, library: {"benchmark": "coldstart"})
    monkeypatch.chdir(tmp_path)
    assert cli.main(["coldstart", str(tmp_path / "store"), "--library", "cold"]) == 0
    assert list(tmp_path.iterdir()) == []
