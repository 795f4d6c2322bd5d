"""Helpers that write JSON Schema: a reference to a component, a nullable value, fields absent, given
or implied by another, an integer range, exactly one of some fields, a property's schema replaced
with its description kept, and pydantic's bounds renamed to JSON Schema's words."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

NULL: Schema = {"type": "null"}


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


def integer(low: int, high: int) -> Schema:
    return {"type": "integer", "minimum": low, "maximum": high}


def set_property(schema: Schema, name: str, value: Schema, description: str | None = None) -> None:
    """Replace a property's schema, keeping its description and default."""
    old = schema["properties"].get(name, {})
    kept = {key: old[key] for key in ("description", "default", "title") if key in old}
    if description is not None:
        kept["description"] = description
    schema["properties"][name] = {**value, **kept}


def exactly_one(names: tuple[str, ...]) -> Schema:
    return {"oneOf": [{"allOf": [given(name), absent(*(n for n in names if n != name))]} for name in names]}


def bounds_as_json_schema(schema: Any) -> None:
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
            bounds_as_json_schema(value)
    elif isinstance(schema, list):
        for item in schema:
            bounds_as_json_schema(item)
