"""The suite's PNG: latency distribution per index type and dimension, and indexing rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

COLORS = {"brute_force": "tab:blue", "ivf": "tab:orange", "hnsw": "tab:green"}


def suite_figure(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    results = report["results"]
    dimensions = list(results)
    fig, axes = plt.subplots(3, len(dimensions), figsize=(4.6 * len(dimensions), 11), squeeze=False)
    for col, dimension in enumerate(dimensions):
        by_type = results[dimension]
        types = list(by_type)
        latencies = [by_type[t]["latencies_ms"] for t in types]
        box = axes[0][col]
        # Whiskers at p1/p99: the tail is what the suite is about; outliers beyond it are hidden.
        parts = box.boxplot(latencies, whis=(1, 99), showfliers=False, patch_artist=True)
        box.set_xticks(range(1, len(types) + 1), types)
        for patch, name in zip(parts["boxes"], types, strict=True):
            patch.set_facecolor(COLORS.get(name, "tab:gray"))
            patch.set_alpha(0.5)
        box.set_ylabel("search latency (ms), whiskers p1-p99")
        box.set_title(f"d={dimension}: latency per query")
        box.grid(True, axis="y", alpha=0.3)

        cdf = axes[1][col]
        for name, lat in zip(types, latencies, strict=True):
            values = np.sort(np.asarray(lat))
            cdf.plot(values, np.arange(1, len(values) + 1) / len(values), label=name, color=COLORS.get(name))
        cdf.set_xscale("log")
        # Plain numbers on the major ticks only: labelled minor ticks overlap on a short log range.
        cdf.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
        cdf.xaxis.set_minor_formatter(ticker.NullFormatter())
        cdf.set_xlabel("latency (ms)")
        cdf.set_ylabel("fraction of queries")
        cdf.set_title(f"d={dimension}: latency CDF")
        cdf.grid(True, which="both", alpha=0.3)
        cdf.legend()

        bars = axes[2][col]
        rates = [by_type[t]["insert"]["docs_per_s"] for t in types]
        bars.bar(types, rates, color=[COLORS.get(t, "tab:gray") for t in types], alpha=0.7)
        for i, t in enumerate(types):
            ann = by_type[t]["ann"]
            note = "" if ann is None or ann["ready_s"] is None else f"ANN ready +{ann['ready_s']:.1f}s"
            bars.annotate(note, (i, rates[i]), ha="center", va="bottom", fontsize=8)
        bars.set_ylabel("documents/s (documents/batch)")
        bars.set_title(f"d={dimension}: indexing rate")
        bars.grid(True, axis="y", alpha=0.3)
    settings = report["settings"]
    fig.suptitle(
        f"arrwdb suite: {settings['documents']} docs, {settings['queries']} queries, 1 client "
        f"({report['machine']['cpu']}, {report['machine']['date'][:10]})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
