"""Document writes beyond upserts: a merge patch of title and metadata, and deleting many documents
by id or by filter.  Both go through the group committer like every write (durable before the
answer, one savepoint: all or nothing), then the library's in-memory state mirrors them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from arrwdb.errors import InvalidInput
from arrwdb.library.filters import parse_filter
from arrwdb.library.metadata import MAX_KEYS, validate_metadata
from arrwdb.records import Delete, Patch

if TYPE_CHECKING:
    from arrwdb.engine.core import Engine
    from arrwdb.library.library import LibraryState

MAX_DELETE_IDS = 1000


def patch_op(doc_id: str, patch: dict[str, Any]) -> Patch:
    """The write of a merge patch ``{title?, metadata?}`` (checked: each value to set as in a
    document's metadata, None removes a key)."""
    unknown = set(patch) - {"title", "metadata"}
    if unknown:
        raise InvalidInput(f"a patch may set title and metadata, not {', '.join(sorted(unknown))}")
    title = patch.get("title")
    if title is not None and not isinstance(title, str):
        raise InvalidInput("title must be a string or null")
    metadata = patch.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidInput("metadata must be an object (a null value removes its key)")
    if len(metadata) > MAX_KEYS:
        raise InvalidInput(f"metadata has {len(metadata)} keys; at most {MAX_KEYS} are allowed")
    kept = validate_metadata({key: value for key, value in metadata.items() if value is not None})
    removed = [key for key, value in metadata.items() if value is None]
    validate_metadata(dict.fromkeys(removed, ""))  # the removed keys are checked as keys too
    return Patch(doc_id, "title" in patch, title, {**kept, **dict.fromkeys(removed)})


async def patch_document(engine: Engine, tenant: str, key: str, doc_id: str, patch: dict[str, Any]) -> dict[str, Any]:
    engine.check_ready()
    state = engine.library(tenant, key)
    op = patch_op(doc_id, patch)
    await engine.committer.write(state.record.id, [op])
    return await engine.get_document(tenant, key, doc_id)


async def delete_documents(
    engine: Engine, tenant: str, key: str, ids: list[str] | None, filter_json: str | None, deadline: float
) -> int:
    """Delete the documents named by ``ids``, or matching the filter (canonical JSON), in one commit;
    the count deleted.  Ids of documents that are not there are not counted; a document that matches
    the filter when it is read and is deleted by another writer before the commit is not either."""
    engine.check_ready()
    state = engine.library(tenant, key)
    if (ids is None) == (filter_json is None):
        raise InvalidInput("give exactly one of ids and filter")
    if ids is not None:
        if not 1 <= len(ids) <= MAX_DELETE_IDS:
            raise InvalidInput(f"ids must hold 1 to {MAX_DELETE_IDS} document ids")
        targets = list(dict.fromkeys(ids))
    else:
        filter_ = parse_filter(json.loads(filter_json or "null"))
        if filter_ is None:
            raise InvalidInput("filter must not be empty: to delete every document, delete the library")
        if not state.documents_loaded:
            await engine.documents.wait(state.record.id, deadline)  # right after a restart
        targets = await engine.on_worker(lambda: _matching(state, filter_))
    if not targets:
        return 0
    applied = await engine.committer.write(state.record.id, [Delete(doc_id, missing_ok=True) for doc_id in targets])
    return len(applied)


def _matching(state: LibraryState, filter_: Any) -> list[str]:
    """Ids of the library's documents that match (on the device worker, where its state changes)."""
    matches = filter_.matches
    return [doc_id for doc_id, metadata in state.doc_meta.items() if matches(metadata)]
