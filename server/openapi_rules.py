"""The request bodies' rules that pydantic's models do not declare, added to their OpenAPI schemas:
the server's own checks (``server/search.py``, ``arrwdb/library/validation.py``, ``arrwdb/library/filters.py``,
``arrwdb/library/metadata.py``, ``arrwdb/library/retrieval.py``) written as JSON Schema, so that a body the schema
accepts is one the server accepts, and the reverse.  What JSON Schema cannot say stays in the
descriptions, and the server answers it with 422: what the library decides (a vector's dimension, a
cosine library's non-zero rule, its model's dimension for texts, the metadata fields group_by may
name; the repository's schemathesis.toml tells schemathesis so), a filter's depth and node count, a
keyword text's distinct words.

``rules(components, ...)`` rewrites the components in place; the model ids come from the running
configuration (``ARRWDB_MODELS``, ``ARRWDB_RERANK_MODEL``).  The JSON Schema helpers are
``server/json_schema.py``'s and the value schemas the rules share ``server/openapi_values.py``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from arrwdb.engine.api import MAX_REPLICAS, MAX_SHARDS
from arrwdb.engine.document_edits import MAX_DELETE_IDS
from arrwdb.index.params import INDEX_PARAM_RULES, QUERY_PARAM_RULES
from arrwdb.library.inputs import FUSIONS, MODES
from arrwdb.library.retrieval import MAX_FUSION_K, MAX_GROUP_SIZE
from arrwdb.library.validation import MAX_DIMENSION, MAX_K, RESERVED_DOCUMENT_IDS
from arrwdb.server.json_schema import (
    Schema,
    absent,
    bounds_as_json_schema,
    exactly_one,
    given,
    implies,
    integer,
    nullable,
    ref,
    set_property,
)
from arrwdb.server.openapi_values import BASE64_FLOAT32, NAME, TEXT, VECTOR, filter_components, index_params, metadata


@dataclass(frozen=True)
class Model:
    """An embedding model as the schema needs it; dimension and vocabulary are known once it is loaded."""

    id: str
    default: bool
    dimension: int | None = None
    vocab_size: int | None = None
    matryoshka: bool = False  # /v1/embeddings may shorten its vectors to any length up to ``dimension``


def _named(model: Model) -> Schema:
    """The request names ``model``: by its id, or (the default) by leaving ``model`` out."""
    named = {"required": ["model"], "properties": {"model": {"const": model.id}}}
    return {"anyOf": [named, absent("model")]} if model.default else named


def library_create(schema: Schema, models: list[Model]) -> None:
    set_property(schema, "name", NAME, "Unique per tenant: 1 to 256 characters of [A-Za-z0-9._:-].")
    set_property(schema, "dimension", nullable(integer(1, MAX_DIMENSION)))
    set_property(schema, "model", nullable({"enum": [m.id for m in models]}), "An embedding model (GET /v1/models).")
    set_property(schema, "index_params", nullable({"type": "object"}))
    by_type = []
    for index_type, rules in INDEX_PARAM_RULES.items():
        branch: Schema = {
            "properties": {"index_type": {"const": index_type}, "index_params": nullable(index_params(rules))}
        }
        if index_type != "brute_force":  # an absent index_type is brute_force
            branch["required"] = ["index_type"]
        by_type.append(branch)
    pq = {"properties": {"index_params": {"properties": {"encoding": {"const": "pq"}}, "required": ["encoding"]}}}
    # A library's dimension follows its model: a dimension given with a model must be the model's.
    # Without a model, the dimension is free (the default model's when absent).
    dimension_rules: list[Schema] = [absent("model")]
    divisible = [m for m in models if m.dimension is not None and m.dimension % 8 == 0]
    for model in models:
        if model.dimension is None:
            dimension_rules.append({"required": ["model"], "properties": {"model": {"const": model.id}}})
        else:
            dimension_rules.append(
                {
                    "required": ["model"],
                    "properties": {"model": {"const": model.id}, "dimension": nullable({"const": model.dimension})},
                }
            )
    pq_dimension: list[Schema] = [
        {"not": pq},
        {"properties": {"dimension": {"multipleOf": 8}}, "required": ["dimension"]},
    ]
    unknown = [m for m in models if m.dimension is None]
    pq_dimension += [{"allOf": [absent("dimension"), _named(m)]} for m in divisible + unknown]
    # pq codes split a vector into 8 parts.
    schema["allOf"] = [{"oneOf": by_type}, {"anyOf": dimension_rules}, {"anyOf": pq_dimension}]


def document(schema: Schema) -> None:
    set_property(schema, "id", nullable({**NAME, "not": {"enum": list(RESERVED_DOCUMENT_IDS)}}))
    set_property(schema, "embedding", nullable(VECTOR))
    set_property(schema, "embedding_base64", nullable(BASE64_FLOAT32))
    set_property(schema, "metadata", nullable(metadata(False)))
    text_needed = {"allOf": [absent("embedding", "embedding_base64"), given("text"), {"properties": {"text": TEXT}}]}
    schema["oneOf"] = [
        {"allOf": [given("embedding"), absent("embedding_base64")]},
        {"allOf": [given("embedding_base64"), absent("embedding")]},
        text_needed,
    ]
    schema["description"] = "Needs a non-empty text or a vector (embedding or embedding_base64, not both)."


def document_patch(schema: Schema) -> None:
    set_property(schema, "metadata", nullable(metadata(True)))


def delete_documents(schema: Schema) -> None:
    ids = {"type": "array", "items": NAME, "minItems": 1, "maxItems": MAX_DELETE_IDS}
    set_property(schema, "ids", nullable(ids))
    set_property(schema, "filter", nullable({"allOf": [ref("Filter"), {"minProperties": 1}]}))
    schema["oneOf"] = [
        {"allOf": [given("ids"), absent("filter")]},
        {"allOf": [given("filter"), absent("ids")]},
    ]


def query(schema: Schema, rerank: bool) -> None:
    props = schema["properties"]
    set_property(schema, "query", nullable(TEXT))
    set_property(schema, "embedding", nullable(VECTOR))
    set_property(schema, "embedding_base64", nullable(BASE64_FLOAT32))
    set_property(schema, "k", integer(1, MAX_K))
    set_property(schema, "filter", nullable(ref("Filter")))
    set_property(schema, "keywords", nullable(TEXT))
    set_property(schema, "mode", nullable({"enum": list(MODES)}))
    set_property(
        schema,
        "candidates",
        nullable(integer(1, MAX_K)),
        "Hits each leg brings before fusion, up to 1000; a value below k + offset counts as k + offset.",
    )
    set_property(
        schema,
        "offset",
        nullable(integer(0, MAX_K - 1)),
        "Skip this many hits (or groups) first; a page ends at rank 1000 (k + offset beyond it: fewer hits).",
    )
    set_property(schema, "group_by", nullable({"type": "string", "minLength": 1}))
    set_property(schema, "group_size", nullable(integer(1, MAX_GROUP_SIZE)))
    set_property(schema, "score_threshold", nullable({"type": "number"}))
    if not rerank:
        props.pop("rerank")  # no reranker configured: the field is refused (404 naming ARRWDB_RERANK_MODEL)
    vectors = ("query", "embedding", "embedding_base64")
    vector_mode = {
        "allOf": [
            {"properties": {"mode": {"enum": ["vector", None]}}},
            absent("keywords", "fusion"),
            exactly_one(vectors),
        ]
    }
    keyword_mode = {
        "allOf": [
            {"required": ["mode"], "properties": {"mode": {"const": "keyword"}}},
            absent("embedding", "embedding_base64", "fusion"),
            {"anyOf": [given("query"), given("keywords")]},
        ]
    }
    hybrid_mode = {
        "allOf": [
            {"required": ["mode"], "properties": {"mode": {"const": "hybrid"}}},
            exactly_one(vectors),
            {"anyOf": [given("query"), given("keywords")]},  # a vector query needs the keyword leg's text
        ]
    }
    rules: list[Schema] = [
        {"oneOf": [vector_mode, keyword_mode, hybrid_mode]},
        implies("group_size", given("group_by")),
    ]
    if rerank:
        rules.append(implies("rerank", {"allOf": [given("query"), absent("group_by")]}))
    schema["allOf"] = rules
    schema["description"] = (
        "Exactly one of query, embedding and embedding_base64 (mode keyword: query or keywords, no vector; "
        "mode hybrid with a vector: keywords too)."
    )


def query_params(schema: Schema) -> None:
    for name, (low, high) in QUERY_PARAM_RULES.items():
        set_property(schema, name, nullable(integer(low, high)))


def fusion(schema: Schema) -> None:
    set_property(schema, "method", {"enum": list(FUSIONS)})
    set_property(schema, "k", integer(1, MAX_FUSION_K))
    weights = {
        "type": "array",
        "items": {"type": "number", "minimum": 0},
        "minItems": 2,
        "maxItems": 2,
        "contains": {"exclusiveMinimum": 0},  # not both 0
    }
    set_property(schema, "weights", nullable(weights))


def embed_request(schema: Schema, models: list[Model]) -> None:
    set_property(schema, "texts", {"type": "array", "items": TEXT, "minItems": 1, "maxItems": 1000})
    set_property(schema, "model", nullable({"enum": [m.id for m in models]}))


def _input_shapes(max_inputs: int, vocab_size: int | None) -> Schema:
    highest = 2**31 - 1 if vocab_size is None else vocab_size - 1
    tokens = {"type": "array", "items": integer(0, highest), "minItems": 1}
    shapes = [
        TEXT,
        {"type": "array", "items": TEXT, "minItems": 1, "maxItems": max_inputs},
        tokens,
        {"type": "array", "items": tokens, "minItems": 1, "maxItems": max_inputs},
    ]
    return {"anyOf": shapes}


def embeddings_request(schema: Schema, models: list[Model], max_inputs: int) -> None:
    set_property(
        schema,
        "input",
        _input_shapes(max_inputs, None),
        "A text, texts, token ids or lists of token ids (ids of the model's vocabulary).",
    )
    set_property(schema, "model", nullable({"enum": [m.id for m in models]}))
    set_property(
        schema,
        "dimensions",
        nullable({"type": "integer", "minimum": 1}),
        "The model's own dimension, or up to it for a model of ARRWDB_MATRYOSHKA_MODELS.",
    )
    # Token ids within the model's vocabulary; dimensions the model's own, or up to it (Matryoshka).
    per_model = []
    for model in models:
        rules: dict[str, Schema] = {"input": _input_shapes(max_inputs, model.vocab_size)}
        if model.dimension is not None:
            shortened = integer(1, model.dimension) if model.matryoshka else {"const": model.dimension}
            rules["dimensions"] = nullable(shortened)
        per_model.append({"allOf": [_named(model), {"properties": rules}]})
    schema["anyOf"] = per_model


def rerank_request(schema: Schema, rerankers: list[str]) -> None:
    set_property(schema, "query", TEXT)
    set_property(schema, "model", nullable({"enum": rerankers}))


def rerank_spec(schema: Schema, rerankers: list[str]) -> None:
    set_property(schema, "model", nullable({"enum": rerankers}))


def api_key_create(schema: Schema) -> None:
    set_property(schema, "tenant", NAME)


def apply(
    components: dict[str, Schema], models: list[Model], rerankers: list[str], max_inputs: int, clustered: bool = False
) -> None:
    """Add the rules to the request components (named as their pydantic models); ``clustered``: the
    engines run on Ray (``--ray``), where a library may have more than one shard."""
    for schema in components.values():
        bounds_as_json_schema(schema)
    components.update(filter_components())
    library_create(components["LibraryCreate"], models)
    # One shard, one copy of it, without Ray (arrwdb.engine.api.check_layout).
    set_property(components["LibraryCreate"], "shards", integer(1, MAX_SHARDS if clustered else 1))
    set_property(components["LibraryCreate"], "replicas", integer(1, MAX_REPLICAS if clustered else 1))
    document(components["Document"])
    document_patch(components["DocumentPatch"])
    delete_documents(components["DeleteDocuments"])
    query(components["Query"], bool(rerankers))
    query_params(components["QueryParams"])
    fusion(components["Fusion"])
    embed_request(components["EmbedRequest"], models)
    embeddings_request(components["EmbeddingsRequest"], models, max_inputs)
    api_key_create(components["ApiKeyCreate"])
    if rerankers:
        rerank_request(components["RerankRequest"], rerankers)
        rerank_spec(components["RerankSpec"], rerankers)
    else:
        for name in ("RerankRequest", "RerankSpec", "RerankResponse", "RerankResult"):
            components.pop(name, None)
