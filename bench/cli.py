"""`arrwdb bench <benchmark>`: the benchmark suite's command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from arrwdb.bench import gpu_cli, toolkit_cli


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part)


def _json_object(text: str) -> dict:
    import json

    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("a JSON object")
    return value


def _request_batch(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError("0 (off) or 1 to 1000 queries per request")
    return value


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
    batching.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every point (and the overload phase) this many times, interleaved; report the median",
    )
    workers = sub.add_parser("workers", help="HTTP-bound throughput by number of HTTP worker processes")
    workers.add_argument("--output", type=Path, default=Path("bench/results/workers.json"))
    workers.add_argument("--cache-dir", type=Path, default=Path(".bench-cache"))
    workers.add_argument("--workers", type=_ints, default=(0, 1, 2), help="comma-separated counts; 0 = one process")
    workers.add_argument("--clients", type=int, default=64)
    workers.add_argument("--seconds", type=float, default=6.0)
    batching.add_argument(
        "--baseline-python",
        default=None,
        metavar="PYTHON",
        help="also measure batching on served by this interpreter's arrwdb (another checkout's venv)",
    )
    shards = sub.add_parser("shards", help="fan-out cost: 1 vs 2 vs 4 shards on a local 2-node Ray cluster")
    shards.add_argument("--output", type=Path, default=Path("bench/results/shards.json"))
    shards.add_argument("--data-dir", type=Path, default=Path(".bench-cache/shards-data"), help="emptied first")
    shards.add_argument("--rows", type=int, default=50_000)
    shards.add_argument("--shards", type=_ints, default=(1, 2, 4))
    shards.add_argument("--requests", type=int, default=60, help="sequential requests per latency point")
    shards.add_argument("--clients", type=int, default=64)
    shards.add_argument("--seconds", type=float, default=5.0)
    replicas = sub.add_parser(
        "replicas", help="insert rate with 2 copies of a shard vs 1, on a local 2-node Ray cluster"
    )
    replicas.add_argument("--output", type=Path, default=Path("bench/results/replicas.json"))
    replicas.add_argument("--data-dir", type=Path, default=Path(".bench-cache/replicas-data"), help="emptied first")
    replicas.add_argument("--clients", type=_ints, default=(8, 32), help="concurrent writers, one run per count")
    replicas.add_argument("--seconds", type=float, default=8.0, help="per round and library")
    replicas.add_argument("--rounds", type=int, default=3)
    embed = sub.add_parser("embed", help="texts/s of the packaged model by batch size, in process")
    embed.add_argument("--batches", type=_ints, default=(1, 8, 64, 256))
    embed.add_argument("--seconds", type=float, default=3.0)
    embed.add_argument("--device", default="cpu")
    embed.add_argument("--precision", default="auto", help="auto (the server's choice), float32, bfloat16, float16")
    embed.add_argument("--output", type=Path, default=None, help="also write the report as JSON")
    engines = sub.add_parser("engines", help="CPU HNSW engines (FAISS, hnswlib, usearch) at equal recall, in process")
    engines.add_argument("--output", type=Path, default=Path("bench/results/engines.json"))
    engines.add_argument("--datasets", default="minilm-like,fashion-mnist")
    engines.add_argument("--rows", type=int, default=20_000)
    engines.add_argument("--queries", type=int, default=500)
    engines.add_argument("--m", type=int, default=32)
    engines.add_argument("--ef-construction", type=int, default=200)
    engines.add_argument("--seconds", type=float, default=1.0, help="per one-client q/s point")
    engines.add_argument("--engines", default="", help="comma-separated engine names (default: every one installed)")
    defaults = sub.add_parser("hnsw-defaults", help="HNSW graphs: build time, efSearch calibrated vs needed")
    defaults.add_argument("--output", type=Path, default=Path("bench/results/hnsw-defaults.json"))
    defaults.add_argument("--datasets", default="fashion-mnist,bible,glove,ood-48,ood-384")
    defaults.add_argument("--rows", type=int, default=60_000)
    defaults.add_argument("--queries", type=int, default=1000)
    defaults.add_argument("--cache-dir", type=Path, default=Path(".bench-cache"))
    indexed = sub.add_parser("indexed", help="bulk import over HTTP: seconds until every row is in the HNSW graph")
    indexed.add_argument("--output", type=Path, default=Path("bench/results/indexed.json"))
    indexed.add_argument("--datasets", default="fashion-mnist,minilm-like")
    indexed.add_argument("--rows", type=int, default=60_000)
    indexed.add_argument("--queries", type=int, default=500)
    indexed.add_argument("--batch", type=int, default=1000, help="rows per documents/batch request")
    indexed.add_argument("--index-params", type=_json_object, default=None, help="e.g. '{\"m\": 16}' (default: none)")
    indexed.add_argument(
        "--baseline-python",
        default=None,
        metavar="PYTHON",
        help="first run the same import on this interpreter's arrwdb (another checkout's venv)",
    )
    cold = sub.add_parser("coldstart", help="time from process start to exact and to ANN answers")
    cold.add_argument("data_dir", type=Path)
    cold.add_argument("--library", required=True)
    cold.add_argument("--build-rows", type=int, default=0, help="first build DATA_DIR: this many random 384-d rows")
    cold.add_argument("--index-type", default="hnsw", choices=("hnsw", "brute_force"), help="of the library built")
    cold.add_argument("--output", type=Path, default=None, help="also write the report as JSON")
    ann = sub.add_parser("ann", help="recall@10 vs QPS for hnsw and ivf: raw FAISS, in process, server")
    ann.add_argument("--output", type=Path, default=Path("bench/results/ann.json"))
    ann.add_argument("--cache-dir", type=Path, default=Path(".bench-cache"))
    ann.add_argument("--datasets", default="glove,bible", help="glove, bible, synthetic")
    ann.add_argument("--index-types", default="hnsw,ivf")
    ann.add_argument("--clients", type=int, default=64)
    ann.add_argument("--seconds", type=float, default=4.0)
    ann.add_argument("--recall-queries", type=int, default=2000)
    ann.add_argument(
        "--request-batch",
        type=_request_batch,
        default=64,
        help="queries per POST /search/batch request in the batch-request server leg (0 = no such leg)",
    )
    models = sub.add_parser("models", help="/v1/embeddings vs /v1/embed, two models on one device, reranking")
    models.add_argument("--output", type=Path, default=Path("bench/results/models.json"))
    models.add_argument("--cache-dir", type=Path, default=Path(".bench-cache"))
    models.add_argument("--clients", type=int, default=64)
    models.add_argument("--seconds", type=float, default=5.0)
    retrieval = sub.add_parser("retrieval", help="nDCG@10 / recall@10 and q/s of vector, keyword and hybrid search")
    retrieval.add_argument("--output", type=Path, default=Path("bench/results/retrieval.json"))
    retrieval.add_argument("--data-dir", type=Path, default=Path(".bench-cache/retrieval-data"), help="emptied first")
    retrieval.add_argument("--docs", type=int, default=100_000, help="KJV passages, from Genesis 1 on (all: ~8.5k)")
    retrieval.add_argument("--queries", type=int, default=500, help="per data set")
    retrieval.add_argument("--clients", type=int, default=64)
    retrieval.add_argument("--seconds", type=float, default=8.0)
    retrieval.add_argument(
        "--rounds", type=int, default=1, help="speed: each mode measured N times, interleaved; the median round"
    )
    toolkit_cli.add_parsers(sub)
    gpu_cli.add_parsers(sub)
    return parser


def _write_json(path: Path | None, report: dict) -> None:
    if path is None:
        return
    import orjson

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    print(f"wrote {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.benchmark in toolkit_cli.COMMANDS:
        return toolkit_cli.run(args)
    if args.benchmark in gpu_cli.COMMANDS:
        return gpu_cli.run(args)
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
            baseline_python=args.baseline_python,
            rounds=args.rounds,
        )
        print(format_table(report))
        print(f"\nwrote {args.output} and {args.output.with_suffix('.png')}", file=sys.stderr)
    if args.benchmark == "models":
        from arrwdb.bench.models import format_models, run_models

        print(format_models(run_models(args.output, args.cache_dir, clients=args.clients, seconds=args.seconds)))
        print(f"\nwrote {args.output}", file=sys.stderr)
    if args.benchmark == "shards":
        from arrwdb.bench.shards import format_shards, run_shards

        report = run_shards(
            args.output,
            args.data_dir,
            rows=args.rows,
            shard_counts=args.shards,
            requests=args.requests,
            clients=args.clients,
            seconds=args.seconds,
        )
        print(format_shards(report))
        print(f"\nwrote {args.output}", file=sys.stderr)
    if args.benchmark == "replicas":
        from arrwdb.bench.replicas import format_replicas, run_replicas

        report = run_replicas(
            args.output, args.data_dir, clients=args.clients, seconds=args.seconds, rounds=args.rounds
        )
        print(format_replicas(report))
        print(f"\nwrote {args.output}", file=sys.stderr)
    if args.benchmark == "workers":
        from arrwdb.bench.workers import format_workers, run_workers

        report = run_workers(
            args.output, args.cache_dir, workers=args.workers, clients=args.clients, seconds=args.seconds
        )
        print(format_workers(report))
    if args.benchmark == "retrieval":
        import shutil

        from arrwdb.bench.retrieval import format_retrieval, run_retrieval

        shutil.rmtree(args.data_dir, ignore_errors=True)
        report = run_retrieval(
            args.output,
            args.data_dir,
            docs=args.docs,
            queries=args.queries,
            clients=args.clients,
            seconds=args.seconds,
            rounds=args.rounds,
        )
        print(format_retrieval(report))
        print(f"\nwrote {args.output}", file=sys.stderr)
    if args.benchmark == "embed":
        from arrwdb.bench.embed import format_embed, run_embed

        report = run_embed(args.batches, args.seconds, args.device, args.precision)
        _write_json(args.output, report)
        print(format_embed(report))
    if args.benchmark == "engines":
        from arrwdb.bench.engines import format_engines, run_engines

        datasets = tuple(d for d in args.datasets.split(",") if d)
        only = tuple(e for e in args.engines.split(",") if e)
        report = run_engines(
            args.output, args.rows, args.queries, args.m, args.ef_construction, args.seconds, datasets, only
        )
        print(format_engines(report))
        print(f"\nwrote {args.output}", file=sys.stderr)
    if args.benchmark == "hnsw-defaults":
        from arrwdb.bench.hnsw_defaults import run_hnsw_defaults

        datasets = tuple(d for d in args.datasets.split(",") if d)
        run_hnsw_defaults(args.output, datasets, args.rows, args.queries, args.cache_dir)
        print(f"\nwrote {args.output}", file=sys.stderr)
    if args.benchmark == "indexed":
        from arrwdb.bench.indexed import format_indexed, run_indexed

        datasets = tuple(d for d in args.datasets.split(",") if d)
        report = run_indexed(
            args.output,
            datasets,
            args.rows,
            args.queries,
            args.batch,
            baseline_python=args.baseline_python,
            index_params=args.index_params,
        )
        print(format_indexed(report))
        print(f"\nwrote {args.output}", file=sys.stderr)
    if args.benchmark == "coldstart":
        import orjson

        from arrwdb.bench.coldstart import build_cold_store, run_coldstart

        if args.build_rows:
            build_cold_store(args.data_dir, args.library, args.build_rows, index_type=args.index_type)
        report = run_coldstart(args.data_dir, args.library)
        _write_json(args.output, report)
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    if args.benchmark == "ann":
        from arrwdb.bench.ann import run_ann
        from arrwdb.bench.ann_report import format_report

        report = run_ann(
            args.output,
            args.cache_dir,
            datasets=tuple(d for d in args.datasets.split(",") if d),
            index_types=tuple(t for t in args.index_types.split(",") if t),
            clients=args.clients,
            seconds=args.seconds,
            recall_queries=args.recall_queries,
            request_batch=args.request_batch,
        )
        print(format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
