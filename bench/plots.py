"""PNG charts of benchmark results (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def throughput_and_p99(results: dict[str, Any], path: Path, title: str) -> Path:
    """One row per scenario: QPS and p99 against concurrency, batching off vs on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(results)
    fig, axes = plt.subplots(len(scenarios), 2, figsize=(11, 3.4 * len(scenarios)), squeeze=False)
    for row, scenario in enumerate(scenarios):
        for setting, style in (("off", "o--"), ("on", "s-")):
            points = results[scenario].get(setting, [])
            clients = [p["clients"] for p in points]
            axes[row][0].plot(clients, [p["qps"] for p in points], style, label=f"batching {setting}")
            axes[row][1].plot(clients, [p["p99_ms"] for p in points], style, label=f"batching {setting}")
        for col, label in enumerate(("requests/s", "p99 latency (ms)")):
            ax = axes[row][col]
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("concurrent clients")
            ax.set_ylabel(label)
            ax.set_title(f"{scenario}: {label}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
