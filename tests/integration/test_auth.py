"""API keys, tenants and isolation against a real server: configured and minted keys, the admin
endpoints, revocation, rate limits, CORS, and a walk of every endpoint as another tenant."""

from __future__ import annotations

import re
import sqlite3
import time

import httpx
import pytest

from arrwdb.client.client import ApiError
from arrwdb.config import Settings
from arrwdb.errors import InvalidInput, RateLimited
from arrwdb.runtime.ratelimit import RateLimiter
from arrwdb.server.serve import is_loopback, serve

KEY_A, KEY_B = "key-of-tenant-a", "key-of-tenant-b"
ADMIN = "the-admin-key"


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
        assert b.search("shared-name", query="private") == []
        # A's data is untouched.
        assert a.get_document(lib["id"], "secret")["text"] == "tenant A's private text"
        assert a.get_library(lib["id"])["document_count"] == 1


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")


def test_serve_refuses_a_public_address_without_any_key(tmp_path):
    with pytest.raises(InvalidInput, match="without API keys"):
        serve(Settings(host="0.0.0.0", data_dir=tmp_path))


# -- minted keys and the admin endpoints -----------------------------------------------------------


def admin_call(server, method: str, path: str, key: str | None = ADMIN, **kwargs) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    return httpx.request(method, f"{server.url}{path}", headers=headers, timeout=30, **kwargs)


def mint(server, tenant: str, name: str = "") -> dict:
    response = admin_call(server, "POST", "/v1/admin/keys", json={"tenant": tenant, "name": name})
    assert response.status_code == 201, response.text
    return response.json()


def test_admin_endpoints_need_the_admin_key(start_server):
    server = start_server(api_keys=KEY_A, admin_key=ADMIN)
    for key in (None, "wrong", KEY_A):
        for method, path in (("GET", "/v1/admin/keys"), ("POST", "/v1/admin/keys"), ("DELETE", "/v1/admin/keys/x")):
            response = admin_call(server, method, path, key=key, json={"tenant": "t"})
            assert response.status_code == 401, (key, method, path)
            assert response.json()["error"]["type"] == "unauthorized"
    # The admin key is not a tenant key.
    assert admin_call(server, "GET", "/v1/libraries").status_code == 401
    # Without ARRWDB_ADMIN_KEY the admin endpoints are closed to everyone.
    plain = start_server(data_dir=server.settings.data_dir.parent / "other", api_keys=KEY_A)
    assert admin_call(plain, "GET", "/v1/admin/keys").status_code == 401


def test_minted_keys_work_at_once_are_persisted_hashed_and_revoke_at_once(start_server, tmp_path):
    data_dir = tmp_path / "store"
    server = start_server(data_dir, api_keys=KEY_A, admin_key=ADMIN)
    first = mint(server, "acme", "ci runner")
    second = mint(server, "acme")
    other = mint(server, "globex")
    assert first["tenant"] == "acme" and first["name"] == "ci runner" and first["revoked_at"] is None
    assert first["key"] != second["key"] and first["key"].startswith(first["prefix"])
    # Works on the very next request; both keys of a tenant see the same libraries.
    with server.client(first["key"]) as c1, server.client(second["key"]) as c2, server.client(other["key"]) as c3:
        lib = c1.create_library("docs", dimension=3)
        c1.add_document("docs", {"id": "d1", "embedding": [1, 0, 0]})
        assert [x["id"] for x in c2.list_libraries()] == [lib["id"]]
        assert c3.list_libraries() == []
        with pytest.raises(ApiError) as err:
            c3.get_library(lib["id"])
        assert err.value.status == 404
    listed = admin_call(server, "GET", "/v1/admin/keys").json()["keys"]
    assert [k["id"] for k in listed] == [first["id"], second["id"], other["id"]]
    assert all("key" not in k and "digest" not in k for k in listed)
    only_acme = admin_call(server, "GET", "/v1/admin/keys", params={"tenant": "acme"}).json()["keys"]
    assert {k["id"] for k in only_acme} == {first["id"], second["id"]}

    assert admin_call(server, "DELETE", f"/v1/admin/keys/{first['id']}").status_code == 204
    assert httpx.get(f"{server.url}/v1/libraries", headers={"X-API-Key": first["key"]}).status_code == 401
    assert httpx.get(f"{server.url}/v1/libraries", headers={"X-API-Key": second["key"]}).status_code == 200
    assert admin_call(server, "DELETE", f"/v1/admin/keys/{first['id']}").status_code == 204  # idempotent
    assert admin_call(server, "DELETE", "/v1/admin/keys/no-such-key").status_code == 404
    active = admin_call(server, "GET", "/v1/admin/keys", params={"include_revoked": "false"}).json()["keys"]
    assert [k["id"] for k in active] == [second["id"], other["id"]]
    server.stop()

    # Only digests reach the disk: no key appears in the database or its WAL.
    blobs = b"".join(path.read_bytes() for path in data_dir.glob("arrwdb.sqlite3*"))
    for minted in (first, second, other):
        assert minted["key"].encode() not in blobs
    again = start_server(data_dir, api_keys=KEY_A, admin_key=ADMIN)
    assert httpx.get(f"{again.url}/v1/libraries", headers={"X-API-Key": first["key"]}).status_code == 401
    with again.client(second["key"]) as c2:
        assert c2.get_document("docs", "d1")["embedding"] == [1.0, 0.0, 0.0]


def test_minting_checks_its_input(start_server):
    server = start_server(admin_key=ADMIN)
    for body in ({}, {"tenant": ""}, {"tenant": "a b"}, {"tenant": "x" * 257}, {"tenant": 5}, {"tenant": "t", "x": 1}):
        response = admin_call(server, "POST", "/v1/admin/keys", json=body)
        assert response.status_code == 422, body
    assert admin_call(server, "POST", "/v1/admin/keys", content=b"{").status_code == 400
    # With only an admin key configured, auth is on: nobody gets in without a key.
    assert httpx.get(f"{server.url}/v1/libraries").status_code == 401


def test_store_migrates_from_schema_version_1(tmp_path):
    from arrwdb.store.store import SCHEMA_VERSION, Store

    path = tmp_path / "arrwdb.sqlite3"
    store = Store(path)
    store.close()
    # Make it a version-1 store, as the first release wrote it: no api_keys table, no library models.
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE api_keys")
    conn.execute("ALTER TABLE libraries DROP COLUMN model")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.execute("INSERT INTO libraries VALUES ('lib1', 'default', 'old', 3, 'brute_force', 'l2', '{}', 'then')")
    conn.commit()
    conn.close()
    store = Store(path)
    assert SCHEMA_VERSION == 3 and store.schema_version() == 3
    assert store.api_keys() == []
    assert [lib.name for lib in store.libraries()] == ["old"]
    assert store.libraries()[0].model == ""  # version 3: made before models, it uses the default one
    store.close()


# -- rate limits and CORS ---------------------------------------------------------------------------


def test_rate_limit_is_per_key_and_answers_429_with_retry_after(start_server):
    server = start_server(api_keys=f"{KEY_A},{KEY_B}", rate_limit_per_s=0.5, rate_limit_burst=3)
    url = f"{server.url}/v1/libraries"
    statuses = [httpx.get(url, headers={"X-API-Key": KEY_A}).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]  # the burst
    limited = httpx.get(url, headers={"X-API-Key": KEY_A})
    assert limited.status_code == 429
    assert limited.json()["error"]["type"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    assert httpx.get(url, headers={"X-API-Key": KEY_B}).status_code == 200  # another key: its own bucket
    assert httpx.get(f"{server.url}/health").status_code == 200  # system endpoints are not limited
    time.sleep(int(limited.headers["Retry-After"]))
    assert httpx.get(url, headers={"X-API-Key": KEY_A}).status_code == 200


def test_no_rate_limit_unless_configured(server):
    with httpx.Client(base_url=server.url) as http:
        assert {http.get("/v1/libraries").status_code for _ in range(60)} == {200}


def test_rate_limiter_buckets_refill_and_stay_bounded():
    limiter = RateLimiter(per_s=2, burst=2, max_buckets=100)
    limiter.take(b"k", now=0.0)
    limiter.take(b"k", now=0.0)
    with pytest.raises(RateLimited) as err:
        limiter.take(b"k", now=0.1)
    assert err.value.retry_after_s == 1 and err.value.status == 429
    limiter.take(b"k", now=0.6)  # one token back after 0.5 s
    for i in range(1000):
        limiter.take(str(i).encode(), now=1.0)
    assert len(limiter) == 100


def test_cors_is_off_unless_configured(start_server, tmp_path):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    off = start_server(tmp_path / "a")
    assert "access-control-allow-origin" not in httpx.options(f"{off.url}/v1/libraries", headers=preflight).headers
    assert "access-control-allow-origin" not in httpx.get(f"{off.url}/v1/libraries", headers=preflight).headers
    on = start_server(tmp_path / "b", cors_origins="https://app.example")
    allowed = httpx.options(f"{on.url}/v1/libraries", headers=preflight)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    foreign = httpx.options(f"{on.url}/v1/libraries", headers={**preflight, "Origin": "https://evil.example"})
    assert foreign.status_code == 400
    assert "access-control-allow-origin" not in foreign.headers


# -- isolation: every endpoint as tenant B against tenant A's library ------------------------------

VECTOR = [0.5, 0.25, 1.0]
# A valid body for each endpoint that takes one, so that every call gets past validation and meets
# the tenant check.  A new endpoint without an entry here fails the walk below, on purpose.
BODIES = {
    ("POST", "/v1/libraries/{library}/documents"): {"id": "intruder", "embedding": VECTOR},
    ("POST", "/v1/libraries/{library}/documents/batch"): {"documents": [{"id": "intruder", "embedding": VECTOR}]},
    ("POST", "/v1/libraries/{library}/search"): {"embedding": VECTOR, "k": 5},
    ("POST", "/v1/libraries/{library}/search/batch"): {"queries": [{"embedding": VECTOR, "k": 5}]},
    ("PATCH", "/v1/libraries/{library}/documents/{doc_id}"): {"title": "intruder", "metadata": {"m": None}},
    ("POST", "/v1/libraries/{library}/documents/delete"): {"ids": ["secret-doc"]},
    ("POST", "/v1/libraries/{library}/shards/{shard}/replicas"): {"engine": "arrwdb-engine-1"},
}
SECRET_TEXT = "tenant A's private text"


def test_every_endpoint_as_another_tenant_is_404_and_leaks_nothing(start_server):
    server = start_server(api_keys=f"{KEY_A},{KEY_B}", admin_key=ADMIN)
    with server.client(KEY_A) as a, server.client(KEY_B) as b:
        lib = a.create_library("a-only-name", dimension=3)
        a.add_documents(
            lib["id"], [{"id": "secret-doc", "text": SECRET_TEXT, "embedding": VECTOR, "metadata": {"m": "x"}}]
        )
        b_lib = b.create_library("b-lib", dimension=3)
        b.add_document(b_lib["id"], {"id": "b-doc", "embedding": VECTOR})
        a_before = (a.get_library(lib["id"]), a.get_document(lib["id"], "secret-doc"), a.statistics(lib["id"]))
    schema = httpx.get(f"{server.url}/openapi.json").json()
    leaks = [lib["id"], "a-only-name", "secret-doc", SECRET_TEXT]
    walked = 0
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY_B}, timeout=30) as http:
        for path, operations in schema["paths"].items():
            for method in (m.upper() for m in operations):
                params = set(re.findall(r"{(\w+)}", path))
                if "library" in params:
                    for library in (lib["id"], "a-only-name"):
                        concrete = (
                            path.replace("{library}", library)
                            .replace("{doc_id}", "secret-doc")
                            .replace("{shard}", "0")
                            .replace("{engine}", "arrwdb-engine-1")
                        )
                        body = BODIES.get((method, path))
                        if method == "POST":
                            assert body is not None, f"no body for {method} {path}: add one to BODIES"
                        response = http.request(method, concrete, json=body)
                        assert response.status_code == 404, (method, concrete, response.text)
                        assert response.json()["error"]["type"] == "not_found"
                        walked += 1
                elif path.startswith("/v1/admin"):
                    key_path = path.replace("{key_id}", "x")
                    assert http.request(method, key_path, json={"tenant": "a"}).status_code == 401
                    walked += 1
                elif method == "GET" and not params:
                    # Every listing a tenant may read shows nothing of another tenant's.
                    response = http.get(path)
                    for secret in leaks:
                        assert secret not in response.text, (path, secret)
                    walked += 1
    assert walked >= 20
    with server.client(KEY_B) as b:
        assert [x["id"] for x in b.list_libraries()] == [b_lib["id"]]
        assert [d["id"] for d in b.list_documents(b_lib["id"])["documents"]] == ["b-doc"]
        hits = b.search(b_lib["id"], embedding=VECTOR, k=10)
        assert [h["document_id"] for h in hits] == ["b-doc"]
    with server.client(KEY_A) as a:  # A's library is exactly as it was: no write of B's landed
        assert (a.get_library(lib["id"]), a.get_document(lib["id"], "secret-doc"), a.statistics(lib["id"])) == a_before
