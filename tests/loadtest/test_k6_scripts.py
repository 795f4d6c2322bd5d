"""The k6 scripts, checked without k6: each one parses (acorn, from npm), and every endpoint, query
parameter, JSON body field and response field it uses exists in the server's OpenAPI schema."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from arrwdb.config import Settings
from arrwdb.server.app import create_app
from tests.loadtest.openapi_check import OpenApi

ROOT = Path(__file__).resolve().parents[2]
K6_DIR = ROOT / "loadtest" / "k6"
EXTRACT = K6_DIR / "tools" / "extract.mjs"
SCENARIOS = ("load", "spike", "stress", "soak")
HEADERS = ["X-Queue-Ms", "X-Compute-Ms", "X-Batch-Size"]


def install_parser() -> None:
    """acorn into loadtest/k6/node_modules (gitignored), pinned by its package-lock.json."""
    if (K6_DIR / "node_modules" / "acorn" / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to check the k6 scripts (it installs the acorn parser)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=K6_DIR, check=True, timeout=300)


@pytest.fixture(scope="module")
def extract():
    install_parser()

    def run(*files: Path) -> list[dict[str, Any]]:
        out = subprocess.run(
            ["node", str(EXTRACT), *map(str, files)], capture_output=True, text=True, check=True, timeout=60
        )
        return json.loads(out.stdout)

    return run


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> OpenApi:
    return OpenApi(create_app(Settings(data_dir=tmp_path_factory.mktemp("openapi"))).openapi())


@pytest.fixture(scope="module")
def scripts(extract) -> dict[str, dict[str, Any]]:
    files = sorted(K6_DIR.glob("*.js"))
    return {Path(f["file"]).stem: f for f in extract(*files)}


def test_every_scenario_is_there_and_parses(scripts):
    assert set(SCENARIOS) | {"lib"} <= set(scripts)
    assert {name: s["problems"] for name, s in scripts.items() if s["problems"]} == {}


def test_every_request_matches_the_openapi_schema(scripts, api):
    requests = [(name, r) for name, s in scripts.items() for r in s["requests"]]
    used = {(r["method"], r["path"]) for _, r in requests}
    assert {("POST", "/v1/libraries/{}/search"), ("POST", "/v1/libraries/{}/documents")} <= used
    problems = [p for name, r in requests for p in api.check_request(r, f"{name}.js:{r['line']}")]
    assert problems == []


def test_scenarios_have_stages_and_the_guides_thresholds(scripts):
    for name in SCENARIOS:
        assert "default" in scripts[name]["exports"], name
        assert {"stages", "thresholds"} <= set(scripts[name]["options"] or []), name
    assert scripts["lib"]["thresholds"] == {"http_req_duration": ["p(95)<500"], "http_req_failed": ["rate<0.01"]}


def test_the_batching_headers_are_recorded_as_trends(scripts):
    assert scripts["lib"]["headers"] == HEADERS
    assert len(scripts["lib"]["trends"]) == 3


def test_the_check_catches_wrong_paths_fields_and_unanalysable_requests(extract, api, tmp_path):
    bad = tmp_path / "bad.js"
    bad.write_text(
        "import http from 'k6/http';\n"
        "const BASE_URL = 'x';\n"
        "export default function () {\n"
        "  const res = http.post(`${BASE_URL}/v1/libraries/${1}/serch`, JSON.stringify({ query: 'a' }));\n"
        "  const ok = http.post(`${BASE_URL}/v1/libraries/${1}/search`, JSON.stringify({ qury: 'a', params: { ef: 1 } }));\n"
        "  ok.json('hits');\n"
        "  http.post(`${BASE_URL}/v1/libraries`, JSON.stringify({ dimension: 3 }));\n"
        "  http.get(`${BASE_URL}/v1/libraries/${1}/documents?limt=5`);\n"
        "  http.get('http://elsewhere/v1/embed');\n"
        "}\n"
    )
    (script,) = extract(bad)
    assert script["problems"] == [f"{bad}:9: the URL is not a template literal starting with ${{BASE_URL}}"]
    problems = "\n".join(p for r in script["requests"] for p in api.check_request(r, "bad.js"))
    assert "/serch: no such path" in problems
    assert "unknown field 'qury'" in problems
    assert "unknown field 'ef'" in problems
    assert "response field 'hits'" in problems
    assert "required field 'name' missing" in problems
    assert "unknown query parameter 'limt'" in problems
