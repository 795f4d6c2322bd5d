"""`arrwdb bench compare A.json B.json`: every comparable figure of two benchmark results, side by side.

Works on any of the bench JSON files (suite, batching, peers, ann...): both are flattened into
``path -> number`` (lists of points are keyed by their identifying field, e.g. ``[clients=64]``; raw
samples such as per-query latencies are left out), and each figure judged by the direction its name
says is better: latency, seconds and bytes down; QPS, rates and recall up.  A change worse than the
noise band is a regression, and makes the exit code 1 unless ``--warn-only``.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

# Descriptive sections: compared for a warning, never as figures.
CONTEXT_KEYS = ("machine", "settings", "server", "benchmark", "notes", "errors", "unavailable", "load_average")
# Raw samples (lists of numbers) are not figures; lists of points are keyed by the first field found here.
POINT_KEYS = ("system", "clients", "batch", "name", "index_type", "dimension", "setting", "scenario")
# Judged by name, first match wins: counts and sizes say nothing about better or worse.
NEUTRAL = re.compile(r"batch_size|count|rows|ntotal|tombstones|builds|nlist|nprobe|^ef_|^m$|^k$|^requests$|^ok$")
HIGHER = re.compile(r"qps|recall|per_s|throughput|speedup|_over_in_process|rate$")
LOWER = re.compile(r"(^|_)(mean|p50|p90|p95|p99|p999|min|max)(_|$)|_ms$|_s$|seconds|bytes|latency")


@dataclass(frozen=True)
class Row:
    figure: str
    a: float | None
    b: float | None
    direction: int  # +1 higher is better, -1 lower is better, 0 not judged

    @property
    def change(self) -> float | None:
        if self.a is None or self.b is None:
            return None
        if self.a == 0:
            return 0.0 if self.b == 0 else None
        return (self.b - self.a) / abs(self.a)

    def verdict(self, noise: float) -> str:
        change = self.change
        if self.a is None:
            return "only in B"
        if self.b is None:
            return "only in A"
        if change is None or self.direction == 0:
            return ""
        signed = change * self.direction
        if signed < -noise:
            return "REGRESSION"
        if signed > noise:
            return "better"
        return "~"


def _judge(name: str) -> int | None:
    name = re.sub(r"\[.*?\]", "", name).split("@", 1)[0].lower()
    if NEUTRAL.search(name):
        return 0
    if HIGHER.search(name):
        return 1
    if LOWER.search(name):
        return -1
    return None


def direction(figure: str) -> int:
    """+1 when a larger value is better, -1 when smaller is better, 0 when the name does not say.

    A generic last name (``server_rss_bytes.on``) takes its parent's meaning, one level up only."""
    if ".statuses." in f".{figure}.":
        return 0
    parts = figure.split(".")
    for name in parts[-1:-3:-1]:
        verdict = _judge(name)
        if verdict is not None:
            return verdict
    return 0


def _point_label(point: dict[str, Any]) -> str | None:
    for key in POINT_KEYS:
        if key in point and isinstance(point[key], str | int):
            return f"[{key}={point[key]}]"
    return None


def flatten(node: Any, prefix: str = "", out: dict[str, float] | None = None) -> dict[str, float]:
    out = {} if out is None else out
    if isinstance(node, dict):
        for key, value in node.items():
            if not prefix and key in CONTEXT_KEYS:
                continue
            flatten(value, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, dict):
                flatten(item, f"{prefix}{_point_label(item) or f'[{i}]'}", out)
        # lists of plain numbers are samples (latencies), summarised elsewhere in the same file
    elif isinstance(node, int | float) and not isinstance(node, bool) and math.isfinite(node):
        out[prefix] = float(node)
    return out


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[Row]:
    fa, fb = flatten(a), flatten(b)
    figures = list(fa) + [f for f in fb if f not in fa]
    return [Row(f, fa.get(f), fb.get(f), direction(f)) for f in figures]


def context_warnings(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    warnings = []
    ma, mb = a.get("machine", {}), b.get("machine", {})
    for key in ("cpu", "cpu_family", "cpu_flags", "cores", "hostname"):
        if ma.get(key) != mb.get(key):
            warnings.append(f"machine.{key} differs: {ma.get(key)!r} vs {mb.get(key)!r}")
    sa, sb = flatten(a.get("settings", {})), flatten(b.get("settings", {}))
    for key in sorted(set(sa) | set(sb)):
        if sa.get(key) != sb.get(key):
            warnings.append(f"settings.{key} differs: {sa.get(key)} vs {sb.get(key)}")
    return warnings


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.3e}"
    return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"


def format_rows(rows: list[Row], noise: float, show_all: bool = False) -> str:
    shown = [r for r in rows if show_all or r.direction != 0]
    width = max([len(r.figure) for r in shown] + [6])
    lines = [f"{'figure':<{width}} {'A':>14} {'B':>14} {'change':>9}  verdict"]
    for r in shown:
        change = r.change
        pct = "-" if change is None else f"{change * 100:+.1f}%"
        arrow = {1: "↑", -1: "↓", 0: " "}[r.direction]
        lines.append(f"{r.figure:<{width}} {_fmt(r.a):>14} {_fmt(r.b):>14} {pct:>9} {arrow} {r.verdict(noise)}")
    return "\n".join(lines)


def load(path: Path) -> dict[str, Any]:
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a benchmark result (a JSON object was expected)")
    return data


def main(baseline: Path, candidate: Path, noise: float = 0.1, warn_only: bool = False, show_all: bool = False) -> int:
    try:
        a, b = load(baseline), load(candidate)
    except (OSError, ValueError) as exc:
        print(f"arrwdb bench compare: {exc}", file=sys.stderr)
        return 2
    if a.get("benchmark") != b.get("benchmark"):
        print(
            f"arrwdb bench compare: {baseline} is a {a.get('benchmark')!r} result and {candidate} a "
            f"{b.get('benchmark')!r} result: nothing to compare",
            file=sys.stderr,
        )
        return 2
    rows = compare(a, b)
    for label, path, report in (("A", baseline, a), ("B", candidate, b)):
        average = report.get("load_average")
        busy = f", load average {average['before']:.1f} -> {average['after']:.1f}" if average else ""
        print(f"{label} = {path} ({report.get('machine', {}).get('date', '?')}{busy})")
    for warning in context_warnings(a, b):
        print(f"warning: {warning}")
    print(f"noise band ±{noise * 100:.0f}%; ↑ higher is better, ↓ lower is better\n")
    print(format_rows(rows, noise, show_all))
    judged = [r for r in rows if r.direction != 0 and r.change is not None]
    regressions = [r for r in rows if r.verdict(noise) == "REGRESSION"]
    better = [r for r in rows if r.verdict(noise) == "better"]
    print(
        f"\n{len(judged)} figures judged: {len(better)} better, {len(regressions)} regressions, "
        f"{len(judged) - len(better) - len(regressions)} within noise"
    )
    if regressions and not warn_only:
        print(f"FAIL: {len(regressions)} regressions beyond ±{noise * 100:.0f}%", file=sys.stderr)
        return 1
    return 0
