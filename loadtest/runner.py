"""Shared by the load-test scripts: a server of our own, and Locust as a subprocess.

Locust monkey-patches the whole process with gevent, so it always runs in a process of its own and
nothing here imports it.  The server is a separate `arrwdb serve` on a free loopback port with a
temporary data directory; every run is bounded in time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arrwdb.bench.serverproc import ServerProcess

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
DEFAULT_RESULTS = HERE / "results"

# The targets for the guide's users at 100 users (ten times under the guide's own).
TARGET_P95_MS = 50.0
TARGET_P99_MS = 200.0
TARGET_ERROR_RATE = 0.01


@dataclass(frozen=True)
class LocustRun:
    users: int = 100
    spawn_rate: float = 10.0
    seconds: int = 60

    def describe(self) -> str:
        return f"{self.users} users, spawn rate {self.spawn_rate:g}/s, {self.seconds} s"


@contextmanager
def arrwdb_server(results: Path, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """`arrwdb serve` on a free loopback port over a temporary data dir; its log goes to results/."""
    results.mkdir(parents=True, exist_ok=True)
    (results / "server.log").unlink(missing_ok=True)  # ServerProcess appends
    with tempfile.TemporaryDirectory(prefix="arrwdb-loadtest-") as data_dir:
        server = ServerProcess(Path(data_dir), env=env, log_path=results / "server.log")
        with server:
            yield server


def run_locust(url: str, run: LocustRun, results: Path, prefix: str = "locust") -> dict[str, Any]:
    """Run the locustfile headless against ``url``: CSV, HTML report and a summary JSON in ``results``."""
    summary_path = results / f"{prefix}_summary.json"
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        url,
        "--users",
        str(run.users),
        "--spawn-rate",
        str(run.spawn_rate),
        "--run-time",
        f"{run.seconds}s",
        "--stop-timeout",
        "10",
        "--csv",
        str(results / prefix),
        "--html",
        str(results / f"{prefix}_report.html"),
        "--summary-json",
        str(summary_path),
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Locust exits 1 when any request failed: that is a figure of the run, not a crash of it.
    completed = subprocess.run(command, env=env, timeout=run.seconds + 120, check=False)
    if completed.returncode not in (0, 1) or not summary_path.exists():
        raise RuntimeError(f"locust failed (exit {completed.returncode}); see its output above")
    return json.loads(summary_path.read_text())


def verdict(http: dict[str, float]) -> list[str]:
    """The targets this run missed (empty: all met)."""
    missed = []
    if http["p95"] >= TARGET_P95_MS:
        missed.append(f"p95 {http['p95']:.0f} ms >= {TARGET_P95_MS:.0f} ms")
    if http["p99"] >= TARGET_P99_MS:
        missed.append(f"p99 {http['p99']:.0f} ms >= {TARGET_P99_MS:.0f} ms")
    if http["error_rate"] >= TARGET_ERROR_RATE:
        missed.append(f"errors {100 * http['error_rate']:.2f}% >= {100 * TARGET_ERROR_RATE:.0f}%")
    return missed


def format_summary(summary: dict[str, Any], run: LocustRun) -> str:
    http = summary["http"]
    lines = [
        f"Locust: {run.describe()}",
        f"HTTP: {http['requests']} requests, {http['rps']:.1f} req/s, "
        f"p50 {http['p50']:.0f} ms, p95 {http['p95']:.0f} ms, p99 {http['p99']:.0f} ms, "
        f"max {http['max']:.0f} ms, errors {http['failures']} ({100 * http['error_rate']:.2f}%)",
    ]
    for name, figures in sorted(summary["endpoints"].items()):
        lines.append(
            f"  {name:<48} n={figures['requests']:<6} p50 {figures['p50']:>5.0f}  p95 {figures['p95']:>5.0f}  "
            f"p99 {figures['p99']:>5.0f} ms  errors {figures['failures']}"
        )
    for name, figures in sorted(summary["headers"].items()):
        lines.append(
            f"  {name:<48} n={figures['requests']:<6} mean {figures['mean']:>8.1f}  "
            f"p50 {figures['p50']:>6.0f}  p95 {figures['p95']:>6.0f}  p99 {figures['p99']:>6.0f}"
        )
    missed = verdict(http)
    lines.append(
        "targets (p95 < 50 ms, p99 < 200 ms, errors < 1%): " + ("met" if not missed else "MISSED: " + "; ".join(missed))
    )
    return "\n".join(lines)


def count_slow_queries(server_log: Path) -> int:
    """Lines of the slow-query log (logger arrwdb.slow) in a server log."""
    if not server_log.exists():
        return 0
    return sum(1 for line in server_log.read_text(errors="replace").splitlines() if " arrwdb.slow: " in line)
