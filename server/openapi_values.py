"""The value schemas the request rules share: names, non-blank texts, vectors and their base64 form,
an index type's parameters, flat metadata, and the filter language as recursive schemas."""

from __future__ import annotations

from typing import Any

from arrwdb.library.filters import MAX_FIELD_CHARS, MAX_IN_VALUES
from arrwdb.library.metadata import MAX_INT, MAX_KEY_CHARS, MAX_KEYS, MAX_LIST_ITEMS, MAX_STRING_CHARS
from arrwdb.library.validation import MAX_DIMENSION
from arrwdb.server.json_schema import NULL, Schema, integer, ref

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


def index_params(rules: dict[str, Any]) -> Schema:
    properties = {
        name: {"enum": list(rule)} if isinstance(rule[0], str) else integer(*rule) for name, rule in rules.items()
    }
    return {"type": "object", "properties": properties, "additionalProperties": False}


def metadata(value_nullable: bool) -> Schema:
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
