"""Property-based fuzzing of every endpoint from the server's own OpenAPI schema (schemathesis).

For every operation, schemathesis generates valid requests (positive mode) and requests that break
the schema (negative mode), with random path parameters and with the path aimed at a real library.
Every answer must come within the client timeout (no hang), must not be a 5xx, and every error must
have the API.md shape.  ``ARRWDB_FUZZ_EXAMPLES`` sets the examples per operation, mode and path (the
long run recorded in docs/RELIABILITY.md used 300).
"""

from __future__ import annotations

import os
from collections import Counter

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

KEY, ADMIN = "fuzz-tenant-key", "fuzz-admin-key"
EXAMPLES = int(os.environ.get("ARRWDB_FUZZ_EXAMPLES", "10"))
LIBRARIES = (
    {"name": "fz", "dimension": 2, "metric": "l2"},
    {"name": "fzh", "dimension": 2, "index_type": "hnsw"},
    {"name": "fzt"},  # the model's dimension: texts are embedded
)


def ensure_libraries(url: str) -> None:
    """The fuzzer may delete a library; put it back so the next operation meets it again."""
    with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=60) as http:
        existing = {lib["name"] for lib in http.get("/v1/libraries").json()["libraries"]}
        for body in LIBRARIES:
            if body["name"] not in existing:
                http.post("/v1/libraries", json=body).raise_for_status()
                http.post(f"/v1/libraries/{body['name']}/documents", json=_seed(body)).raise_for_status()


def _seed(library: dict) -> dict:
    if library.get("dimension") == 2:
        return {"id": "seed", "embedding": [0.5, 1.0], "metadata": {"k": "v", "n": 1}}
    return {"id": "seed", "text": "a seed document", "metadata": {"k": "v", "n": 1}}


def test_no_input_gives_a_5xx_or_a_hang(start_server):
    server = start_server(api_keys=KEY, admin_key=ADMIN)
    url = server.url
    ensure_libraries(url)
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        headers = {"X-API-Key": ADMIN if operation.path.startswith("/v1/admin") else KEY}
        aims = [None]
        if "{library}" in operation.path:
            aims += [{"library": "fz"}, {"library": "fzt"}, {"library": "fzh"}]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for aim in aims:
                ensure_libraries(url)
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=aim)
                fuzz(strategy, url, headers, statuses, failures)
    total = sum(statuses.values())
    print(f"fuzz: {total} cases, statuses {dict(sorted(statuses.items()))}")
    assert failures == [], "\n".join(failures[:20])
    assert total >= 20 * len(operations)
    assert statuses[200] + statuses[201] + statuses[204] > 0  # the valid half does reach the handlers


def fuzz(strategy, url: str, headers: dict, statuses: Counter[int], failures: list[str]) -> None:
    """Run EXAMPLES cases of one strategy (one operation, mode and path aim) against the server."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def call(case) -> None:
        try:
            response = case.call(base_url=url, headers=headers, timeout=60)
        except Exception as exc:  # a timeout or a dropped connection: a hang or a crash
            failures.append(f"{case.operation.label}: no answer: {exc!r}"[:500])
            return
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(f"{case.as_curl_command()} -> {response.status_code} {response.text[:300]}")
        elif response.status_code >= 400 and not _error_shaped(response):
            failures.append(f"{case.as_curl_command()} -> {response.status_code}: not an API.md error body")

    try:
        call()
    except Unsatisfiable:
        pass  # nothing to generate: negative mode on an operation without parameters or body


def _error_shaped(response) -> bool:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error.get("type"), str) and isinstance(error.get("message"), str)
