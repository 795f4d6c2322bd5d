"""POST /v1/embeddings and GET /v1/models in OpenAI's shapes, driven by the official ``openai`` client
against real servers (the packaged MiniLM): in one process (LocalEngine) and as ``arrwdb serve`` with
two HTTP workers and an engine process (RemoteEngine)."""

from __future__ import annotations

import base64
import json
import socket
import time
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.integration.test_admission_door import full_server, post, read_response
from tests.processes import ADMIN_KEY, start_processes

__all__ = ["full_server"]  # a fixture of the door's tests, used here too

MODEL = "all-MiniLM-L6-v2"
TEXTS = ["the cat sat on the mat", "vector search with micro-batching", "a third, longer sentence about dogs"]


def _openai(url: str, api_key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=api_key, max_retries=0, timeout=60.0)


def _embed(url: str, texts: list[str], headers: dict[str, str] | None = None) -> np.ndarray:
    answer = httpx.post(f"{url}/v1/embed", json={"texts": texts}, headers=headers, timeout=60.0)
    assert answer.status_code == 200, answer.text
    return np.asarray(answer.json()["embeddings"], dtype=np.float32)


def _check_client_round_trip(url: str, api_key: str, headers: dict[str, str] | None, minilm: Any) -> None:
    """Both encodings through the official client give /v1/embed's vectors, with the tokenizer's usage."""
    client = _openai(url, api_key)
    expected = _embed(url, TEXTS, headers)
    tokens = sum(minilm.token_counts(TEXTS))

    floats = client.embeddings.create(input=TEXTS, model=MODEL, encoding_format="float")
    assert floats.object == "list" and floats.model == MODEL
    assert [d.index for d in floats.data] == [0, 1, 2] and {d.object for d in floats.data} == {"embedding"}
    np.testing.assert_allclose(np.asarray([d.embedding for d in floats.data]), expected, atol=1e-6)
    assert floats.usage.prompt_tokens == tokens == floats.usage.total_tokens

    # The client's default asks for base64 and decodes it itself.
    default = client.embeddings.create(input=TEXTS, model=MODEL)
    np.testing.assert_allclose(np.asarray([d.embedding for d in default.data]), expected, atol=1e-6)
    assert default.usage.prompt_tokens == tokens

    one = client.embeddings.create(input=TEXTS[0], model=MODEL, encoding_format="float")
    assert len(one.data) == 1
    np.testing.assert_allclose(one.data[0].embedding, expected[0], atol=1e-6)

    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert models.data[0].object == "model" and models.data[0].owned_by == "arrwdb"
    assert client.models.retrieve(MODEL).id == MODEL


def test_openai_client_in_one_process(start_server: Any, minilm: Any) -> None:
    server = start_server()
    _check_client_round_trip(server.url, "unused", None, minilm)


def test_openai_client_through_http_workers(tmp_path: Any, minilm: Any) -> None:
    server = start_processes(tmp_path / "data", workers=2, ARRWDB_MATRYOSHKA_MODELS=MODEL)
    try:
        minted = httpx.post(f"{server.url}/v1/admin/keys", json={"tenant": "t"}, headers={"X-API-Key": ADMIN_KEY})
        assert minted.status_code == 201, minted.text
        key = minted.json()["key"]
        _check_client_round_trip(server.url, key, {"X-API-Key": key}, minilm)
        # The engine process reads ARRWDB_MATRYOSHKA_MODELS and shortens; the HTTP workers pass it on.
        full = _embed(server.url, TEXTS, {"X-API-Key": key})[:, :64]
        short = _openai(server.url, key).embeddings.create(input=TEXTS, model=MODEL, dimensions=64)
        expected = full / np.linalg.norm(full, axis=1, keepdims=True)
        np.testing.assert_allclose(np.asarray([d.embedding for d in short.data]), expected, atol=1e-6)
        # Errors cross the engine protocol with their field: the unknown model is named in `param`.
        with pytest.raises(openai.NotFoundError) as caught:
            _openai(server.url, key).embeddings.create(input="x", model="nope")
        assert caught.value.body["param"] == "model" and caught.value.body["code"] == "model_not_found"
        bad = httpx.post(
            f"{server.url}/v1/embeddings", json={"input": [[1, 10**9]]}, headers={"X-API-Key": key}, timeout=60.0
        )
        assert bad.status_code == 422 and bad.json()["error"]["param"] == "input"
    finally:
        server.stop()


def test_base64_is_little_endian_float32_and_smaller(start_server: Any) -> None:
    server = start_server()
    with httpx.Client(base_url=server.url, timeout=60.0) as http:
        as_floats = http.post("/v1/embeddings", json={"input": TEXTS, "encoding_format": "float"})
        as_base64 = http.post("/v1/embeddings", json={"input": TEXTS, "encoding_format": "base64"})
    assert as_floats.status_code == as_base64.status_code == 200
    assert len(as_base64.content) < len(as_floats.content) / 2
    for row_float, row_b64 in zip(as_floats.json()["data"], as_base64.json()["data"], strict=True):
        decoded = np.frombuffer(base64.b64decode(row_b64["embedding"]), dtype="<f4")
        np.testing.assert_array_equal(decoded, np.asarray(row_float["embedding"], dtype=np.float32))
    assert as_floats.json()["model"] == MODEL
    assert "X-Batch-Size" in as_floats.headers


def test_token_id_inputs_embed_as_their_text(start_server: Any, minilm: Any) -> None:
    """A list of token ids (the model's own vocabulary, no special tokens) is the text it encodes."""
    server = start_server()
    ids = [minilm.tokenizer._tokenizer.encode(text, add_special_tokens=False).ids for text in TEXTS]
    expected = _embed(server.url, TEXTS)
    client = _openai(server.url)
    many = client.embeddings.create(input=ids, model=MODEL, encoding_format="float")
    np.testing.assert_allclose(np.asarray([d.embedding for d in many.data]), expected, atol=1e-5)
    assert many.usage.prompt_tokens == sum(len(i) + 2 for i in ids)
    single = client.embeddings.create(input=ids[1], model=MODEL, encoding_format="float")
    assert len(single.data) == 1
    np.testing.assert_allclose(single.data[0].embedding, expected[1], atol=1e-5)


def test_dimensions_only_the_models_own(start_server: Any) -> None:
    server = start_server()
    client = _openai(server.url)
    same = client.embeddings.create(input="hello", model=MODEL, dimensions=384, encoding_format="float")
    assert len(same.data[0].embedding) == 384
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.embeddings.create(input="hello", model=MODEL, dimensions=128)
    error = caught.value.body
    assert error["param"] == "dimensions" and error["type"] == "invalid_input" and "384" in error["message"]


def test_a_matryoshka_model_shortens_its_vectors(start_server: Any) -> None:
    """ARRWDB_MATRYOSHKA_MODELS: `dimensions` below the model's own gives each vector's first values,
    rescaled to unit length, in both encodings; beyond the model's own it is a 422; the model card and
    the OpenAPI schema say so."""
    server = start_server(matryoshka_models=MODEL)
    client = _openai(server.url)
    full = _embed(server.url, TEXTS)
    expected = full[:, :128] / np.linalg.norm(full[:, :128], axis=1, keepdims=True)
    floats = client.embeddings.create(input=TEXTS, model=MODEL, dimensions=128, encoding_format="float")
    as_base64 = client.embeddings.create(input=TEXTS, model=MODEL, dimensions=128)  # the client's default
    for answer in (floats, as_base64):
        got = np.asarray([d.embedding for d in answer.data], dtype=np.float32)
        assert got.shape == (3, 128)
        np.testing.assert_allclose(got, expected, atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    one = client.embeddings.create(input="hello", model=MODEL, dimensions=1, encoding_format="float")
    assert len(one.data[0].embedding) == 1 and abs(abs(one.data[0].embedding[0]) - 1.0) < 1e-6
    whole = client.embeddings.create(input=TEXTS, model=MODEL, dimensions=384, encoding_format="float")
    np.testing.assert_allclose(np.asarray([d.embedding for d in whole.data]), full, atol=1e-6)
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.embeddings.create(input="hello", model=MODEL, dimensions=385)
    assert caught.value.body["param"] == "dimensions" and "1 to 384" in caught.value.body["message"]
    card = httpx.get(f"{server.url}/v1/models/{MODEL}", timeout=30.0).json()
    assert card["matryoshka"] is True and card["dimension"] == 384
    schema = httpx.get(f"{server.url}/openapi.json", timeout=30.0).json()
    per_model = schema["components"]["schemas"]["EmbeddingsRequest"]["anyOf"]
    rules = [part["properties"]["dimensions"] for entry in per_model for part in entry["allOf"] if "properties" in part]
    assert {"type": "integer", "minimum": 1, "maximum": 384} in rules[0]["anyOf"]


def test_a_matryoshka_name_that_is_not_loaded_stops_the_start(tmp_path: Any, minilm: Any) -> None:
    from tests.harness import ServerThread

    server = ServerThread(tmp_path / "data", minilm, matryoshka_models="no-such-model")
    server.thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        reason = ""
        while "start-up failed" not in reason and time.monotonic() < deadline:
            ready = httpx.get(f"{server.url}/ready", timeout=10.0)
            assert ready.status_code == 503, ready.text  # never ready with a name it cannot honour
            reason = ready.json()["error"]["message"]
            time.sleep(0.05)
        assert "ARRWDB_MATRYOSHKA_MODELS" in reason and "no-such-model" in reason
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"input": ""}, 422, "input"),
        ({"input": ["ok", "  "]}, 422, "input"),
        ({"input": []}, 422, "input"),
        ({"input": [[]]}, 422, "input"),
        ({"input": ["text", [1, 2]]}, 422, "input"),
        ({"input": [1.5, 2]}, 422, "input"),
        ({"input": [-1]}, 422, "input"),
        ({"input": [10**30]}, 422, "input"),
        ({"input": [[5, 31000]]}, 422, "input"),  # beyond MiniLM's 30,522-token vocabulary
        ({"input": ["x"] * 2049}, 422, "input"),
        ({"input": "x", "encoding_format": "int8"}, 422, "encoding_format"),
        ({"input": "x", "dimensions": 0}, 422, "dimensions"),
        ({"input": "x", "model": "text-embedding-3-small"}, 404, "model"),
        ({"input": "x", "surprise": 1}, 422, "surprise"),
        ({}, 422, "input"),
    ],
)
def test_bad_requests_are_4xx_with_openai_keys(start_server: Any, body: Any, status: int, param: str) -> None:
    server = start_server()
    answer = httpx.post(f"{server.url}/v1/embeddings", json=body, timeout=60.0)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["code"] == error["type"] and error["message"]
    if status == 404:
        assert MODEL in error["message"]  # names the models there are


def test_malformed_json_and_missing_key(start_server: Any) -> None:
    server = start_server(api_keys="secret")
    answer = httpx.post(f"{server.url}/v1/embeddings", content=b"{nope", headers={"X-API-Key": "secret"})
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "bad_request" and "param" in answer.json()["error"]
    with pytest.raises(openai.AuthenticationError) as caught:
        _openai(server.url, "wrong").embeddings.create(input="x", model=MODEL)
    assert caught.value.body["code"] == "unauthorized"
    assert _openai(server.url, "secret").embeddings.create(input="x", model=MODEL).data[0].index == 0


def test_a_refusal_at_the_door_carries_openai_keys(full_server: Any) -> None:
    """A 429 at the door (queues full), answered before the route: OpenAI's keys too."""
    with socket.create_connection(("127.0.0.1", full_server.port), timeout=10) as sock:
        buffer = bytearray()
        sock.sendall(post("/v1/embeddings", b'{"input": "hi"}'))
        status, headers, body = read_response(sock, buffer)
    assert status == 429 and headers["retry-after"] == "1"
    assert json.loads(body)["error"] == {
        "type": "overloaded",
        "message": json.loads(body)["error"]["message"],
        "param": None,
        "code": "overloaded",
    }


def test_a_body_over_the_limit_carries_openai_keys(start_server: Any) -> None:
    server = start_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        buffer = bytearray()
        head = "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        sock.sendall((head + f"Content-Length: {64 * 1024 * 1024}\r\n\r\n").encode())
        status, _, body = read_response(sock, buffer)
    assert status == 413
    error = json.loads(body)["error"]
    assert error["type"] == "payload_too_large" and error["code"] == "payload_too_large" and error["param"] is None
