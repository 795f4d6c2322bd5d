"""arrwdb: a vector search server that micro-batches embedding and search onto one device worker."""

__version__ = "0.1.0"
