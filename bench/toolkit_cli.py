"""The `suite`, `compare` and `peers` sub-commands of `arrwdb bench` (wired in by bench/cli.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

COMMANDS = ("suite", "compare", "peers")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part)


def _names(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.split(",") if part)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    suite = sub.add_parser("suite", help="latency (mean/p50/p95/p99) and indexing rate per index type and dimension")
    suite.add_argument("--output", type=Path, default=Path("bench/results/suite.json"))
    suite.add_argument("--dimensions", type=_ints, default=None, help="comma-separated (default 384,768,1536)")
    suite.add_argument("--index-types", type=_names, default=None, help="default brute_force,ivf,hnsw")
    suite.add_argument("--documents", type=int, default=None, help="documents per library (default 10000)")
    suite.add_argument("--queries", type=int, default=None, help="timed queries (default 1000)")
    suite.add_argument("--warmup", type=int, default=None, help="warm-up queries (default 100)")
    suite.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not a measurement")
    suite.add_argument("--url", default=None, help="benchmark this running (loopback) server instead of starting one")
    suite.add_argument("--no-plot", action="store_true")
    suite.add_argument("--no-progress", action="store_true")

    compare = sub.add_parser("compare", help="compare two result files; flag regressions beyond a noise band")
    compare.add_argument("baseline", type=Path, metavar="A.json")
    compare.add_argument("candidate", type=Path, metavar="B.json")
    compare.add_argument("--noise", type=float, default=0.1, help="relative change taken as noise (0.1 = 10%%)")
    compare.add_argument("--warn-only", action="store_true", help="print regressions but exit 0")
    compare.add_argument("--all", action="store_true", help="also list figures that have no better direction")

    peers = sub.add_parser("peers", help="arrwdb vs Chroma, Milvus Lite and Infinity on the same data")
    peers.add_argument("--output", type=Path, default=Path("bench/results/peers.json"))
    peers.add_argument("--peers-dir", type=Path, default=Path(".peers"), help="per-peer venvs and scratch data")
    peers.add_argument("--systems", type=_names, default=("arrwdb", "chroma", "milvus", "infinity"))
    peers.add_argument("--rows", type=int, default=None, help="vectors (default 50000)")
    peers.add_argument("--queries", type=int, default=None, help="queries for recall and the QPS pool (default 1000)")
    peers.add_argument("--clients", type=_ints, default=None, help="comma-separated (default 1,64)")
    peers.add_argument("--seconds", type=float, default=None, help="measured seconds per QPS point (default 5)")
    peers.add_argument("--texts", type=int, default=None, help="texts for the embedding comparison (default 2000)")
    peers.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default=None,
        help="the embedding model's dtype on arrwdb and Infinity alike (default auto: arrwdb's choice for this CPU)",
    )
    peers.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not a measurement")
    peers.add_argument(
        "--dataset",
        choices=("fashion-mnist", "minilm-like", "minilm-bible"),
        default=None,
        help="a named data set instead of the clustered vectors (arrwdb and Chroma only; issue 29's targets)",
    )
    peers.add_argument(
        "--own-defaults",
        action="store_true",
        help="each system's own HNSW defaults instead of one shared configuration (M 32, efC 200, ef 128)",
    )
    peers.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.benchmark == "suite":
        return _suite(args)
    if args.benchmark == "compare":
        from arrwdb.bench.compare import main as compare_main

        return compare_main(args.baseline, args.candidate, args.noise, args.warn_only, args.all)
    from arrwdb.bench.peers.run import main as peers_main

    return peers_main(args)


def _suite(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from arrwdb.bench.suite import QUICK, SuiteSettings, format_table, run_suite

    overrides = {
        "dimensions": args.dimensions,
        "index_types": args.index_types,
        "documents": args.documents,
        "queries": args.queries,
        "warmup": args.warmup,
    }
    settings = replace(
        QUICK if args.quick else SuiteSettings(), **{k: v for k, v in overrides.items() if v is not None}
    )
    report = run_suite(args.output, settings, url=args.url, progress=not args.no_progress, plot=not args.no_plot)
    print(format_table(report))
    plot = "" if args.no_plot else f" and {args.output.with_suffix('.png')}"
    print(f"\nwrote {args.output}{plot}", file=sys.stderr)
    return 0
