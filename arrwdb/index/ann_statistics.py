"""The figures an ANN library's statistics show for its index (API.md, "Statistics")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from arrwdb.index import calibrate, faiss_ops, faiss_search
from arrwdb.index.params import HNSWParams, IVFParams

if TYPE_CHECKING:
    from arrwdb.index.ann import AnnIndex


def ann_statistics(index: AnnIndex) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "type": index.index_type,
        "state": "building" if index.building else ("ann" if index.ann is not None else "exact"),
        "trained": index.ann is not None,
        "exact_until_rows": index.min_rows,
        "ntotal": len(index.flat),
        "ann_rows": len(index.ann_rows),
        "fresh_rows": index.fresh_count(),
        "tombstones": len(index.tombstones),
        "builds": index.builds,
        "last_build_seconds": round(index.last_build_seconds, 3),
        "device": str(index.flat.device),
        "gpu_memory_bytes": index.flat.gpu_memory_bytes() + (index.served.gpu_bytes if index.served else 0),
        **faiss_search.served_statistics(index.served),
        "memory_bytes": index.memory_bytes(),
        "shared_rows": index.flat.shared_rows(),
    }
    if index.index_type == "hnsw":
        p = HNSWParams.from_dict(index.params, index.dimension)
        stats.update(
            m=p.m,
            ef_construction=p.ef_construction,
            graph_ef_construction=index.graph_ef_construction,
            upgrading=index.upgrading,
            ef_search=index.search_effort(),
        )
    else:
        p_ivf = IVFParams.from_dict(index.params)
        nlist = faiss_ops.ivf_nlist(index.ann) if index.ann is not None else None
        stats.update(
            nlist=nlist,
            nprobe=index.search_effort() if nlist else p_ivf.nprobe,
            encoding=p_ivf.encoding,
            trained_rows=index.trained_rows,
        )
    stats["target_recall"] = calibrate.target_of(index.params)
    stats["calibration"] = None if index.calibration is None else index.calibration.as_dict()
    stats["calibrated_rows"] = index.calibrated_rows
    return stats
