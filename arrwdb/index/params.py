"""Per-index parameters as frozen dataclasses, with the defaults and ranges users may set.

Defaults were calibrated on real MiniLM embeddings and on GloVe (see docs/PERFORMANCE.md and
`arrwdb bench ann`): FAISS's own defaults (efSearch 16, nprobe 1) give poor recall on real text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from arrwdb.errors import InvalidInput

ENCODINGS = ("flat", "sq8", "pq")
# recall@10 that each build calibrates its search effort to reach (arrwdb.index.calibrate)
DEFAULT_TARGET_RECALL = 0.99
TARGET_RECALL_RANGE = (0.5, 1.0)


# The default efSearch is the floor under every calibration (calibrate.py): the calibration sample is
# rows of the library, and queries unlike them can need more effort than the sample shows.  Whether
# they do depends on the dimension band (`arrwdb bench hnsw-defaults`, docs/results/hnsw-defaults.json):
# below LOW_DIMENSION (GloVe 50-d) held-out words reach recall 0.950 at the sample's efSearch 64 and
# 0.989 at 200, and a search there is cheap (0.3 ms at 200); from LOW_DIMENSION up, real queries
# (MiniLM text queries against passages, Fashion-MNIST test images) reach 0.99 at or below the sample's
# value, so the sample decides, and a floor of 200 would cost 3x per query (0.64 ms against 0.20 ms at
# 784-d).
LOW_DIMENSION = 128
EF_SEARCH_LOW_DIMENSION = 200
EF_SEARCH = 32
# A graph built while a bulk import commits rows uses this efConstruction, and is rebuilt at the
# library's own once the import goes quiet (docs/ANN.md, "Bulk imports"): with M 32 it builds in about
# half the time of efConstruction 200 and, calibrated, keeps the recall target on real queries (the Bible's
# MiniLM text: efSearch 96 against 64; Fashion-MNIST: 32 as at 200; docs/results/hnsw-defaults.json).
IMPORT_EF_CONSTRUCTION = 100


@dataclass(frozen=True)
class HNSWParams:
    m: int = 32
    ef_construction: int = 200
    ef_search: int = EF_SEARCH_LOW_DIMENSION

    @staticmethod
    def from_dict(params: dict[str, Any], dimension: int) -> HNSWParams:
        """``params`` (index_params) over the defaults of ``dimension``'s band."""
        given = {k: v for k, v in params.items() if k in ("m", "ef_construction", "ef_search")}
        return HNSWParams(**{"ef_search": default_ef_search(dimension), **given})


def default_ef_search(dimension: int) -> int:
    return EF_SEARCH_LOW_DIMENSION if dimension < LOW_DIMENSION else EF_SEARCH


def import_ef_construction(index_type: str, params: dict[str, Any]) -> int | None:
    """efConstruction of a graph built during a bulk import, or None where a library builds every graph
    at its own: not an HNSW library, or one whose ``ef_construction`` the user set."""
    if index_type != "hnsw" or "ef_construction" in params:
        return None
    return min(IMPORT_EF_CONSTRUCTION, HNSWParams().ef_construction)


@dataclass(frozen=True)
class IVFParams:
    nlist: int | None = None  # None: about 4 * sqrt(n) at training time
    nprobe: int | None = None  # None: nlist / 8, at least 8
    encoding: str = "flat"  # "sq8" and "pq" store codes and re-score the candidates exactly

    @staticmethod
    def from_dict(params: dict[str, Any]) -> IVFParams:
        return IVFParams(**{k: v for k, v in params.items() if k in ("nlist", "nprobe", "encoding")})

    def nlist_for(self, rows: int) -> int:
        if self.nlist is not None:
            return self.nlist
        return int(min(65536, max(16, 4 * math.sqrt(max(rows, 1)))))

    def nprobe_for(self, nlist: int) -> int:
        if self.nprobe is not None:
            return min(self.nprobe, nlist)
        return min(nlist, max(8, nlist // 8))


# What each index type accepts in index_params: name -> (low, high) for integers, or allowed strings.
# (low, high) floats for a number.
INDEX_PARAM_RULES: dict[str, dict[str, tuple[int, int] | tuple[float, float] | tuple[str, ...]]] = {
    "brute_force": {},
    "ivf": {"nlist": (1, 65536), "nprobe": (1, 65536), "encoding": ENCODINGS, "target_recall": TARGET_RECALL_RANGE},
    "hnsw": {"m": (2, 256), "ef_construction": (1, 4096), "ef_search": (1, 4096), "target_recall": TARGET_RECALL_RANGE},
}
QUERY_PARAM_RULES: dict[str, tuple[int, int]] = {"ef_search": (1, 4096), "nprobe": (1, 65536)}


def check_params(params: dict[str, Any], rules: dict[str, Any], what: str) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key, value in params.items():
        rule = rules.get(key)
        if rule is None:
            raise InvalidInput(f"unknown {what} key {key!r} (accepted: {', '.join(rules) or 'none'})")
        if isinstance(rule[0], str):
            if value not in rule:
                raise InvalidInput(f"{what}.{key} must be one of {', '.join(rule)}")
        elif isinstance(rule[0], float):
            low, high = rule
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise InvalidInput(f"{what}.{key} must be a number between {low} and {high}")
        else:
            low, high = rule
            if type(value) is float and value.is_integer():
                value = int(value)  # JSON has one number type: 2.0 is the integer 2
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidInput(f"{what}.{key} must be an integer between {low} and {high}")
        checked[key] = value
    return checked
