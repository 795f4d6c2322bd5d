"""Memory-growth report: RSS and tracemalloc's top growth of the server across a bounded load run.

    python loadtest/memreport.py [--users 50 --warmup 20 --seconds 60 --frames 1 --top 25 --results DIR]

Starts a server with ``ARRWDB_TRACEMALLOC=FRAMES`` (tracing on, and the snapshot route), runs a
short Locust warm-up first so the caches (embedding, result, filter) fill up to their steady size,
takes a snapshot, runs the measured load, takes another, and writes ``memreport.json`` and
``memreport.md`` into the results folder.  Growth that stays after the caches are warm is what to
look at: caches are bounded in bytes and stop growing; a leak does not.  Latency figures of this run
are not representative: tracing slows every allocation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx
from runner import DEFAULT_RESULTS, LocustRun, arrwdb_server, run_locust


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--spawn-rate", type=float, default=10.0)
    parser.add_argument("--warmup", type=int, default=20, help="seconds of load before the first snapshot")
    parser.add_argument("--seconds", type=int, default=60, help="seconds of load between the snapshots")
    parser.add_argument("--frames", type=int, default=1, help="traceback frames tracemalloc keeps")
    parser.add_argument("--top", type=int, default=25, help="allocation sites listed")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    return parser.parse_args(argv)


def snapshot(url: str, top: int) -> dict[str, Any]:
    response = httpx.post(f"{url}/debug/memory/snapshot", params={"limit": top}, timeout=300)
    response.raise_for_status()
    return dict(response.json())


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def markdown(report: dict[str, Any]) -> str:
    before, after = report["before"], report["after"]
    lines = [
        "# Memory growth under load",
        "",
        f"Load: {report['load']} after a {report['warmup_s']} s warm-up; tracemalloc with {report['frames']} frame(s).",
        "",
        "| | before | after | growth |",
        "|---|---|---|---|",
        f"| RSS | {_mib(before['rss_bytes'])} | {_mib(after['rss_bytes'])} | "
        f"{_mib(after['rss_bytes'] - before['rss_bytes'])} |",
        f"| traced by tracemalloc | {_mib(before['traced_bytes'])} | {_mib(after['traced_bytes'])} | "
        f"{_mib(after['traced_bytes'] - before['traced_bytes'])} |",
        "",
        "## Top growth by allocation site",
        "",
        "| where | size after | growth | blocks growth |",
        "|---|---|---|---|",
    ]
    for stat in after["growth"] or []:
        lines.append(
            f"| `{stat['where']}` | {stat['size'] / 1024:.1f} KiB | {stat['size_diff'] / 1024:+.1f} KiB | "
            f"{stat['count_diff']:+d} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    options = _options(argv)
    results: Path = options.results
    env = {"ARRWDB_TRACEMALLOC": str(options.frames)}
    load = LocustRun(options.users, options.spawn_rate, options.seconds)
    warmup = LocustRun(options.users, options.spawn_rate, options.warmup)
    with arrwdb_server(results, env=env) as server:
        run_locust(server.url, warmup, results, "memreport_warmup")
        before = snapshot(server.url, options.top)
        summary = run_locust(server.url, load, results, "memreport_load")
        after = snapshot(server.url, options.top)
    report = {
        "load": load.describe(),
        "warmup_s": options.warmup,
        "frames": options.frames,
        "http": summary["http"],
        "before": before,
        "after": after,
    }
    (results / "memreport.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (results / "memreport.md").write_text(text)
    print(text)
    print(f"written: {results / 'memreport.md'}, {results / 'memreport.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
