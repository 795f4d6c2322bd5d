"""The start-up auth decision (arrwdb/engine/auth_policy.py) and the ``tenant=key`` syntax of ARRWDB_API_KEYS."""

from __future__ import annotations

import logging

from arrwdb.engine.auth_policy import DEFAULT_TENANT, decide_auth, split_key_entry, tenant_keys
from arrwdb.server import auth
from arrwdb.store.api_keys import ApiKeyRecord


def _record(tenant: str, revoked: bool = False) -> ApiKeyRecord:
    return ApiKeyRecord("id-" + tenant, tenant, "", "00" * 32, "arrwdb_abcd", "2026-01-01", "x" if revoked else None)


def test_entries_name_their_tenant_and_base64_padding_stays_in_the_key():
    assert split_key_entry("acme=s3cret") == ("acme", "s3cret")
    assert split_key_entry("acme=a=b") == ("acme", "a=b")
    assert split_key_entry("c2VjcmV0==") == (None, "c2VjcmV0==")
    assert split_key_entry("plain") == (None, "plain")
    assert split_key_entry("not a tenant=key") == (None, "not a tenant=key")
    assert tenant_keys(["t=k", "solo"], lambda key: "own-" + key) == [("t", "k"), ("own-solo", "solo")]


def test_key_ring_uses_the_named_tenant():
    ring = auth.KeyRing(["default=old", "fresh"])
    assert ring.tenant_of("old") == DEFAULT_TENANT
    assert ring.tenant_of("fresh") == auth.configured_tenant("fresh")
    assert auth.DEFAULT_TENANT == DEFAULT_TENANT


def test_minted_keys_keep_auth_on_without_any_configured_key():
    decision = decide_auth([], "", [_record("acme")], {"acme": 2})
    assert decision.enabled
    assert [level for level, _ in decision.lines] == [logging.INFO, logging.WARNING]
    assert decision.lines[0][1].startswith("auth is on")


def test_revoked_keys_alone_do_not_turn_auth_on():
    decision = decide_auth([], "", [_record("acme", revoked=True)], {})
    assert not decision.enabled
    assert decision.lines == [(logging.INFO, decision.lines[0][1])]
    assert decision.lines[0][1].startswith("auth is off")


def test_default_tenant_hint_only_when_no_key_reaches_it():
    unreached = decide_auth([], "admin", [], {DEFAULT_TENANT: 3})
    assert unreached.lines[-1][0] == logging.WARNING and "3 library(ies)" in unreached.lines[-1][1]
    by_entry = decide_auth(["default=k"], "", [], {DEFAULT_TENANT: 3})
    by_minted = decide_auth([], "admin", [_record(DEFAULT_TENANT)], {DEFAULT_TENANT: 3})
    for decision in (by_entry, by_minted):
        assert decision.lines[-1][0] == logging.INFO and "reach them" in decision.lines[-1][1]
    assert len(decide_auth(["k"], "", [], {}).lines) == 1
