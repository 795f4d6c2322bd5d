"""Torch kernels for exact vector search (installed as ``arrwdb.kernels``)."""

from arrwdb.kernels.topk import METRICS, TOPK_GROUP, block_rows_for, normalize_rows, search_exact, topk_group_for

__all__ = ["METRICS", "TOPK_GROUP", "block_rows_for", "normalize_rows", "search_exact", "topk_group_for"]
