"""The OpenAPI schema says what the server does: schemathesis, run as a user would run it
(``schemathesis run URL/openapi.json --checks all``, its default phases: examples, coverage, fuzzing
and stateful), finds nothing against a real server on a loopback port, with auth off and with auth on.

Every check is on, for every operation: every status answered is documented, with the documented
body, content type and headers; requests the schema accepts are accepted, those it refuses are
refused; a 405 lists the methods the path serves; a resource just created is found; a route that
declares a key refuses a request without one.  The run reads the repository's ``schemathesis.toml``,
as a run started in the clone does: it adds 422 to what a schema-valid request may get on the four
routes where the library decides (a vector's dimension, cosine's non-zero rule, group_by's field).
The examples per operation are few (``ARRWDB_SCHEMA_EXAMPLES``) to keep the test short; a longer run
is the same command with a larger ``--max-examples``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from arrwdb.bench.model_dirs import save_cross_encoder

KEY, ADMIN = "schema-tenant-key", "schema-admin-key"
EXAMPLES = os.environ.get("ARRWDB_SCHEMA_EXAMPLES", "8")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
REPOSITORY_CONFIG = Path(__file__).resolve().parents[2] / "schemathesis.toml"


def run_schemathesis(url: str, tmp_path: Path, auth: bool) -> str:
    """Run the CLI as a user would, with every check on; its output if it found anything, else an
    empty string."""
    config = tmp_path / "schemathesis.toml"
    # The tenant key for the tenant routes, the admin key for /v1/admin (their security schemes).
    keys = f'[auth.openapi.ApiKey]\napi_key = "{KEY}"\n[auth.openapi.AdminKey]\napi_key = "{ADMIN}"\n'
    config.write_text(REPOSITORY_CONFIG.read_text() + (keys if auth else ""))
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        EXAMPLES,
        "--seed",
        "27",
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--no-color",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    if result.returncode == 0 and "generated" in result.stdout:
        return ""
    failures = result.stdout[result.stdout.find("FAILURES") :]  # the whole output if none is listed
    return f"{' '.join(command)}\n{failures[:20000]}{result.stderr[-2000:]}"


@pytest.mark.parametrize("auth", [False, True], ids=["auth-off", "auth-on-reranker"])
def test_schemathesis_finds_nothing(start_server, tmp_path: Path, auth: bool) -> None:
    """With auth off and no reranker; with auth on (tenant and admin keys) and a reranker."""
    if auth:
        reranker = save_cross_encoder(tmp_path / "ms-marco-tiny", hidden=32, layers=1, heads=2, seed=3)
        server = start_server(api_keys=KEY, admin_key=ADMIN, rerank_model=str(reranker))
    else:
        server = start_server()
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert bool(schema["paths"]["/v1/libraries"]["get"].get("security")) == auth  # a key only when needed
    # The reranker's route and the search's rerank field exist only with a reranker configured.
    assert ("/v1/rerank" in schema["paths"]) == auth
    assert ("rerank" in schema["components"]["schemas"]["Query"]["properties"]) == auth
    assert len(schema["paths"]) >= 15
    found = run_schemathesis(server.url, tmp_path, auth)
    assert not found, found


def test_405_lists_every_method_of_the_path(start_server) -> None:
    server = start_server()
    answer = httpx.request("OPTIONS", f"{server.url}/v1/libraries")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, POST"
    assert answer.json()["error"]["type"] == "method_not_allowed"
    answer = httpx.request("PUT", f"{server.url}/v1/libraries/x/documents/y")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "DELETE, GET, PATCH"
    answer = httpx.request("OPTIONS", f"{server.url}/v1/libraries/x/documents/batch")  # the bulk route's path
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"


def test_a_whole_number_is_an_integer(start_server) -> None:
    """JSON Schema's integer is any number without a fraction, so 2.0 is accepted where the schema
    says integer (schemathesis sends both spellings); 2.5 is not."""
    server = start_server()
    url = server.url
    created = httpx.post(
        f"{url}/v1/libraries", json={"name": "w", "dimension": 2.0, "index_type": "ivf", "index_params": {"nlist": 4.0}}
    )
    assert created.status_code == 201, created.text
    assert created.json()["dimension"] == 2 and created.json()["index_params"] == {"nlist": 4}
    httpx.post(f"{url}/v1/libraries/w/documents", json={"id": "a", "embedding": [1.0, 0.5]}).raise_for_status()
    search = httpx.post(f"{url}/v1/libraries/w/search", json={"embedding": [1.0, 0.5], "k": 3.0})
    assert search.status_code == 200, search.text
    assert [hit["document_id"] for hit in search.json()["results"]] == ["a"]
    refused = httpx.post(f"{url}/v1/libraries/w/search", json={"embedding": [1.0, 0.5], "k": 2.5})
    assert refused.status_code == 422 and refused.json()["error"]["type"] == "invalid_input"
    tokens = httpx.post(f"{url}/v1/embeddings", json={"input": [101.0, 7592.0, 102.0]}, timeout=60)
    assert tokens.status_code == 200, tokens.text
    by_ints = httpx.post(f"{url}/v1/embeddings", json={"input": [101, 7592, 102]}, timeout=60)
    assert tokens.json()["data"][0]["embedding"] == by_ints.json()["data"][0]["embedding"]
    assert httpx.post(f"{url}/v1/embeddings", json={"input": [101.5]}).status_code == 422


def test_a_patch_holds_at_most_256_metadata_keys(start_server) -> None:
    """The schema's maxProperties: those a patch removes count too."""
    server = start_server()
    url = server.url
    httpx.post(f"{url}/v1/libraries", json={"name": "p", "dimension": 2}).raise_for_status()
    httpx.post(f"{url}/v1/libraries/p/documents", json={"id": "a", "embedding": [1.0, 0.5]}).raise_for_status()
    patch = {f"k{i}": (None if i % 2 else i) for i in range(257)}
    answer = httpx.patch(f"{url}/v1/libraries/p/documents/a", json={"metadata": patch})
    assert answer.status_code == 422 and "256" in answer.json()["error"]["message"]
    patch.pop("k256")
    assert httpx.patch(f"{url}/v1/libraries/p/documents/a", json={"metadata": patch}).status_code == 200
