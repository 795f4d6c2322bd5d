"""API keys, tenants and isolation against a real server."""

from __future__ import annotations

import httpx
import pytest

from arrwdb.client import ApiError
from arrwdb.server.app import is_loopback

KEY_A, KEY_B = "key-of-tenant-a", "key-of-tenant-b"


@pytest.fixture
def keyed(start_server):
    return start_server(api_keys=f"{KEY_A},{KEY_B}")


def test_missing_or_wrong_key_is_401(keyed):
    for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        response = httpx.get(f"{keyed.url}/v1/libraries", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "unauthorized"


def test_system_endpoints_need_no_key(keyed):
    for path in ("/health", "/ready", "/metrics"):
        assert httpx.get(f"{keyed.url}{path}").status_code == 200


def test_bearer_and_header_keys_are_the_same_tenant(keyed):
    with keyed.client(KEY_A) as a:
        a.create_library("mine")
    response = httpx.get(f"{keyed.url}/v1/libraries", headers={"Authorization": f"Bearer {KEY_A}"})
    assert [lib["name"] for lib in response.json()["libraries"]] == ["mine"]


def test_tenant_isolation(keyed):
    with keyed.client(KEY_A) as a, keyed.client(KEY_B) as b:
        lib = a.create_library("shared-name")
        a.add_document(lib["id"], {"id": "secret", "text": "tenant A's private text"})
        # Names are unique per tenant, not globally.
        b_lib = b.create_library("shared-name")
        assert b_lib["id"] != lib["id"]
        calls = [
            lambda: b.get_library(lib["id"]),
            lambda: b.statistics(lib["id"]),
            lambda: b.list_documents(lib["id"]),
            lambda: b.get_document(lib["id"], "secret"),
            lambda: b.delete_document(lib["id"], "secret"),
            lambda: b.add_document(lib["id"], {"text": "intrusion"}),
            lambda: b.search(lib["id"], query="private"),
            lambda: b.search_batch(lib["id"], [{"query": "private"}]),
            lambda: b.delete_library(lib["id"]),
        ]
        for call in calls:
            with pytest.raises(ApiError) as err:
                call()
            assert err.value.status == 404
        assert [x["id"] for x in b.list_libraries()] == [b_lib["id"]]
        assert b.search("shared-name", query="private")["results"] == []
        # A's data is untouched.
        assert a.get_document(lib["id"], "secret")["text"] == "tenant A's private text"
        assert a.get_library(lib["id"])["document_count"] == 1


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")
