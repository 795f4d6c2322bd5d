"""Request and response bodies.  Strict: no "1.5" -> 1.5, no true -> 1, no NaN or 1e999; unknown
fields are refused so a typo ("filtr") is an error, not a silently unfiltered search."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, WithJsonSchema


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


def whole_number(value: Any) -> Any:
    """``2.0`` as the integer 2: JSON has one number type, and JSON Schema's "integer" (the OpenAPI
    schema's) is any number without a fraction.  Anything else is left to the strict check."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


# An integer field: strict (no "1", no true, no 1.5), but 2.0 is 2.
Int = Annotated[int, BeforeValidator(whole_number)]


Scalar = str | int | float | bool
MetadataValue = Scalar | list[str]
# Metadata is checked by arrwdb.library.metadata.validate_metadata, whose messages name the key and say what a
# value may be (pydantic's union errors list one failure per allowed type instead); the schema still
# declares the allowed values.
MetadataField = Annotated[
    dict[str, Any] | None, WithJsonSchema(TypeAdapter(dict[str, MetadataValue] | None).json_schema())
]


class LibraryCreate(Strict):
    name: str
    dimension: Int | None = Field(None, description="1 to 4096; defaults to the embedding model's (384).")
    index_type: Literal["brute_force", "ivf", "hnsw"] = "brute_force"
    metric: Literal["cosine", "ip", "l2"] = "cosine"
    index_params: dict[str, Any] | None = Field(
        None, description="ivf: nlist, nprobe; hnsw: m, ef_construction, ef_search."
    )
    model: str | None = Field(
        None, description="The embedding model of its texts (GET /v1/models); the dimension follows it."
    )
    shards: int = Field(
        1, ge=1, le=64, description="Parts the documents are spread over (by id); more than 1 needs --ray."
    )
    replicas: int = Field(
        1,
        ge=1,
        le=8,
        description="Copies of each shard, each on its own engine; more than 1 needs --ray (docs/SCALING.md).",
    )


class Library(BaseModel):
    id: str
    name: str
    dimension: int
    index_type: str
    metric: str
    index_params: dict[str, Any]
    document_count: int
    created_at: str
    model: str | None = None
    shards: int = 1
    replicas: int = 1


class ReplicaAdd(Strict):
    engine: str = Field(
        ..., min_length=1, max_length=64, description="The engine to hold the new copy (GET /v1/cluster lists them)."
    )


class ShardLayout(BaseModel):
    library: str
    shard: int
    epoch: int
    primary: str
    copies: list[str]
    in_sync: list[str]


class LibraryList(BaseModel):
    libraries: list[Library]


EMBEDDING_BASE64 = Field(
    None,
    description="Instead of embedding: the vector as base64 of its little-endian float32 values "
    "(as OpenAI's encoding_format=base64). Fewer bytes than a JSON list, parsed without making a "
    "Python float per value.",
)


class Document(Strict):
    id: str | None = Field(None, description="1 to 256 characters of [A-Za-z0-9._:-]; generated if absent.")
    title: str | None = None
    text: str | None = None
    embedding: list[float] | None = None
    embedding_base64: str | None = EMBEDDING_BASE64
    metadata: MetadataField = Field(None, description="Keys to a string, a number, a boolean or a list of strings.")


class DocumentBatch(Strict):
    documents: list[Document] = Field(min_length=1, max_length=1000)


class DocumentId(BaseModel):
    id: str


class DocumentIds(BaseModel):
    ids: list[str]


class DocumentPatch(Strict):
    title: str | None = Field(None, description="The new title; null removes it; absent keeps it.")
    metadata: dict[str, Any] | None = Field(
        None, description="JSON merge patch: keys to set; a null value removes its key; absent keys stay."
    )


class DeleteDocuments(Strict):
    ids: list[str] | None = Field(None, description="1 to 1000 document ids (exactly one of ids and filter).")
    filter: dict[str, Any] | None = Field(None, description="Delete every document whose metadata matches.")


class DeletedCount(BaseModel):
    deleted: int


class StoredDocument(BaseModel):
    """A document as the server answers it: ``embedding`` only when the client gave the vector."""

    id: str
    title: str | None
    text: str | None
    metadata: dict[str, Any]
    embedding: list[float] | None = None


class DocumentPage(BaseModel):
    documents: list[StoredDocument]
    next_cursor: str | None


class QueryParams(Strict):
    ef_search: Int | None = None
    nprobe: Int | None = None

    def given(self) -> dict[str, int]:
        """The parameters the client set (``model_dump(exclude_none=True)`` at a third of its cost: a
        batch request holds one per query)."""
        return {name: value for name, value in self.__dict__.items() if value is not None}


class RerankSpec(Strict):
    candidates: Int = Field(ge=1, le=1000, description="Top hits scored by the cross-encoder before k is cut.")
    model: str | None = Field(None, description="A reranking model of GET /v1/models; defaults to the loaded one.")


class Fusion(Strict):
    method: Literal["rrf", "dbsf"] = "rrf"
    k: Int = Field(60, description="RRF's rank constant: a hit's score is sum(weight / (k + rank)).")
    weights: list[float] | None = Field(None, description="[vector, keyword]; default [1, 1].")


class Query(Strict):
    query: str | None = None
    embedding: list[float] | None = None
    embedding_base64: str | None = EMBEDDING_BASE64
    k: Int = 10
    filter: dict[str, Any] | None = None
    include_text: bool = True
    params: QueryParams | None = None
    rerank: RerankSpec | None = None
    mode: Literal["vector", "keyword", "hybrid"] | None = Field(
        None, description="vector (default), keyword (BM25 over the chunks' text) or hybrid (both, fused)."
    )
    keywords: str | None = Field(None, description="The keyword leg's text; defaults to query.")
    fusion: Fusion | None = Field(None, description='How hybrid fuses; default {"method": "rrf", "k": 60}.')
    candidates: Int | None = Field(None, description="Hits each leg brings before fusion (k to 1000).")
    score_threshold: float | None = Field(None, description="Hits scoring below it are left out.")
    offset: Int | None = Field(None, description="Skip this many hits (or groups) first; k + offset <= 1000.")
    group_by: str | None = Field(None, description='"document_id" or a metadata field: answer with groups.')
    group_size: Int | None = Field(None, description="Hits per group (1 to 100), default 1.")


class QueryBatch(Strict):
    queries: list[Query] = Field(min_length=1, max_length=1000)


class Hit(BaseModel):
    document_id: str
    chunk_index: int
    score: float
    title: str | None
    text: str | None
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    results: list[Hit]
    took_ms: float


class Group(BaseModel):
    key: Any
    hits: list[Hit]


class GroupsResponse(BaseModel):
    groups: list[Group]
    took_ms: float


class BatchSearchResponse(BaseModel):
    results: list[list[Hit] | list[Group]]  # a query with group_by: its groups
    took_ms: float


class EmbedRequest(Strict):
    texts: list[str] = Field(min_length=1, max_length=1000)
    model: str | None = Field(None, description="A model of GET /v1/models; defaults to the packaged MiniLM.")


class EmbedResponse(BaseModel):
    embeddings: list[list[float]]
    dimension: int


# OpenAI's input: checked by server/openai_api.embedding_inputs, whose messages say which shape is
# expected (pydantic's union errors list a failure per shape); the schema still declares the shapes.
_INPUT_SHAPES = TypeAdapter(str | list[str] | list[int] | list[list[int]]).json_schema()
EmbeddingsInput = Annotated[Any, WithJsonSchema(_INPUT_SHAPES)]


class EmbeddingsRequest(Strict):
    """OpenAI's embeddings request.  ``user`` is accepted and ignored, as by other OpenAI-compatible servers."""

    input: EmbeddingsInput
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Int | None = Field(
        None,
        ge=1,
        description="The model's own dimension, or for a model of ARRWDB_MATRYOSHKA_MODELS any length up to it "
        "(the vectors' first values, re-normalised).",
    )
    user: str | None = None


class EmbeddingData(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"]
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingsUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    kind: str
    dimension: int | None
    max_tokens: int
    default: bool
    matryoshka: bool = Field(False, description="Whether /v1/embeddings may shorten its vectors (`dimensions`).")
    memory_bytes: int


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class RerankRequest(Strict):
    """Cohere's / TEI's / Infinity's rerank request."""

    query: str
    documents: list[str] = Field(min_length=1, max_length=1000)
    top_n: Int | None = Field(None, ge=1, description="How many results; defaults to every document.")
    return_documents: bool = False
    model: str | None = None


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: str | None = None


class RerankResponse(BaseModel):
    model: str
    results: list[RerankResult]


class Statistics(BaseModel):
    document_count: int
    documents_loaded: bool  # False briefly after a restart: filtered searches wait until it is True
    chunk_count: int
    vector_count: int
    dimension: int
    index_type: str
    metric: str
    index: dict[str, Any]
    memory_bytes: int
    model: str | None = None
    model_memory_bytes: int = 0
    keyword_index: dict[str, Any] | None = Field(
        None, description="The FTS5 keyword index: state, type, rows (chunks indexed) and bytes."
    )


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    LibraryCreate,
    Document,
    DocumentBatch,
    DocumentPatch,
    DeleteDocuments,
    Query,
    QueryBatch,
    EmbedRequest,
    EmbeddingsRequest,
    RerankRequest,
    ReplicaAdd,
)
