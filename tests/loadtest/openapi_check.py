"""Check the requests a load script makes against the server's OpenAPI schema: the path and method
exist, every query parameter and JSON body field is declared (with the required ones present), and
every response field the script reads is in the response schema.

Request bodies arrive as *shapes* (see loadtest/k6/tools/extract.mjs): ``{"kind": "object", "fields":
{...}}``, ``{"kind": "array", "items": [...]}``, ``{"kind": "anyOf", "options": [...]}`` or
``{"kind": "value"}`` (a scalar or anything not analysed further).  Values are not type-checked.
"""

from __future__ import annotations

import re
from typing import Any

Shape = dict[str, Any]

_PARAM = re.compile(r"\{[^}]*\}")


def _normal(path: str) -> str:
    return _PARAM.sub("{}", path.rstrip("/") or "/")


class OpenApi:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.paths = {_normal(path): ops for path, ops in schema["paths"].items()}

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = self.schema["components"]["schemas"][name]
        return schema

    def options(self, schema: dict[str, Any]) -> list[dict[str, Any]]:
        """The alternatives of a schema (anyOf/oneOf), resolved, without null."""
        schema = self.resolve(schema)
        alternatives = schema.get("anyOf") or schema.get("oneOf")
        if not alternatives or "properties" in schema:  # an object's oneOf only adds rules on its fields
            return [schema]
        out = []
        for alternative in alternatives:
            out.extend(o for o in self.options(alternative) if o.get("type") != "null")
        return out

    def check_request(self, request: dict[str, Any], where: str) -> list[str]:
        """Every problem of one request, as readable lines (empty: it matches the schema)."""
        method, path = request["method"], request.get("path")
        if path is None:
            return [f"{where}: no analysable path"]
        operations = self.paths.get(_normal(path))
        if operations is None:
            return [f"{where}: {method} {path}: no such path in the OpenAPI schema"]
        operation = operations.get(method.lower())
        if operation is None:
            return [f"{where}: {method} {path}: the path has no {method} operation"]
        where = f"{where}: {method} {path}"
        problems = []
        declared = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
        problems += [
            f"{where}: unknown query parameter {name!r}" for name in request.get("query", []) if name not in declared
        ]
        body = request.get("body")
        if body is not None:
            schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if schema is None:
                problems.append(f"{where}: sends a JSON body, but the operation takes none")
            else:
                problems += self.check_shape(body, schema, f"{where} body")
        for field in request.get("fields", []):
            if not self.response_has(operation, field):
                problems.append(f"{where}: reads response field {field!r}, not in the response schema")
        return problems

    def response_has(self, operation: dict[str, Any], field: str) -> bool:
        for status, response in operation.get("responses", {}).items():
            if not status.startswith("2"):
                continue
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            if schema and any(field in option.get("properties", {}) for option in self.options(schema)):
                return True
        return False

    def check_shape(self, shape: Shape, schema: dict[str, Any], where: str) -> list[str]:
        kind = shape["kind"]
        if kind == "value":
            return []
        if kind == "anyOf":
            return [p for option in shape["options"] for p in self.check_shape(option, schema, where)]
        best: list[str] | None = None
        for option in self.options(schema):
            problems = self._check_one(shape, option, where)
            if not problems:
                return []
            if best is None or len(problems) < len(best):
                best = problems
        return best or [f"{where}: no schema accepts a {kind}"]

    def _check_one(self, shape: Shape, schema: dict[str, Any], where: str) -> list[str]:
        if shape["kind"] == "array":
            if schema.get("type") != "array":
                return [f"{where}: an array where the schema wants {schema.get('type', 'something else')}"]
            items = schema.get("items", {})
            return [p for i, item in enumerate(shape["items"]) for p in self.check_shape(item, items, f"{where}[{i}]")]
        if schema.get("type") != "object" and "properties" not in schema:
            return [f"{where}: an object where the schema wants {schema.get('type', 'something else')}"]
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", False)
        problems = []
        patterns = schema.get("patternProperties", {})
        for name, value in shape["fields"].items():
            pattern = next((p for p in patterns if re.search(p, name)), None)
            if name in properties:
                problems += self.check_shape(value, properties[name], f"{where}.{name}")
            elif pattern is not None:
                problems += self.check_shape(value, patterns[pattern], f"{where}.{name}")
            elif isinstance(extra, dict):
                problems += self.check_shape(value, extra, f"{where}.{name}")
            elif not extra:
                problems.append(f"{where}: unknown field {name!r}")
        problems += [
            f"{where}: required field {name!r} missing"
            for name in schema.get("required", [])
            if name not in shape["fields"]
        ]
        return problems
