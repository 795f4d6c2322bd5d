"""Recall calibration: after each build, the smallest search effort (HNSW efSearch, IVF nprobe) whose
recall@10 against exact search reaches the library's ``target_recall``.

The queries are a seeded sample of the index's own rows, held out of it while it is calibrated and
added right after (``calibrated_build.py``).  A row's match with itself is never counted: both the exact
neighbours and the ANN answers of a row are taken with one extra slot and the row itself removed.  A
row tied with a query's K-th exact neighbour counts as found (``tied_neighbours``).  The
holding out matters as much: a row that is already in an HNSW graph is found with its graph neighbours,
which are its nearest neighbours by construction, so rows searched inside the graph overstate the recall
of new queries.  Only a snapshot loaded without a calibration, and an import's graph whose last chunk
took every row (never below its last held-out effort: ``at_least``), are calibrated with their rows
inside (self excluded).
The sample's recall is an estimate: the aim is the target plus two standard errors of that estimate
(``aim_for``), so the recall of unseen queries meets the target with high probability.

Efforts are tried on a fixed geometric ladder by binary search (recall grows with the effort), a few
searches of the sample each.  Calibration raises the effort where the data needs more than the built-in
default (efSearch 200 below 128 dimensions, 32 from there up: ``params.default_ef_search``; nprobe
nlist / 8, at least 8) and never lowers it below that: the sample stands for queries from the data's own
distribution, and queries from elsewhere can need more (`arrwdb bench hnsw-defaults`: GloVe's held-out
words reach 0.950 at the sample's efSearch 64 and 0.989 at 200; at 384 and 784 dimensions real queries
reach 0.99 at or below the sample's value).  Queries far from every row (clustered rows, queries around
other centres) stay below 0.99 at any efSearch up to 200 in every band: no default covers those.
An effort the user set in ``index_params`` is kept as given: calibration then only measures its recall,
for the statistics.

Runs on the builder thread against the new index before it is published (nobody else can see it yet);
the exact neighbours come from the caller (the exact index, on the device worker).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from arrwdb.index import faiss_ops, faiss_search
from arrwdb.index.params import DEFAULT_TARGET_RECALL, HNSWParams, IVFParams

K = 10  # recall@10, the figure the benchmarks report
SAMPLE_QUERIES = 256
# Exact neighbours taken past the K-th, to find the rows tied with it: a row whose exact score equals
# the K-th's (a duplicate of a true neighbour) is as good an answer as it, and which of equal rows a
# search returns is arbitrary, so such a row counts as found (``tied_neighbours``).
TIE_SLOTS = 10
TIE_TOLERANCE = 1e-5  # relative: float32 rounding of one score computed by two kernels
RESCORE_FACTOR = 4  # sq8/pq propose k * 4 candidates, re-scored exactly (ann.py)
# Four rungs an octave (steps of 1.14-1.25x).  The effort a library needs falls anywhere between two
# rungs, and the upper one is chosen: with the need spread evenly on a log scale, the choice exceeds it
# by 9% on average here, by 20% on a ladder whose steps are 1.33-1.5x.
EF_LADDER = (
    *(16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512),
    *(640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096),
)


@dataclass(frozen=True)
class Calibration:
    parameter: str  # "ef_search" or "nprobe"
    value: int  # what searches use when a query does not name its own
    sample_value: int  # the smallest effort that reached the aim on the sample (value: at least the default)
    measured_recall: float  # recall@10 of the sample at ``value``, self-matches excluded
    target_recall: float
    aim: float  # the target plus the sample's margin
    sample_queries: int
    user_set: bool  # the value came from index_params, not from calibration
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: Any) -> Calibration | None:
        try:
            return Calibration(**data)
        except TypeError:
            return None


def target_of(params: dict[str, Any]) -> float:
    return float(params.get("target_recall", DEFAULT_TARGET_RECALL))


def aim_for(target: float, sample_queries: int, k: int = K) -> float:
    """The target plus two standard errors of a recall measured on ``sample_queries * k`` neighbours."""
    if target >= 1.0:
        return 1.0
    return min(1.0, target + 2.0 * math.sqrt(target * (1.0 - target) / max(1, sample_queries * k)))


def sample_rows(rows: np.ndarray, size: int = SAMPLE_QUERIES, seed: int = 0) -> np.ndarray:
    """A seeded, sorted sample of ``rows`` (all of them when fewer)."""
    if len(rows) <= size:
        return np.asarray(rows, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(np.asarray(rows, dtype=np.int64), size, replace=False))


def without_self(ids: np.ndarray, query_ids: np.ndarray, keep: int) -> np.ndarray:
    """Each row of ``ids`` [q, c] without its query's own id (and without -1), the first ``keep``
    left, padded with -1."""
    out = np.full((len(ids), keep), -1, dtype=np.int64)
    for i, (found, own) in enumerate(zip(ids, query_ids, strict=True)):
        kept = found[(found != own) & (found >= 0)][:keep]
        out[i, : len(kept)] = kept
    return out


def recall(found: np.ndarray, truth: np.ndarray, accepted: np.ndarray | None = None) -> float:
    """Share of the true neighbours (ids >= 0 in ``truth``) that ``found`` holds, row by row.
    ``accepted`` (ids >= 0 per row, ``tied_neighbours``): the rows that count as found in a row, at most
    as many as it has true neighbours (default: the true neighbours themselves)."""
    hits = total = 0
    for i, (f, t) in enumerate(zip(found, truth, strict=True)):
        wanted = t[t >= 0]
        pool = wanted if accepted is None else accepted[i][accepted[i] >= 0]
        hits += min(len(wanted), len(np.intersect1d(f[f >= 0], pool, assume_unique=False)))
        total += len(wanted)
    return hits / total if total else 1.0


def tied_neighbours(ids: np.ndarray, scores: np.ndarray, query_ids: np.ndarray, k: int = K) -> np.ndarray:
    """Per query, the exact neighbours that count as found (its own row excluded): the first ``k`` and
    every further one whose score ties the ``k``-th's (within ``TIE_TOLERANCE``); padded with -1.
    ``ids`` / ``scores`` [q, c]: exact neighbours best first, higher scores closer."""
    out = np.full(ids.shape, -1, dtype=np.int64)
    for i, (row_ids, row_scores, own) in enumerate(zip(ids, scores, query_ids, strict=True)):
        keep = (row_ids != own) & (row_ids >= 0)
        row_ids, row_scores = row_ids[keep], row_scores[keep]
        if len(row_ids) > k:
            kth = float(row_scores[k - 1])
            tied = row_scores >= kth - TIE_TOLERANCE * max(1.0, abs(kth))
            tied[:k] = True
            row_ids = row_ids[tied]
        out[i, : len(row_ids)] = row_ids
    return out


def calibrate(
    ann: Any,
    index_type: str,
    metric: str,
    params: dict[str, Any],
    query_ids: np.ndarray,
    queries: np.ndarray,
    exact_ids: np.ndarray,
    pace: Callable[[], None] | None = None,
    selector: faiss_search.Selector | None = None,
    exact_scores: np.ndarray | None = None,
    at_least: int = 0,
) -> Calibration:
    """Calibrate ``ann`` (a built FAISS index, private to the caller).  ``queries`` are the stored vectors
    of the rows ``query_ids``; ``exact_ids`` [q, >= K + 1] their exact neighbours among the index's rows,
    best first (the row itself among them where it is in the index); ``exact_scores`` their scores
    (higher closer; fetched ``TIE_SLOTS`` past K + 1): rows tied with a query's K-th neighbour then
    count as found too (``tied_neighbours``).  ``at_least``: a floor on the effort chosen, besides the
    default (a graph calibrated on its own rows keeps the effort its held-out calibration chose)."""
    started = time.perf_counter()
    target = target_of(params)
    aim = aim_for(target, len(query_ids))
    truth = without_self(exact_ids, query_ids, K)
    accepted = None if exact_scores is None else tied_neighbours(exact_ids, exact_scores, query_ids)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    rescore = params.get("encoding") in ("sq8", "pq")
    fetch = K * RESCORE_FACTOR + 1 if rescore else K + 1

    def recall_at(value: int) -> float:
        if pace is not None:
            pace()
        hnsw = index_type == "hnsw"
        _, ids = faiss_search.search(
            ann,
            index_type,
            metric,
            queries,
            fetch,
            ef_search=value if hnsw else None,
            nprobe=None if hnsw else value,
            selector=selector,
            threads=0,
        )
        # Exact re-scoring orders the candidates exactly: the true neighbours among them are the answer.
        return recall(without_self(ids, query_ids, fetch - 1), truth, accepted)

    if index_type == "hnsw":
        parameter, user_value, ladder = "ef_search", params.get("ef_search"), list(EF_LADDER)
    else:
        nlist = faiss_ops.ivf_nlist(ann) or 1
        parameter, ladder = "nprobe", nprobe_ladder(nlist)
        user_value = min(params["nprobe"], nlist) if params.get("nprobe") is not None else None
    if user_value is not None:
        value = int(user_value)
        measured = recall_at(value)
        return Calibration(
            parameter, value, value, measured, target, aim, len(query_ids), True, time.perf_counter() - started
        )
    needed, measured = smallest_reaching(ladder, recall_at, aim)
    nlist = faiss_ops.ivf_nlist(ann) if index_type == "ivf" else None
    floor = max(default_value(index_type, params, nlist, queries.shape[1]) or 1, at_least)
    value = max(needed, floor)
    if value != needed:
        measured = recall_at(value)
    return Calibration(
        parameter, value, needed, measured, target, aim, len(query_ids), False, time.perf_counter() - started
    )


def nprobe_ladder(nlist: int) -> list[int]:
    """1, 2, 3, ..., 9, 10, 12, 14, 16, 19, ... (steps of about 1.2x, as ``EF_LADDER``'s), ending at
    ``nlist`` (an exhaustive scan)."""
    values = {nlist}
    value = 1.0
    while value < nlist:
        values.add(int(value))
        value = max(value * 1.2, value + 1)
    return sorted(values)


def smallest_reaching(ladder: list[int], recall_at: Callable[[int], float], aim: float) -> tuple[int, float]:
    """The smallest ladder value whose recall reaches ``aim`` (recall grows along the ladder), with its
    recall; the largest value when none does.  Galloping up from the bottom (indices 0, 1, 3, 7, ...),
    then a binary search between the last two probes: the values that reach the aim sit low on the
    ladder, and a probe costs more the higher its value, so the top is searched only when needed."""
    measured: dict[int, float] = {}

    def at(i: int) -> float:
        if ladder[i] not in measured:
            measured[ladder[i]] = recall_at(ladder[i])
        return measured[ladder[i]]

    last = len(ladder) - 1
    low, probe = 0, 0
    while at(probe) < aim:
        if probe == last:
            return ladder[last], at(last)
        low, probe = probe + 1, min(2 * probe + 1, last)
    high = probe
    while low < high:
        middle = (low + high) // 2
        if at(middle) >= aim:
            high = middle
        else:
            low = middle + 1
    return ladder[low], at(low)


def default_value(index_type: str, params: dict[str, Any], nlist: int | None, dimension: int) -> int | None:
    """The effort searches use before a first calibration (or where none ran): the index_params value,
    else the built-in default of the dimension's band."""
    if index_type == "hnsw":
        return HNSWParams.from_dict(params, dimension).ef_search
    return IVFParams.from_dict(params).nprobe_for(nlist) if nlist else None
