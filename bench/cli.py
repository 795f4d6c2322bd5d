"""`arrwdb bench <benchmark>`: the benchmark suite's command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arrwdb bench", description="arrwdb benchmarks (loopback only)")
    sub = parser.add_subparsers(dest="benchmark", required=True)
    batching = sub.add_parser("batching", help="batching off vs on: vector queries, text queries, inserts")
    batching.add_argument("--output", type=Path, default=Path("bench/results/batching.json"))
    batching.add_argument("--cache-dir", type=Path, default=Path(".bench-cache"))
    batching.add_argument("--clients", type=_ints, default=(1, 8, 64, 256), help="comma-separated, e.g. 1,8,64,256")
    batching.add_argument("--seconds", type=float, default=6.0, help="measured seconds per point")
    batching.add_argument("--warmup", type=float, default=1.5)
    batching.add_argument("--rows", type=int, default=100_000)
    batching.add_argument("--scenarios", default="vector,text,insert")
    batching.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.benchmark == "batching":
        from arrwdb.bench.batching import format_table, run_batching

        report = run_batching(
            args.output,
            args.cache_dir,
            concurrencies=args.clients,
            seconds=args.seconds,
            warmup=args.warmup,
            rows=args.rows,
            scenarios=tuple(s for s in args.scenarios.split(",") if s),
            progress=not args.no_progress,
        )
        print(format_table(report))
        print(f"\nwrote {args.output} and {args.output.with_suffix('.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
