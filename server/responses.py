"""JSON responses through orjson (numpy arrays serialised natively; a 1000 x 384 answer in ~20 ms
instead of ~850 ms through jsonable_encoder).  Starlette sets Content-Length: no chunked encoding.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from arrwdb.library.hits_json import JSON_OPTIONS


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=JSON_OPTIONS)


def timing_headers(queue_ms: float, compute_ms: float, batch_size: int) -> dict[str, str]:
    return {
        "X-Queue-Ms": f"{queue_ms:.3f}",
        "X-Compute-Ms": f"{compute_ms:.3f}",
        "X-Batch-Size": str(batch_size),
    }
