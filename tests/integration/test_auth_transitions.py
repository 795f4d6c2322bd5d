"""Auth across restarts on one store, against real servers: turning auth on keeps the libraries made
with it off reachable (a key for tenant "default"), removing the admin key never opens a store that
holds minted keys, and every start-up says whether auth is on."""

from __future__ import annotations

import logging

import httpx
import pytest

from arrwdb.engine.auth_policy import DEFAULT_TENANT

ADMIN = "transition-admin-key"


def _names(url: str, key: str | None) -> list[str]:
    response = httpx.get(f"{url}/v1/libraries", headers={"X-API-Key": key} if key else {})
    assert response.status_code == 200, response.text
    return [library["name"] for library in response.json()["libraries"]]


def _auth_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [record.getMessage() for record in caplog.records if record.name == "arrwdb.auth"]
    caplog.clear()
    return lines


def _mint(url: str, tenant: str) -> str:
    response = httpx.post(f"{url}/v1/admin/keys", headers={"X-API-Key": ADMIN}, json={"tenant": tenant})
    assert response.status_code == 201, response.text
    return response.json()["key"]


def test_libraries_made_with_auth_off_stay_reachable(start_server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="arrwdb.auth")
    data_dir = tmp_path / "store"
    server = start_server(data_dir)
    assert any(line.startswith("auth is off") for line in _auth_lines(caplog))
    with server.client() as c:
        c.create_library("made-before-auth")
    server.stop()

    # Admin key only: no key reaches tenant "default" yet, and the log says how to reach it.
    server = start_server(data_dir, admin_key=ADMIN)
    lines = _auth_lines(caplog)
    assert any(line.startswith("auth is on") for line in lines)
    hint = next(line for line in lines if "made with auth off" in line)
    assert f"belong to tenant {DEFAULT_TENANT!r}" in hint
    assert "default=<key>" in hint and '"tenant": "default"' in hint
    # The hint's second way: a key minted for that tenant sees the old library.
    assert _names(server.url, _mint(server.url, DEFAULT_TENANT)) == ["made-before-auth"]
    assert _names(server.url, _mint(server.url, "acme")) == []
    server.stop()

    # The hint's first way: an ARRWDB_API_KEYS entry that names its tenant.
    server = start_server(data_dir, api_keys="default=old-data-key,plain-key", admin_key=ADMIN)
    assert any("keys of that tenant reach them" in line for line in _auth_lines(caplog))
    assert _names(server.url, "old-data-key") == ["made-before-auth"]
    assert _names(server.url, "plain-key") == []  # a plain key is still a tenant of its own


def test_removing_the_admin_key_keeps_minted_keys_enforced(start_server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="arrwdb.auth")
    data_dir = tmp_path / "store"
    server = start_server(data_dir, admin_key=ADMIN)
    key = _mint(server.url, "acme")
    with server.client(key) as c:
        c.create_library("acme-docs")
    server.stop()
    caplog.clear()

    server = start_server(data_dir)  # neither ARRWDB_ADMIN_KEY nor ARRWDB_API_KEYS
    lines = _auth_lines(caplog)
    assert any(line.startswith("auth is on") and "1 minted key(s)" in line for line in lines)
    assert any("they stay enforced" in line and "ARRWDB_ADMIN_KEY" in line for line in lines)
    for headers in ({}, {"X-API-Key": "wrong"}):
        response = httpx.get(f"{server.url}/v1/libraries", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "unauthorized"
    assert _names(server.url, key) == ["acme-docs"]
    admin = httpx.get(f"{server.url}/v1/admin/keys", headers={"X-API-Key": ADMIN})
    assert admin.status_code == 401
    assert "ARRWDB_ADMIN_KEY" in admin.json()["error"]["message"]


def test_revoked_keys_alone_leave_auth_off_and_say_which_libraries_are_out_of_reach(start_server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="arrwdb.auth")
    data_dir = tmp_path / "store"
    server = start_server(data_dir, admin_key=ADMIN)
    key = _mint(server.url, "acme")
    with server.client(key) as c:
        c.create_library("acme-docs")
    key_id = httpx.get(f"{server.url}/v1/admin/keys", headers={"X-API-Key": ADMIN}).json()["keys"][0]["id"]
    assert httpx.delete(f"{server.url}/v1/admin/keys/{key_id}", headers={"X-API-Key": ADMIN}).status_code == 204
    server.stop()
    caplog.clear()

    server = start_server(data_dir)
    lines = _auth_lines(caplog)
    assert any(line.startswith("auth is off") for line in lines)
    assert any("not reachable while auth is off" in line and "'acme' (1)" in line for line in lines)
    assert _names(server.url, None) == []
