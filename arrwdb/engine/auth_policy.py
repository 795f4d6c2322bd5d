"""Whether the server enforces API keys, decided once at start-up, and what the start-up log says.

Two rules keep auth transitions from stranding data or opening the server:

- A store that holds minted keys (made through ``/v1/admin/keys``, not revoked) is never served
  without auth.  Started without ``ARRWDB_ADMIN_KEY`` and ``ARRWDB_API_KEYS``, the server keeps
  enforcing those keys (the admin endpoints stay closed until an admin key is set again): a key that
  was refused before the restart is refused after it.
- Libraries made with auth off belong to the tenant ``default``.  Once auth is on, a key of that
  tenant reaches them: a minted key (``{"tenant": "default"}``) or an ``ARRWDB_API_KEYS`` entry that
  names its tenant (``default=<key>``).  The start-up log says so whenever such libraries exist.

The decision is a pure function of the settings, the minted key records and the tenants that own
libraries, so any start-up path (one process or several) can call it and apply the result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from arrwdb.library.validation import NAME_PATTERN
from arrwdb.store.api_keys import ApiKeyRecord

DEFAULT_TENANT = "default"  # everyone's tenant while auth is off

log = logging.getLogger("arrwdb.auth")


def split_key_entry(entry: str) -> tuple[str | None, str]:
    """One ``ARRWDB_API_KEYS`` entry as (tenant, key): ``tenant=key`` names its tenant, a plain key
    does not (None).  The text before the first ``=`` is a tenant only when it is a valid tenant name
    and the rest holds more than ``=`` signs, so a base64 key ending in ``=`` padding stays one key."""
    name, sep, key = entry.partition("=")
    if sep and NAME_PATTERN.fullmatch(name) and key.strip("="):
        return name, key
    return None, entry


def tenant_keys(entries: Iterable[str], unnamed_tenant: Callable[[str], str]) -> list[tuple[str, str]]:
    """(tenant, key) for each entry; a key without a named tenant gets ``unnamed_tenant(key)``."""
    pairs = []
    for entry in entries:
        tenant, key = split_key_entry(entry)
        pairs.append((tenant if tenant is not None else unnamed_tenant(key), key))
    return pairs


@dataclass(frozen=True)
class AuthDecision:
    """``enabled``: keys are required.  ``lines``: what the start-up log says, as (level, message)."""

    enabled: bool
    lines: list[tuple[int, str]] = field(default_factory=list)

    def log(self, logger: logging.Logger = log) -> None:
        for level, message in self.lines:
            logger.log(level, message)


def decide_auth(
    configured_entries: list[str],
    admin_key: str,
    minted: list[ApiKeyRecord],
    libraries_by_tenant: Mapping[str, int],
) -> AuthDecision:
    """Whether auth is on, and the start-up lines that say so and say who can reach existing libraries.

    ``configured_entries``: the ``ARRWDB_API_KEYS`` entries; ``admin_key``: ``ARRWDB_ADMIN_KEY``;
    ``minted``: every key record in the store (revoked ones too); ``libraries_by_tenant``: how many
    libraries each tenant owns.
    """
    active = [record for record in minted if record.revoked_at is None]
    enabled = bool(configured_entries or admin_key or active)
    lines: list[tuple[int, str]] = [(logging.INFO, _state_line(configured_entries, admin_key, active))]
    if enabled and not (configured_entries or admin_key):
        lines.append(
            (
                logging.WARNING,
                f"ARRWDB_API_KEYS and ARRWDB_ADMIN_KEY are empty, but the store holds {len(active)} minted "
                "key(s): they stay enforced (a store with minted keys is never served without auth). "
                "Set ARRWDB_ADMIN_KEY to mint or revoke keys.",
            )
        )
    lines.extend(_reach_lines(enabled, configured_entries, active, libraries_by_tenant))
    return AuthDecision(enabled, lines)


def _state_line(configured_entries: list[str], admin_key: str, active: list[ApiKeyRecord]) -> str:
    if not (configured_entries or admin_key or active):
        return (
            f"auth is off: no key is needed and every request acts as tenant {DEFAULT_TENANT!r} (allowed on a "
            "loopback address only); set ARRWDB_API_KEYS or ARRWDB_ADMIN_KEY to require keys"
        )
    admin = "on (ARRWDB_ADMIN_KEY is set)" if admin_key else "off (ARRWDB_ADMIN_KEY is empty)"
    return (
        f"auth is on: {len(configured_entries)} key(s) from ARRWDB_API_KEYS, {len(active)} minted key(s) in the "
        f"store; admin endpoints {admin}"
    )


def _reach_lines(
    enabled: bool,
    configured_entries: list[str],
    active: list[ApiKeyRecord],
    libraries_by_tenant: Mapping[str, int],
) -> list[tuple[int, str]]:
    """Lines about libraries that the current keys may not reach."""
    if not enabled:
        others = {tenant: n for tenant, n in libraries_by_tenant.items() if tenant != DEFAULT_TENANT and n}
        if not others:
            return []
        listed = ", ".join(f"{tenant!r} ({n})" for tenant, n in sorted(others.items()))
        return [
            (
                logging.WARNING,
                f"libraries of other tenants are not reachable while auth is off: {listed}; set their keys "
                "(ARRWDB_API_KEYS, or ARRWDB_ADMIN_KEY for minted ones) to reach them again",
            )
        ]
    owned = libraries_by_tenant.get(DEFAULT_TENANT, 0)
    if not owned:
        return []
    named = [tenant for tenant, _ in (split_key_entry(entry) for entry in configured_entries)]
    reached = DEFAULT_TENANT in named or any(record.tenant == DEFAULT_TENANT for record in active)
    if reached:
        return [
            (
                logging.INFO,
                f"{owned} library(ies) made with auth off belong to tenant {DEFAULT_TENANT!r}; keys of that "
                "tenant reach them",
            )
        ]
    return [
        (
            logging.WARNING,
            f"{owned} library(ies) made with auth off belong to tenant {DEFAULT_TENANT!r}, which no key "
            f"reaches: add '{DEFAULT_TENANT}=<key>' to ARRWDB_API_KEYS, or mint a key for it "
            f'(POST /v1/admin/keys {{"tenant": "{DEFAULT_TENANT}"}} with the admin key)',
        )
    ]
