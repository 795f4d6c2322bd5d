"""Checks on names, ids, vectors and library settings that every caller of the engine shares."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from arrwdb.errors import InvalidInput
from arrwdb.index.params import INDEX_PARAM_RULES, QUERY_PARAM_RULES, check_params
from arrwdb.records import INDEX_TYPES, METRICS

NAME_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,256}")
MAX_DIMENSION = 4096
MAX_K = 1000
# Bounds on a vector's L2 norm.  Above MAX_NORM, float32 scores overflow (an inner product or squared
# distance of two such vectors passes 3.4e38) and come back as inf/NaN, which JSON cannot carry.  Below
# MIN_COSINE_NORM, the float32 norm of a cosine vector underflows, so it cannot be normalised.
MAX_NORM = 1e18
MIN_COSINE_NORM = 1e-15


def check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or NAME_PATTERN.fullmatch(value) is None:
        raise InvalidInput(f"{what} must be 1 to 256 characters of [A-Za-z0-9._:-]")
    return value


# The bulk routes' last segments (POST .../documents/batch, .../documents/delete): no document takes
# them as its id, so those paths name the bulk routes alone, as OpenAPI reads a literal path before a
# templated one.
RESERVED_DOCUMENT_IDS = ("batch", "delete")


def check_document_id(value: str, what: str) -> str:
    if check_name(value, what) in RESERVED_DOCUMENT_IDS:
        raise InvalidInput(f"{what} must not be {value!r}: .../documents/{value} is the bulk route")
    return value


def check_library_settings(dimension: int, index_type: str, metric: str, params: dict[str, Any]) -> dict[str, Any]:
    if not 1 <= dimension <= MAX_DIMENSION:
        raise InvalidInput(f"dimension must be between 1 and {MAX_DIMENSION}")
    if index_type not in INDEX_TYPES:
        raise InvalidInput(f"index_type must be one of {', '.join(INDEX_TYPES)}")
    if metric not in METRICS:
        raise InvalidInput(f"metric must be one of {', '.join(METRICS)}")
    checked = check_params(params, INDEX_PARAM_RULES[index_type], f"index_params for {index_type}")
    if index_type == "ivf" and checked.get("encoding") == "pq" and dimension % 8:
        raise InvalidInput("index_params.encoding pq needs a dimension divisible by 8")
    return checked


def field_path(where: str, name: str) -> str:
    """A field's path in the request body, the one style of every message: ``k`` in a single
    query's body, ``queries[2].k`` in a batch, ``documents[0].metadata.year``.  ``where`` is the path
    of the object holding the field ("" for the body itself)."""
    return f"{where}.{name}" if where else name


def subject(where: str, whole: str) -> str:
    """How a message names an item of the body: its path, or ``whole`` ("the query") for the body."""
    return where or whole


def check_query_params(params: dict[str, Any], where: str = "") -> dict[str, Any]:
    return check_params(params, QUERY_PARAM_RULES, field_path(where, "params"))


def check_k(k: int, where: str = "") -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InvalidInput(f"{field_path(where, 'k')} must be an integer between 1 and {MAX_K}")
    return k


def check_vector(values: Any, dimension: int, metric: str, what: str) -> np.ndarray:
    """A float32 vector of the library's dimension: finite (in float32 too), non-zero for cosine."""
    vector = np.asarray(values, dtype=np.float64)
    if vector.ndim != 1 or vector.shape[0] != dimension:
        got = vector.shape[0] if vector.ndim == 1 else "a non-flat value"
        raise InvalidInput(f"{what} has dimension {got}, the library's is {dimension}")
    with np.errstate(over="ignore", invalid="ignore"):
        as_float32 = vector.astype(np.float32)
    if not np.isfinite(as_float32).all():
        raise InvalidInput(f"{what} must contain finite numbers (within float32 range)")
    if metric == "cosine" and not as_float32.any():
        raise InvalidInput(f"{what} is a zero vector, which has no cosine similarity")
    # What np.linalg.norm computes for a real vector, without its Python wrapper (every query passes here).
    as_float64 = as_float32.astype(np.float64)
    norm = math.sqrt(float(as_float64.dot(as_float64)))
    if norm > MAX_NORM:
        raise InvalidInput(f"{what} is too large: its norm must be at most {MAX_NORM:g}")
    if metric == "cosine" and norm < MIN_COSINE_NORM:
        raise InvalidInput(f"{what} is too close to zero for cosine similarity (norm below {MIN_COSINE_NORM:g})")
    return as_float32


def checked_rows(matrix: np.ndarray, metric: str) -> np.ndarray | None:
    """``check_vector``'s rules for every row of ``matrix`` at once (an import's vectors): the rows as
    float32 when all pass, None when one does not (``check_vector`` then names it)."""
    with np.errstate(over="ignore", invalid="ignore"):
        as_float32 = matrix.astype(np.float32)
    if not np.isfinite(as_float32).all():
        return None
    as_float64 = as_float32.astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", as_float64, as_float64))
    if (norms > MAX_NORM).any():
        return None
    if metric == "cosine" and ((norms < MIN_COSINE_NORM).any() or not as_float32.any(axis=1).all()):
        return None
    return as_float32
