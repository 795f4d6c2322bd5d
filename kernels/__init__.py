"""Torch kernels for exact vector search (installed as ``arrwdb.kernels``)."""

from arrwdb.kernels.topk import METRICS, normalize_rows, search_exact

__all__ = ["METRICS", "normalize_rows", "search_exact"]
