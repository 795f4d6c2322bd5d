"""Error messages as a newcomer meets them, against a real server: one style of field path for body
fields, batch items and request parameters; metadata errors say what a value may be; a bad
embedding_base64 is named as such; the 413 names its setting; an unknown operator lists the known."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

VALUES = "must be a string, a number, a boolean or a list of strings"


def _b64(values: list[float]) -> str:
    return base64.b64encode(np.array(values, "<f4").tobytes()).decode()


@pytest.fixture
def url(server) -> str:
    for body in ({"name": "p", "dimension": 3}, {"name": "t"}):
        assert httpx.post(f"{server.url}/v1/libraries", json=body).status_code == 201
    return server.url


def _message(url: str, method: str, path: str, body: object = None, status: int = 422) -> str:
    response = httpx.request(method, f"{url}{path}", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == ("invalid_input" if status == 422 else error["type"])
    return error["message"]


def test_nested_metadata_says_what_values_may_be(url):
    doc = {"embedding": [1, 2, 3], "metadata": {"nested": {"a": 1}}}
    single = _message(url, "POST", "/v1/libraries/p/documents", doc)
    assert single.startswith(f"metadata.nested {VALUES}, not an object: metadata is flat")
    assert "'nested.a'" in single
    batch = _message(url, "POST", "/v1/libraries/p/documents/batch", {"documents": [{"embedding": [1, 2, 3]}, doc]})
    assert batch.startswith(f"documents[1].metadata.nested {VALUES}")
    null = _message(url, "POST", "/v1/libraries/p/documents", {"embedding": [1, 2, 3], "metadata": {"n": None}})
    assert null == f"metadata.n {VALUES}, not null (to leave the key out, omit it)"
    tags = _message(url, "POST", "/v1/libraries/p/documents", {"embedding": [1, 2, 3], "metadata": {"t": ["a", 1]}})
    assert tags == "metadata.t[1] must be a string, got number"


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/v1/libraries/p/search", {"embedding": [1, 2, 3], "k": 0}, "k must be an integer between 1 and 1000"),
        ("/v1/libraries/p/search", {"embedding": [1, 2, 3], "k": "x"}, "k: Input should be a valid integer"),
        (
            "/v1/libraries/p/search/batch",
            {"queries": [{"embedding": [1, 2, 3], "k": 0}]},
            "queries[0].k must be an integer between 1 and 1000",
        ),
        (
            "/v1/libraries/p/search/batch",
            {"queries": [{"embedding": [1, 2, 3]}, {"embedding": [1, 2, 3], "k": "x"}]},
            "queries[1].k: Input should be a valid integer",
        ),
        ("/v1/libraries/p/search", {"embedding": [1, 2, 3], "query": "x"}, "the query: give exactly one of query"),
        ("/v1/libraries/p/search", {"query": " "}, "query must not be empty"),
        ("/v1/libraries/p/documents", {"id": "bad id", "embedding": [1, 2, 3]}, "id must be 1 to 256 characters"),
        (
            "/v1/libraries/p/documents/batch",
            {"documents": [{"embedding": [1, 2, 3]}, {"embedding": [1, "x", 3]}]},
            "documents[1].embedding[1]: Input should be a valid number",
        ),
        ("/v1/libraries/p/documents", {"embedding": [1, 2]}, "embedding has dimension 2, the library's is 3"),
        ("/v1/libraries/t/documents", {"title": "no text"}, "the document needs a non-empty text or an embedding"),
    ],
)
def test_one_style_of_field_path(url, path, body, expected):
    assert _message(url, "POST", path, body).startswith(expected)


def test_request_parameters_are_named_by_themselves(url):
    assert _message(url, "GET", "/v1/libraries/p/documents?limit=0").startswith("limit: ")


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/v1/libraries/p/search", {"embedding_base64": _b64([1, 2])}, "embedding_base64 has dimension 2"),
        (
            "/v1/libraries/p/search/batch",
            {"queries": [{"embedding_base64": _b64([1, 2])}]},
            "queries[0].embedding_base64 has dimension 2",
        ),
        ("/v1/libraries/p/documents", {"embedding_base64": _b64([1, 2])}, "embedding_base64 has dimension 2"),
        (
            "/v1/libraries/p/documents/batch",
            {"documents": [{"embedding_base64": _b64([1, 2])}]},
            "documents[0].embedding_base64 has dimension 2",
        ),
        (
            "/v1/libraries/p/search",
            {"embedding_base64": "AAAA" * 3 + "AA=="},
            "embedding_base64 must hold a whole number of float32 values",
        ),
        ("/v1/libraries/p/documents", {"embedding_base64": "%%%"}, "embedding_base64 is not valid base64"),
        (
            "/v1/libraries/p/search",
            {"embedding_base64": _b64([1, float("inf"), 3])},
            "embedding_base64 must contain finite numbers",
        ),
    ],
)
def test_a_bad_embedding_base64_names_that_field(url, path, body, expected):
    assert _message(url, "POST", path, body).startswith(expected)


def test_unknown_operator_lists_the_known_ones(url):
    field = _message(url, "POST", "/v1/libraries/p/search", {"embedding": [1, 2, 3], "filter": {"a": {"$regex": "x"}}})
    assert field == 'filter.a: unknown operator "$regex"; known on a field: $eq $ne $gt $gte $lt $lte $in $nin $not'
    batch = _message(
        url, "POST", "/v1/libraries/p/search/batch", {"queries": [{"embedding": [1, 2, 3], "filter": {"$nor": []}}]}
    )
    assert batch.startswith('queries[0].filter: unknown operator "$nor"; known here: $and $or $not')


def test_413_names_its_setting(url):
    too_big = b"x" * (32 * 1024 * 1024 + 1)
    response = httpx.post(f"{url}/v1/libraries/p/search", content=too_big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["type"] == "payload_too_large"
    assert "ARRWDB_MAX_REQUEST_BYTES" in error["message"] and "33554432 bytes (32 MiB)" in error["message"]
