"""The summary of an `arrwdb bench ann` report: best QPS at each recall target, the issue's target
ratio for each server leg, the text table and the recall/QPS chart.

Server legs: "server" sends one query per POST /search request, "server_batch" ``request_batch``
queries per POST /search/batch request; both from ``clients`` closed-loop clients, both in queries/s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TARGET_RATIO = 0.5  # the issue: server HNSW QPS >= 50% of raw FAISS HNSW at the same ef_search and batch
SERVER_LEGS = ("server", "server_batch")


def best_qps_at(curve: list[dict[str, Any]], recall: float) -> float | None:
    eligible = [p["qps"] for p in curve if p["recall"] >= recall]
    return max(eligible) if eligible else None


def summary_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for dataset, result in report["datasets"].items():
        for index_type, curves in result["curves"].items():
            for target in (0.9, 0.95, 0.99):
                row: dict[str, Any] = {"dataset": dataset, "index": index_type, "recall": target}
                for name, curve in curves.items():
                    row[name] = best_qps_at(curve, target)
                rows.append(row)
    return rows


def server_vs_faiss(
    report: dict[str, Any], dataset_prefix: str = "glove", target: float = 0.95, leg: str = "server"
) -> dict[str, Any]:
    """The issue's target for one server leg ("server": one query per request; "server_batch":
    ``request_batch`` queries per request): its HNSW QPS at ``clients`` clients vs raw FAISS at the same
    ef_search and batch, at the smallest ef_search whose server recall reaches ``target``."""
    for dataset, result in report["datasets"].items():
        if not dataset.startswith(dataset_prefix) or "hnsw" not in result["curves"]:
            continue
        curves = result["curves"]["hnsw"]
        for server_point in curves.get(leg, []):
            if server_point["recall"] >= target:
                ef = server_point["ef_search"]
                raw = next(p for p in curves["faiss"] if p["ef_search"] == ef)
                ratio = server_point["qps"] / raw["qps"]
                return {
                    "leg": leg,
                    "dataset": dataset,
                    "ef_search": ef,
                    "recall_target": target,
                    "clients": server_point["clients"],
                    "request_batch": server_point.get("request_batch", 1),
                    "faiss_batch": raw["batch"],
                    "server_qps": server_point["qps"],
                    "faiss_qps": raw["qps"],
                    "ratio": ratio,
                    "met": ratio >= TARGET_RATIO,
                    "server_recall": server_point["recall"],
                }
    return {}


def server_targets(report: dict[str, Any], dataset_prefix: str = "glove") -> dict[str, dict[str, Any]]:
    """The target ratio of each server leg that has a point at the recall target."""
    targets = {leg: server_vs_faiss(report, dataset_prefix, leg=leg) for leg in SERVER_LEGS}
    return {leg: t for leg, t in targets.items() if t}


def _labels(settings: dict[str, Any]) -> dict[str, str]:
    clients, batch, request_batch = settings["clients"], settings["batch"], settings.get("request_batch", 0)
    return {
        "faiss": f"faiss(b{batch})",
        "arrwdb": f"arrwdb(b{batch})",
        "server": f"server({clients}c x1)",
        "server_batch": f"server({clients}c x{request_batch})",
        "faiss_b1": "faiss(b1)",
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = _labels(report["settings"])
    styles = {"faiss": "k--", "arrwdb": "b-", "server": "r-o", "server_batch": "m-s", "faiss_b1": "g:"}
    panels = [(d, t) for d, r in report["datasets"].items() for t in r["curves"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (dataset, index_type) in zip(axes[0], panels, strict=True):
        curves = report["datasets"][dataset]["curves"][index_type]
        for name, style in styles.items():
            curve = curves.get(name, [])
            if curve:
                ax.plot(
                    [p["recall"] for p in curve], [p["qps"] for p in curve], style, label=labels[name], markersize=3
                )
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries/s")
        ax.set_title(f"{dataset} {index_type}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_report(report: dict[str, Any]) -> str:
    """The QPS table (queries/s; "server(64c x1)": one query per /search request, "server(64c x64)": 64
    queries per /search/batch request) and the target ratio of each server leg."""
    labels = _labels(report["settings"])
    columns = [name for name in labels if any(name in row for row in report["table"])]
    widths = [max(12, len(labels[name])) for name in columns]
    head = " ".join(f"{labels[n]:>{w}}" for n, w in zip(columns, widths, strict=True))
    lines = [f"{'dataset':<20} {'index':<6} {'recall':>6} {head}"]
    for row in report["table"]:
        cells = [f"{row[n]:{w}.0f}" if row.get(n) else f"{'-':>{w}}" for n, w in zip(columns, widths, strict=True)]
        lines.append(f"{row['dataset']:<20} {row['index']:<6} {row['recall']:>6} " + " ".join(cells))
    targets = report.get("targets", {})
    if targets:
        lines.append("")
    for leg, t in targets.items():
        how = (
            "1 query per /search request"
            if leg == "server"
            else f"{t['request_batch']} queries per /search/batch request"
        )
        lines.append(
            f"target ({leg}: {t['clients']} clients, {how}): {t['dataset']} hnsw ef_search={t['ef_search']} "
            f"recall {t['server_recall']:.3f}: server {t['server_qps']:.0f} qps vs raw FAISS {t['faiss_qps']:.0f} qps "
            f"(batch {t['faiss_batch']}) = {t['ratio']:.2f} ({'met' if t['met'] else 'MISSED'}: >= {TARGET_RATIO:.2f})"
        )
    return "\n".join(lines)
