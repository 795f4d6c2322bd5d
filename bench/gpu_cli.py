"""The `gpu` sub-command of `arrwdb bench` (wired in by bench/cli.py)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

COMMANDS = ("gpu",)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    gpu = sub.add_parser("gpu", help="the GPU path: brute force, IVF, embedding, server end to end (see bench/gpu.py)")
    gpu.add_argument("--output", type=Path, default=Path("bench/results/gpu.json"))
    gpu.add_argument("--cache-dir", type=Path, default=Path(".bench-cache"))
    gpu.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU: a dry run of every step")
    gpu.add_argument("--rows", type=int, default=None, help="brute-force rows (default 1000000)")
    gpu.add_argument("--dimension", type=int, default=None, help="default 768")
    gpu.add_argument("--batches", type=_ints, default=None, help="comma-separated (default 1,64,256,1024)")
    gpu.add_argument("--ivf-rows", type=int, default=None, help="default 200000")
    gpu.add_argument("--server-rows", type=int, default=None, help="default 500000 (the issue's target: 5000000)")
    gpu.add_argument("--clients", type=int, default=None, help="default 256")
    gpu.add_argument("--seconds", type=float, default=None, help="measured seconds per server run (default 5)")
    gpu.add_argument("--budget", type=float, default=None, help="seconds after which further steps are skipped")
    gpu.add_argument("--steps", default=None, help="default bandwidth,brute_force,gil,server,ivf,embedding")


def run(args: argparse.Namespace) -> int:
    from arrwdb.bench.gpu import GpuBenchConfig, cpu_config, failed_steps, run_gpu_bench
    from arrwdb.bench.gpu_report import format_table

    config = cpu_config() if args.cpu else GpuBenchConfig()
    overrides = {
        "rows": args.rows,
        "dimension": args.dimension,
        "batches": args.batches,
        "ivf_rows": args.ivf_rows,
        "server_rows": args.server_rows,
        "clients": args.clients,
        "seconds": args.seconds,
        "budget_s": args.budget,
        "steps": tuple(s for s in args.steps.split(",") if s) if args.steps else None,
    }
    config = replace(config, cache_dir=args.cache_dir, **{k: v for k, v in overrides.items() if v is not None})
    report = run_gpu_bench(config, args.output)
    print(format_table(report))
    print(f"\nwrote {args.output}", file=sys.stderr)
    failed = failed_steps(report)
    if failed:
        print(f"failed steps: {', '.join(failed)} (tracebacks in {args.output})", file=sys.stderr)
    return 1 if failed else 0
