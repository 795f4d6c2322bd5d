"""Routes: /v1/libraries/{library}/documents."""

from __future__ import annotations

import base64
import re

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from starlette.responses import Response

from arrwdb.engine.document_edits import MAX_DELETE_IDS, patch_op
from arrwdb.errors import BadRequest, InvalidInput
from arrwdb.library.filters import parse_filter
from arrwdb.library.inputs import DocumentInput
from arrwdb.library.metadata import validate_metadata
from arrwdb.library.validation import RESERVED_DOCUMENT_IDS, check_document_id, check_name, field_path
from arrwdb.server import schemas
from arrwdb.server.auth import tenant
from arrwdb.server.body import openapi_body, parse_body
from arrwdb.server.deps import api_of, deadline_of
from arrwdb.server.responses import JSON
from arrwdb.server.search import filter_key
from arrwdb.server.vectors import client_vector, vector_field

router = APIRouter(prefix="/v1/libraries/{library}/documents", tags=["documents"])

# No document has a reserved id: GET, PATCH and DELETE on .../documents/batch and .../delete are a 405.
DOC_ID = Path(description="The document's id.", json_schema_extra={"not": {"enum": list(RESERVED_DOCUMENT_IDS)}})


def addressable(doc_id: str) -> str:
    """The id of a path that reaches a document's own routes: a reserved one is the bulk route's path."""
    if doc_id in RESERVED_DOCUMENT_IDS:
        raise HTTPException(405, "Method Not Allowed")
    return doc_id


def document_input(doc: schemas.Document, where: str) -> DocumentInput:
    return DocumentInput(
        id=None if doc.id is None else check_document_id(doc.id, field_path(where, "id")),
        title=doc.title,
        text=doc.text,
        embedding=client_vector(doc.embedding, doc.embedding_base64, where),
        metadata=validate_metadata(doc.metadata, where),
        where=where,  # paths in messages: arrwdb.library.validation.field_path ("" = the body itself)
        vector_field=vector_field(doc.embedding_base64),
    )


@router.post(
    "",
    status_code=201,
    responses={201: {"model": schemas.DocumentId}},
    openapi_extra=openapi_body(schemas.Document),
)
async def add_document(library: str, request: Request, tenant: str = Depends(tenant)) -> Response:
    body = await parse_body(request, schemas.Document)
    ids = await api_of(request).upsert_documents(
        tenant, library, [document_input(body, "")], bulk=False, deadline=deadline_of(request)
    )
    return JSON({"id": ids[0]}, status_code=201)


@router.post(
    "/batch",
    status_code=201,
    responses={201: {"model": schemas.DocumentIds}},
    openapi_extra=openapi_body(schemas.DocumentBatch),
)
async def add_documents(library: str, request: Request, tenant: str = Depends(tenant)) -> Response:
    body = await parse_body(request, schemas.DocumentBatch)
    docs = [document_input(doc, f"documents[{i}]") for i, doc in enumerate(body.documents)]
    ids = await api_of(request).upsert_documents(tenant, library, docs, bulk=True, deadline=deadline_of(request))
    return JSON({"ids": ids}, status_code=201)


# A cursor is a position in document-id order: the last id of the page, in unpadded base64url.  Any
# string of that form is a position (listing resumes after it), so the schema's pattern is exactly what
# the server accepts; 344 characters hold 258 bytes, more than the longest id (256).
CURSOR_PATTERN = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$"
CURSOR_MAX_LENGTH = 344
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(doc_id: str) -> str:
    return base64.urlsafe_b64encode(doc_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The position a cursor names (ids are ASCII: any other byte only places it between them)."""
    if len(cursor) > CURSOR_MAX_LENGTH or _CURSOR.fullmatch(cursor) is None:
        raise BadRequest("the cursor is malformed: pass back next_cursor as it was returned")
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("latin-1")


@router.get("", responses={200: {"model": schemas.DocumentPage}})
async def list_documents(
    library: str,
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = Query(
        None,
        description="next_cursor of the previous page: listing resumes after the id it names.",
        json_schema_extra={"pattern": CURSOR_PATTERN, "maxLength": CURSOR_MAX_LENGTH},
    ),
    tenant: str = Depends(tenant),
) -> Response:
    after = None if cursor is None else decode_cursor(cursor)
    docs, last = await api_of(request).list_documents(tenant, library, limit, after)
    return JSON({"documents": docs, "next_cursor": None if last is None else encode_cursor(last)})


@router.get("/{doc_id}", responses={200: {"model": schemas.StoredDocument}})
async def get_document(library: str, request: Request, doc_id: str = DOC_ID, tenant: str = Depends(tenant)) -> Response:
    return JSON(await api_of(request).get_document(tenant, library, addressable(doc_id)))


@router.post(
    "/delete",
    responses={200: {"model": schemas.DeletedCount}},
    openapi_extra=openapi_body(schemas.DeleteDocuments),
)
async def delete_documents(library: str, request: Request, tenant: str = Depends(tenant)) -> Response:
    body = await parse_body(request, schemas.DeleteDocuments)
    if (body.ids is None) == (body.filter is None):
        raise InvalidInput("give exactly one of ids and filter")
    filter_json = None
    if body.ids is not None:
        if not 1 <= len(body.ids) <= MAX_DELETE_IDS:
            raise InvalidInput(f"ids must hold 1 to {MAX_DELETE_IDS} document ids")
        for i, doc_id in enumerate(body.ids):
            check_name(doc_id, f"ids[{i}]")
    else:
        if parse_filter(body.filter) is None:
            raise InvalidInput("filter must not be empty: to delete every document, delete the library")
        filter_json = filter_key(body.filter)  # type: ignore[arg-type]
    deleted = await api_of(request).delete_documents(tenant, library, body.ids, filter_json, deadline_of(request))
    return JSON({"deleted": deleted})


@router.patch(
    "/{doc_id}",
    responses={200: {"model": schemas.StoredDocument}},
    openapi_extra=openapi_body(schemas.DocumentPatch),
)
async def patch_document(
    library: str, request: Request, doc_id: str = DOC_ID, tenant: str = Depends(tenant)
) -> Response:
    addressable(doc_id)
    body = await parse_body(request, schemas.DocumentPatch)
    patch = body.model_dump(include=body.model_fields_set)  # absent fields stay, null ones are removed
    patch_op(doc_id, patch)  # checked here: a bad value is a 4xx before the engine is asked
    return JSON(await api_of(request).patch_document(tenant, library, doc_id, patch))


@router.delete("/{doc_id}", status_code=204)
async def delete_document(
    library: str, request: Request, doc_id: str = DOC_ID, tenant: str = Depends(tenant)
) -> Response:
    await api_of(request).delete_document(tenant, library, addressable(doc_id))
    return Response(status_code=204)
