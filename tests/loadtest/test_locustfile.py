"""The Locust profile, checked without importing Locust (it monkey-patches the process with gevent):
its requests against the server's OpenAPI schema, and its users against the guide."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from arrwdb.config import Settings
from arrwdb.server.app import create_app
from tests.loadtest.openapi_check import OpenApi

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtest" / "locustfile.py"
METHODS = {"get", "post", "put", "patch", "delete"}


class Requests(ast.NodeVisitor):
    """Every ``self.client.<method>(url, json=...)`` call, with its path and the shape of its body."""

    def __init__(self, module: ast.Module) -> None:
        self.functions = {n.name: n for n in ast.walk(module) if isinstance(n, ast.FunctionDef)}
        self.requests: list[dict[str, Any]] = []
        self.function: ast.FunctionDef | None = None

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        outer, self.function = self.function, node
        self.generic_visit(node)
        self.function = outer

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        is_client = isinstance(f, ast.Attribute) and isinstance(f.value, ast.Attribute) and f.value.attr == "client"
        if is_client and f.attr in METHODS:
            path, _, query = _url(node.args[0]).partition("?")
            body = next((k.value for k in node.keywords if k.arg == "json"), None)
            self.requests.append(
                {
                    "method": f.attr.upper(),
                    "path": path,
                    "query": [pair.split("=")[0] for pair in query.split("&") if pair],
                    "body": None if body is None else self.shape(body, self.function),
                    "line": node.lineno,
                }
            )
        self.generic_visit(node)

    def shape(self, node: ast.AST, scope: ast.FunctionDef | None) -> dict[str, Any]:
        if isinstance(node, ast.Dict):
            fields = {k.value: self.shape(v, scope) for k, v in zip(node.keys, node.values, strict=True)}
            if scope is not None:  # keys added later: body["filter"] = ...
                for stmt in ast.walk(scope):
                    for target in getattr(stmt, "targets", []):
                        if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant):
                            fields[target.slice.value] = self.shape(stmt.value, scope)
            return {"kind": "object", "fields": fields}
        if isinstance(node, ast.List | ast.ListComp):
            items = node.elts if isinstance(node, ast.List) else [node.elt]
            return {"kind": "array", "items": [self.shape(item, scope) for item in items]}
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in self.functions:
            function = self.functions[node.func.id]
            returned = next(n.value for n in ast.walk(function) if isinstance(n, ast.Return) and n.value is not None)
            return self.shape(returned, function)
        if isinstance(node, ast.Name) and scope is not None:
            bound = [
                n.value
                for n in ast.walk(scope)
                if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == node.id for t in n.targets)
            ]
            if bound:
                return self.shape(bound[-1], scope)
        return {"kind": "value"}


def _url(node: ast.AST) -> str:
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(str(part.value) if isinstance(part, ast.Constant) else "{}" for part in node.values)
    raise AssertionError(f"line {node.lineno}: the URL is neither a string nor an f-string")


@pytest.fixture(scope="module")
def module() -> ast.Module:
    return ast.parse(LOCUSTFILE.read_text(), filename=str(LOCUSTFILE))


def test_every_request_matches_the_openapi_schema(module, tmp_path):
    api = OpenApi(create_app(Settings(data_dir=tmp_path)).openapi())
    visitor = Requests(module)
    visitor.visit(module)
    used = {(r["method"], r["path"]) for r in visitor.requests}
    assert {
        ("POST", "/v1/libraries"),
        ("POST", "/v1/libraries/{}/search"),
        ("POST", "/v1/libraries/{}/documents"),
        ("GET", "/v1/libraries/{}/statistics"),
        ("GET", "/v1/libraries/{}/documents"),
        ("DELETE", "/v1/libraries/{}"),
    } <= used
    problems = [p for r in visitor.requests for p in api.check_request(r, f"locustfile.py:{r['line']}")]
    assert problems == []


def _class(module: ast.Module, name: str) -> ast.ClassDef:
    return next(n for n in module.body if isinstance(n, ast.ClassDef) and n.name == name)


def _task_weights(cls: ast.ClassDef) -> dict[str, int]:
    weights = {}
    for node in cls.body:
        for decorator in getattr(node, "decorator_list", []):
            if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "task":
                weights[node.name] = decorator.args[0].value
            elif isinstance(decorator, ast.Name) and decorator.id == "task":
                weights[node.name] = 1
    return weights


def test_the_users_follow_the_guide(module):
    assert sorted(_task_weights(_class(module, "ApiUser")).values()) == [1, 2, 5, 10]
    assert list(_task_weights(_class(module, "WorkflowUser")).values()) == [1]
    base = _class(module, "_ArrwdbUser")
    wait = next(n.value for n in base.body if isinstance(n, ast.Assign) and n.targets[0].id == "wait_time")
    assert [a.value for a in wait.args] == [1, 3]


def test_the_batching_headers_are_recorded(module):
    metrics = next(
        n.value
        for n in module.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "HEADER_METRICS"
    )
    assert [entry.elts[0].value for entry in metrics.elts] == ["X-Queue-Ms", "X-Compute-Ms", "X-Batch-Size"]
