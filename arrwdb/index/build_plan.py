"""What the index builder does next for an ANN library: a pure function of the index's figures, so that
the rules live, and are tested, in one place (``AnnIndex.plan`` gathers the figures on the device
worker).

- No ANN index yet: build once there are ``min_rows`` rows (exact search serves until then).
- Past ``REBUILD_TOMBSTONE_FRACTION`` deleted rows, or an IVF library grown ``IVF_RETRAIN_GROWTH``
  times past the rows its lists were trained on: build again.
- Enough fresh rows (``EXTEND_MIN_ROWS``, or ``EXTEND_FRACTION`` of the index): extend.  During a
  bulk import each extension takes the rows committed while the one before it ran.  The settle of an
  import that went quiet folds in any row left fresh, however few.
- A light graph (built during an import at ``params.IMPORT_EF_CONSTRUCTION``) is rebuilt at the
  library's efConstruction, the "upgrade", once the import has settled (every row in, the graph
  calibrated: the import counts as indexed meanwhile); or, while rows keep coming in a trickle too
  thin for an extension (so the settle never comes), once no light graph has been published for
  ``LIGHT_GRAPH_MAX_AGE_S``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Job = Literal["build", "extend", "upgrade"]

REBUILD_TOMBSTONE_FRACTION = 0.2
IVF_RETRAIN_GROWTH = 4.0
EXTEND_MIN_ROWS = 2048
EXTEND_FRACTION = 0.05
LIGHT_GRAPH_MAX_AGE_S = 30.0


@dataclass
class BuildInput:
    """What a job works on, copied on the device worker (``AnnIndex.begin``)."""

    kind: str  # "build" (from scratch) or "extend" (add the fresh rows to a copy)
    rows: np.ndarray
    vectors: np.ndarray
    base: Any  # the published index an extension copies
    params: dict[str, Any]  # the index_params a "build" uses (efConstruction lowered for a light graph)


@dataclass(frozen=True)
class IndexFigures:
    index_type: str  # "ivf" or "hnsw"
    live_rows: int
    min_rows: int  # rows before a first build
    built: bool  # an ANN index is published
    ann_rows: int  # rows the published index holds, deleted ones included
    tombstones: int
    trained_rows: int  # rows an IVF index's lists were trained on
    fresh_rows: int  # live rows beside the published index, searched exactly
    importing: bool  # rows came within the last second
    calibration_stale: bool  # the index grew by import chunks since its calibration
    light_graph: bool
    light_age_s: float  # since the last light graph was published


def next_job(f: IndexFigures, settle: bool = False) -> Job | None:
    """The builder's next job for the index ``f`` describes, if any; ``settle``: the import went quiet."""
    if not f.built:
        return "build" if f.live_rows >= f.min_rows else None
    if f.tombstones > REBUILD_TOMBSTONE_FRACTION * max(f.ann_rows, 1):
        return "build"
    if f.index_type == "ivf" and f.live_rows >= IVF_RETRAIN_GROWTH * max(f.trained_rows, 1):
        return "build"
    if f.fresh_rows >= max(EXTEND_MIN_ROWS, EXTEND_FRACTION * f.ann_rows) or (settle and f.fresh_rows > 0):
        return "extend"
    return "upgrade" if upgrade_due(f) else None


def upgrade_due(f: IndexFigures) -> bool:
    if not f.light_graph:
        return False
    if f.importing:
        return f.light_age_s >= LIGHT_GRAPH_MAX_AGE_S
    return not f.calibration_stale and f.fresh_rows == 0
