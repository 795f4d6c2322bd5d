"""The request bodies' rules that pydantic's models do not declare, added to their OpenAPI schemas:
the server's own checks (``server/search.py``, ``arrwdb/library/validation.py``, ``arrwdb/library/filters.py``,
``arrwdb/library/metadata.py``, ``arrwdb/library/retrieval.py``) written as JSON Schema, so that a body the schema
accepts is one the server accepts, and the reverse.  What JSON Schema cannot say stays in the
descriptions, and the server answers it with 422: what the library decides (a vector's dimension, a
cosine library's non-zero rule, its model's dimension for texts, the metadata fields group_by may
name; the repository's schemathesis.toml tells schemathesis so), a filter's depth and node count, a
keyword text's distinct words.

``rules(components, ...)`` rewrites the components in place; the model ids come from the running
configuration (``ARRWDB_MODELS``, ``ARRWDB_RERANK_MODEL``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arrwdb.engine.api import MAX_REPLICAS, MAX_SHARDS
from arrwdb.engine.document_edits import MAX_DELETE_IDS
from arrwdb.index.params import INDEX_PARAM_RULES, QUERY_PARAM_RULES
from arrwdb.library.filters import MAX_FIELD_CHARS, MAX_IN_VALUES
from arrwdb.library.inputs import FUSIONS, MODES
from arrwdb.library.metadata import MAX_INT, MAX_KEY_CHARS, MAX_KEYS, MAX_LIST_ITEMS, MAX_STRING_CHARS
from arrwdb.library.retrieval import MAX_FUSION_K, MAX_GROUP_SIZE
from arrwdb.library.validation import MAX_DIMENSION, MAX_K, RESERVED_DOCUMENT_IDS

Schema = dict[str, Any]

# Names, document ids and tenants (arrwdb.library.validation.NAME_PATTERN).  JSON Schema's "$" would also
# match before a final newline in Python's re, which the server refuses: the length is given apart.
NAME: Schema = {"type": "string", "pattern": "^[A-Za-z0-9._:-]+$", "minLength": 1, "maxLength": 256}
# Not empty once whitespace is stripped (the server's ``text.strip()``).
# A text with a character Python's str.strip() keeps (the server's "not empty" test): ECMA's \S
# differs (it keeps U+001C-U+001F and U+0085, strips U+FEFF), so the whitespace is spelt out.
NOT_BLANK = "[^\\t-\\r\\u001c-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
TEXT: Schema = {"type": "string", "pattern": NOT_BLANK}
# Base64 (standard alphabet, padded) of a whole number of float32 values: 4 bytes per value, so the
# decoded length is a multiple of 4 and not 0 (server/vectors.py).
BASE64_FLOAT32: Schema = {
    "type": "string",
    "pattern": "^(?:[A-Za-z0-9+/]{16})*(?:[A-Za-z0-9+/]{16}|[A-Za-z0-9+/]{6}==|[A-Za-z0-9+/]{11}=)$",
}
VECTOR: Schema = {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": MAX_DIMENSION}
NULL: Schema = {"type": "null"}


@dataclass(frozen=True)
class Model:
    """An embedding model as the schema needs it; dimension and vocabulary are known once it is loaded."""

    id: str
    default: bool
    dimension: int | None = None
    vocab_size: int | None = None
    matryoshka: bool = False  # /v1/embeddings may shorten its vectors to any length up to ``dimension``


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, NULL]}


def absent(*names: str) -> Schema:
    """The fields are absent or null (the server treats both alike)."""
    return {"properties": {name: NULL for name in names}}


def given(name: str) -> Schema:
    """The field is present and not null."""
    return {"required": [name], "properties": {name: {"not": NULL}}}


def implies(condition: str, then: Schema) -> Schema:
    """When ``condition`` is given (not null), ``then`` holds."""
    return {"anyOf": [absent(condition), then]}


def _integer(low: int, high: int) -> Schema:
    return {"type": "integer", "minimum": low, "maximum": high}


def _params(rules: dict[str, Any]) -> Schema:
    properties = {
        name: {"enum": list(rule)} if isinstance(rule[0], str) else _integer(*rule) for name, rule in rules.items()
    }
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _metadata(value_nullable: bool) -> Schema:
    """Flat metadata (arrwdb/library/metadata.py); in a merge patch a null value removes its key."""
    string = {"type": "string", "maxLength": MAX_STRING_CHARS}
    values = [
        string,
        {"type": "integer", "minimum": -MAX_INT - 1, "maximum": MAX_INT},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "array", "items": string, "maxItems": MAX_LIST_ITEMS},
    ]
    if value_nullable:
        values.append(NULL)
    return {
        "type": "object",
        "additionalProperties": {"anyOf": values},
        "propertyNames": {"minLength": 1, "maxLength": MAX_KEY_CHARS, "pattern": "^[^$]"},  # "$" is for filters
        "maxProperties": MAX_KEYS,
    }


def filter_components() -> dict[str, Schema]:
    """The filter language of API.md ("Filters") as recursive schemas.  Its depth (32) and node (1,024)
    limits are the server's to check."""
    scalar = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
    values = {"type": "array", "items": ref("FilterValue"), "maxItems": MAX_IN_VALUES}
    compare = {op: ref("FilterValue") for op in ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")}
    operators = {
        "type": "object",
        "properties": {**compare, "$in": values, "$nin": values, "$not": ref("FilterOperators")},
        "additionalProperties": False,
        "minProperties": 1,
        "description": "Operators on one field; several must all hold.",
    }
    filters = {"type": "array", "items": ref("Filter"), "minItems": 1}
    filter_ = {
        "type": "object",
        "description": "A metadata filter (API.md, Filters): field names map to a value (equality) or to "
        "operators; $and, $or and $not combine filters. {} matches everything. At most 32 levels deep "
        "and 1,024 nodes.",
        "properties": {"$and": filters, "$or": filters, "$not": ref("Filter")},
        # A field: any name of 1 to 256 characters that does not start with "$".
        "patternProperties": {"^[^$]": {"anyOf": [ref("FilterValue"), ref("FilterOperators")]}},
        "propertyNames": {"maxLength": MAX_FIELD_CHARS},
        "additionalProperties": False,
    }
    return {"Filter": filter_, "FilterOperators": operators, "FilterValue": scalar}


def _set(schema: Schema, name: str, value: Schema, description: str | None = None) -> None:
    """Replace a property's schema, keeping its description and default."""
    old = schema["properties"].get(name, {})
    kept = {key: old[key] for key in ("description", "default", "title") if key in old}
    if description is not None:
        kept["description"] = description
    schema["properties"][name] = {**value, **kept}


def _exactly_one(names: tuple[str, ...]) -> Schema:
    return {"oneOf": [{"allOf": [given(name), absent(*(n for n in names if n != name))]} for name in names]}


def _named(model: Model) -> Schema:
    """The request names ``model``: by its id, or (the default) by leaving ``model`` out."""
    named = {"required": ["model"], "properties": {"model": {"const": model.id}}}
    return {"anyOf": [named, absent("model")]} if model.default else named


def library_create(schema: Schema, models: list[Model]) -> None:
    _set(schema, "name", NAME, "Unique per tenant: 1 to 256 characters of [A-Za-z0-9._:-].")
    _set(schema, "dimension", nullable(_integer(1, MAX_DIMENSION)))
    _set(schema, "model", nullable({"enum": [m.id for m in models]}), "An embedding model (GET /v1/models).")
    _set(schema, "index_params", nullable({"type": "object"}))
    by_type = []
    for index_type, rules in INDEX_PARAM_RULES.items():
        branch: Schema = {"properties": {"index_type": {"const": index_type}, "index_params": nullable(_params(rules))}}
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
    _set(schema, "id", nullable({**NAME, "not": {"enum": list(RESERVED_DOCUMENT_IDS)}}))
    _set(schema, "embedding", nullable(VECTOR))
    _set(schema, "embedding_base64", nullable(BASE64_FLOAT32))
    _set(schema, "metadata", nullable(_metadata(False)))
    text_needed = {"allOf": [absent("embedding", "embedding_base64"), given("text"), {"properties": {"text": TEXT}}]}
    schema["oneOf"] = [
        {"allOf": [given("embedding"), absent("embedding_base64")]},
        {"allOf": [given("embedding_base64"), absent("embedding")]},
        text_needed,
    ]
    schema["description"] = "Needs a non-empty text or a vector (embedding or embedding_base64, not both)."


def document_patch(schema: Schema) -> None:
    _set(schema, "metadata", nullable(_metadata(True)))


def delete_documents(schema: Schema) -> None:
    ids = {"type": "array", "items": NAME, "minItems": 1, "maxItems": MAX_DELETE_IDS}
    _set(schema, "ids", nullable(ids))
    _set(schema, "filter", nullable({"allOf": [ref("Filter"), {"minProperties": 1}]}))
    schema["oneOf"] = [
        {"allOf": [given("ids"), absent("filter")]},
        {"allOf": [given("filter"), absent("ids")]},
    ]


def query(schema: Schema, rerank: bool) -> None:
    props = schema["properties"]
    _set(schema, "query", nullable(TEXT))
    _set(schema, "embedding", nullable(VECTOR))
    _set(schema, "embedding_base64", nullable(BASE64_FLOAT32))
    _set(schema, "k", _integer(1, MAX_K))
    _set(schema, "filter", nullable(ref("Filter")))
    _set(schema, "keywords", nullable(TEXT))
    _set(schema, "mode", nullable({"enum": list(MODES)}))
    _set(
        schema,
        "candidates",
        nullable(_integer(1, MAX_K)),
        "Hits each leg brings before fusion, up to 1000; a value below k + offset counts as k + offset.",
    )
    _set(
        schema,
        "offset",
        nullable(_integer(0, MAX_K - 1)),
        "Skip this many hits (or groups) first; a page ends at rank 1000 (k + offset beyond it: fewer hits).",
    )
    _set(schema, "group_by", nullable({"type": "string", "minLength": 1}))
    _set(schema, "group_size", nullable(_integer(1, MAX_GROUP_SIZE)))
    _set(schema, "score_threshold", nullable({"type": "number"}))
    if not rerank:
        props.pop("rerank")  # no reranker configured: the field is refused (404 naming ARRWDB_RERANK_MODEL)
    vectors = ("query", "embedding", "embedding_base64")
    vector_mode = {
        "allOf": [
            {"properties": {"mode": {"enum": ["vector", None]}}},
            absent("keywords", "fusion"),
            _exactly_one(vectors),
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
            _exactly_one(vectors),
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
        _set(schema, name, nullable(_integer(low, high)))


def fusion(schema: Schema) -> None:
    _set(schema, "method", {"enum": list(FUSIONS)})
    _set(schema, "k", _integer(1, MAX_FUSION_K))
    weights = {
        "type": "array",
        "items": {"type": "number", "minimum": 0},
        "minItems": 2,
        "maxItems": 2,
        "contains": {"exclusiveMinimum": 0},  # not both 0
    }
    _set(schema, "weights", nullable(weights))


def embed_request(schema: Schema, models: list[Model]) -> None:
    _set(schema, "texts", {"type": "array", "items": TEXT, "minItems": 1, "maxItems": 1000})
    _set(schema, "model", nullable({"enum": [m.id for m in models]}))


def _input_shapes(max_inputs: int, vocab_size: int | None) -> Schema:
    highest = 2**31 - 1 if vocab_size is None else vocab_size - 1
    tokens = {"type": "array", "items": _integer(0, highest), "minItems": 1}
    shapes = [
        TEXT,
        {"type": "array", "items": TEXT, "minItems": 1, "maxItems": max_inputs},
        tokens,
        {"type": "array", "items": tokens, "minItems": 1, "maxItems": max_inputs},
    ]
    return {"anyOf": shapes}


def embeddings_request(schema: Schema, models: list[Model], max_inputs: int) -> None:
    _set(
        schema,
        "input",
        _input_shapes(max_inputs, None),
        "A text, texts, token ids or lists of token ids (ids of the model's vocabulary).",
    )
    _set(schema, "model", nullable({"enum": [m.id for m in models]}))
    _set(
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
            shortened = _integer(1, model.dimension) if model.matryoshka else {"const": model.dimension}
            rules["dimensions"] = nullable(shortened)
        per_model.append({"allOf": [_named(model), {"properties": rules}]})
    schema["anyOf"] = per_model


def rerank_request(schema: Schema, rerankers: list[str]) -> None:
    _set(schema, "query", TEXT)
    _set(schema, "model", nullable({"enum": rerankers}))


def rerank_spec(schema: Schema, rerankers: list[str]) -> None:
    _set(schema, "model", nullable({"enum": rerankers}))


def api_key_create(schema: Schema) -> None:
    _set(schema, "tenant", NAME)


def _bounds_as_json_schema(schema: Any) -> None:
    """pydantic writes a bound of an optional annotated integer as ``ge``/``le`` inside its ``anyOf``;
    JSON Schema's words are ``minimum``/``maximum``."""
    if isinstance(schema, dict):
        for ours, theirs in (
            ("ge", "minimum"),
            ("le", "maximum"),
            ("gt", "exclusiveMinimum"),
            ("lt", "exclusiveMaximum"),
        ):
            if ours in schema and "type" in schema:
                schema[theirs] = schema.pop(ours)
        for value in schema.values():
            _bounds_as_json_schema(value)
    elif isinstance(schema, list):
        for item in schema:
            _bounds_as_json_schema(item)


def apply(
    components: dict[str, Schema], models: list[Model], rerankers: list[str], max_inputs: int, clustered: bool = False
) -> None:
    """Add the rules to the request components (named as their pydantic models); ``clustered``: the
    engines run on Ray (``--ray``), where a library may have more than one shard."""
    for schema in components.values():
        _bounds_as_json_schema(schema)
    components.update(filter_components())
    library_create(components["LibraryCreate"], models)
    # One shard, one copy of it, without Ray (arrwdb.engine.api.check_layout).
    _set(components["LibraryCreate"], "shards", _integer(1, MAX_SHARDS if clustered else 1))
    _set(components["LibraryCreate"], "replicas", _integer(1, MAX_REPLICAS if clustered else 1))
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
