"""The engine: libraries, documents, search, embedding and reranking on top of the store, the runtime
and the indexes (``core.Engine``), and ``api.EngineAPI``, what the HTTP layer asks of an engine."""
