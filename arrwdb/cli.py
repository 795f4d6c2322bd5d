"""The ``arrwdb`` command: ``serve``, ``ingest`` and ``bench`` (API.md, Command line).

Everything heavy is imported inside the branch that needs it: ``arrwdb ingest`` and ``--help`` must
start without paying for torch, the model or the server, and ``serve`` without httpx.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arrwdb.config import Settings

PROG = "arrwdb"
DEFAULT_URL = "http://127.0.0.1:8000"  # kept in sync with arrwdb.client.client.DEFAULT_URL (not imported: cost)
SERVE_FLAGS = ("host", "port", "data_dir", "device", "workers", "ray_address")


def _batch_size(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000")
    return value


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be auto or a number of processes (0 or more)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="arrwdb vector search server and tools")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # Serve flags default to None so that only flags actually given override the environment.
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default=None, help="listen address (env ARRWDB_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="listen port (env ARRWDB_PORT, default 8000)")
    serve.add_argument(
        "--data-dir", type=Path, default=None, help="store directory (env ARRWDB_DATA_DIR, default ./data)"
    )
    serve.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default=None, help="env ARRWDB_DEVICE, default auto"
    )

    serve.add_argument(
        "--workers",
        type=_workers,
        default=None,
        metavar="N|auto",
        help="HTTP worker processes beside the engine process; 0 = one process (env ARRWDB_WORKERS, default auto)",
    )
    serve.add_argument(
        "--ray",
        dest="ray_address",
        default=None,
        metavar="auto|ADDRESS",
        help="run the engines as actors on this Ray cluster (pip install 'arrwdb[ray]'; env ARRWDB_RAY_ADDRESS)",
    )

    ingest = commands.add_parser("ingest", help="load a JSONL file of documents into a library")
    ingest.add_argument("file", type=Path, metavar="FILE.jsonl", help="one JSON Document per line")
    ingest.add_argument("--library", required=True, metavar="NAME_OR_ID", help="target library")
    ingest.add_argument(
        "--url",
        default=os.environ.get("ARRWDB_URL", DEFAULT_URL),
        help=f"server URL (env ARRWDB_URL, default {DEFAULT_URL})",
    )
    ingest.add_argument("--batch", type=_batch_size, default=256, help="documents per request (1-1000)")
    ingest.add_argument(
        "--create", action="store_true", help="create the library (server defaults) if it does not exist"
    )
    ingest.add_argument(
        "--api-key",
        default=None,
        help="the one API key to send (default: env ARRWDB_API_KEY; not ARRWDB_API_KEYS, the server's list)",
    )
    ingest.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    ingest.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    # Listed for --help only: main() forwards everything after "bench" before argparse sees it.
    commands.add_parser("bench", help="load profiles and benchmarks (arrwdb bench --help)", add_help=False)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with only the flags that were given laid on top."""
    from arrwdb.config import Settings

    overrides = {name: getattr(args, name) for name in SERVE_FLAGS if getattr(args, name) is not None}
    return Settings(**overrides)


def _serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from arrwdb.runtime.openmp import configure_for_serving

    configure_for_serving()

    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        # One line per bad setting, e.g. "port: Input should be a valid integer".
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _fail(f"invalid settings: {problems}")
    try:
        from arrwdb.server.serve import serve
    except ModuleNotFoundError as exc:  # a missing optional dependency (e.g. faiss), or no server build
        return _fail(f"cannot start the server: {exc}")
    from arrwdb.errors import ArrwdbError

    try:
        serve(settings)
    except ArrwdbError as exc:  # a setting or a store the server cannot start with
        return _fail(exc.message)
    return 0


def _ingest(args: argparse.Namespace) -> int:
    import httpx

    from arrwdb.client.client import ApiError, Client
    from arrwdb.client.ingest import IngestError, ingest_jsonl

    try:
        # api_key None: the client sends $ARRWDB_API_KEY.
        with Client(args.url, api_key=args.api_key, timeout=args.timeout) as client:
            report = ingest_jsonl(
                args.file,
                args.library,
                client,
                batch_size=args.batch,
                progress=not args.no_progress,
                create=args.create,
            )
    except ApiError as exc:
        if exc.status == 404 and exc.type == "not_found" and not args.create:
            return _fail(f"server answered {exc}; add --create to create library {args.library!r}")
        return _fail(f"server answered {exc}")
    except httpx.TransportError as exc:
        return _fail(f"cannot reach {args.url}: {exc or type(exc).__name__}")
    except (IngestError, OSError) as exc:
        return _fail(str(exc))
    print(
        f"ingested {report.documents} documents in {report.batches} batches, "
        f"{report.seconds:.1f} s ({report.docs_per_second:.0f} docs/s)"
    )
    return 0


def _bench(argv: list[str]) -> int:
    try:
        from arrwdb.bench.cli import main as bench_main
    except ImportError as exc:
        return _fail(f"bench is not available: {exc}")
    return int(bench_main(argv) or 0)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # bench owns its own flags (including --help), so it gets the raw remainder untouched.
    if argv[:1] == ["bench"]:
        return _bench(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        return _ingest(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
