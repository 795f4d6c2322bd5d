"""Run the Locust profile against a server of its own, optionally under py-spy.

    python loadtest/run.py locust  [--users 100 --spawn-rate 10 --seconds 60 --results DIR]
    python loadtest/run.py profile [same options]   # also: py-spy flamegraph of the server

Writes into the results folder (default loadtest/results/): ``locust_stats.csv`` and the other
Locust CSVs, ``locust_report.html``, ``locust_summary.json`` (HTTP-only aggregate and the header
metrics), ``server.log`` (with the slow-query log) and, for ``profile``, ``flamegraph.svg``.
Prints p50/p95/p99 and the error rate against the targets; ``--strict`` exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from runner import DEFAULT_RESULTS, LocustRun, arrwdb_server, count_slow_queries, format_summary, run_locust, verdict


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("locust", "profile"), nargs="?", default="locust")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--spawn-rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=int, default=60, help="Locust run time (ramp-up included)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second (profile)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a latency or error target is missed")
    return parser.parse_args(argv)


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy not found: pip install py-spy (it is in the dev extra's venv)")
    return found


def _start_profiler(pid: int, seconds: int, rate: int, results: Path) -> subprocess.Popen[bytes]:
    """py-spy attached to the running server (needs ptrace: root, or CAP_SYS_PTRACE).

    ``--threads`` keeps the event loop, the device worker and the writer apart in the flamegraph;
    ``--native`` is left off because it costs far more than the Python frames need here.
    """
    command = [
        _py_spy(),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        str(rate),
        "--threads",
        "--format",
        "flamegraph",
        "--output",
        str(results / "flamegraph.svg"),
    ]
    return subprocess.Popen(command)


def main(argv: list[str] | None = None) -> int:
    options = _options(argv)
    results: Path = options.results
    run = LocustRun(options.users, options.spawn_rate, options.seconds)
    with arrwdb_server(results) as server:
        profiler = None
        if options.mode == "profile":
            pid = server.process.pid if server.process else 0
            profiler = _start_profiler(pid, run.seconds, options.rate, results)
        summary = run_locust(server.url, run, results)
        if profiler is not None and profiler.wait(timeout=120) != 0:
            print(f"py-spy exited with {profiler.returncode}", file=sys.stderr)
    print(format_summary(summary, run))
    print(f"slow queries logged (> ARRWDB_SLOW_QUERY_MS): {count_slow_queries(results / 'server.log')}")
    print(f"results in {results}/" + (" (flamegraph.svg)" if options.mode == "profile" else ""))
    return 1 if options.strict and verdict(summary["http"]) else 0


if __name__ == "__main__":
    sys.exit(main())
