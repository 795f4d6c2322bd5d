"""Search responses serialise inputs.Hit directly (no dict per hit): its fields must be the API's Hit."""

from __future__ import annotations

import dataclasses

import orjson

from arrwdb.library.inputs import Hit
from arrwdb.server import schemas
from arrwdb.server.responses import JSON


def test_hit_fields_are_the_api_hit_in_order() -> None:
    assert tuple(f.name for f in dataclasses.fields(Hit)) == tuple(schemas.Hit.model_fields)


def test_hits_render_as_the_api_objects() -> None:
    hits = [Hit("d1", 0, 0.5, "T", None, {"tag": ["a"], "n": 2}), Hit("d2", 3, -1.25, None, "text", {})]
    rendered = JSON({"results": [hits], "took_ms": 1.5}).body
    expected = [
        {
            "document_id": "d1",
            "chunk_index": 0,
            "score": 0.5,
            "title": "T",
            "text": None,
            "metadata": {"tag": ["a"], "n": 2},
        },
        {"document_id": "d2", "chunk_index": 3, "score": -1.25, "title": None, "text": "text", "metadata": {}},
    ]
    assert rendered == orjson.dumps({"results": [expected], "took_ms": 1.5})


def test_query_params_given_is_model_dump_without_nones() -> None:
    # search_input reads a query's parameters with QueryParams.given, not pydantic's model_dump (a
    # third of the cost, once per query of a batch): both must agree for every field set or unset.
    fields = list(schemas.QueryParams.model_fields)
    for mask in range(1 << len(fields)):
        values = {name: 7 + i for i, name in enumerate(fields) if mask >> i & 1}
        params = schemas.QueryParams.model_validate_json(orjson.dumps(values))
        assert params.given() == params.model_dump(exclude_none=True) == values
