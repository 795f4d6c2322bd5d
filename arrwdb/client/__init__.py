"""The Python client of the arrwdb REST API: ``Client`` (synchronous) and ``AsyncClient`` (asyncio), the
same methods on each (docs/CLIENT.md); ``ingest`` bulk-loads a JSONL file through them."""

from arrwdb.client.client import ApiError, AsyncClient, Call, Client

__all__ = ["ApiError", "AsyncClient", "Call", "Client"]
