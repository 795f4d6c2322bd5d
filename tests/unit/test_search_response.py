"""Search responses serialise inputs.Hit directly (no dict per hit): its fields must be the API's Hit."""

from __future__ import annotations

import dataclasses

import orjson

from arrwdb.inputs import Hit
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
