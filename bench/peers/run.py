"""`arrwdb bench peers`: one run over every system, each failure recorded with its reason."""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import orjson

from arrwdb.bench.machine import machine_info
from arrwdb.bench.peers.common import QUICK, PeerSettings, interleaved_points
from arrwdb.bench.peers.dataset import PeerData, from_dataset, make_data, save
from arrwdb.bench.peers.embed_peer import THREADS
from arrwdb.bench.peers.report import format_report, issue29_targets, peers_figure, ratios, targets

SYSTEMS = ("arrwdb", "chroma", "milvus", "infinity")


def _http_systems(
    data: PeerData, settings: PeerSettings, work_dir: Path, systems: tuple[str, ...], bar: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    """arrwdb and Chroma: each loaded (insert, index, recall) while the other waits idle, then both
    kept up for QPS rounds that alternate between them."""
    from arrwdb.bench.peers.arrwdb_peer import ArrwdbPeer
    from arrwdb.bench.peers.chroma_peer import ChromaPeer

    results: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    with ExitStack() as stack:
        loaded = []
        for peer_class in (ArrwdbPeer, ChromaPeer):
            if peer_class.name not in systems:
                continue
            try:
                peer = stack.enter_context(peer_class(data, settings, work_dir))
                peer.load(bar)
                loaded.append(peer)
            except Exception as exc:  # one peer failing must not hide the others: say exactly why
                unavailable[peer_class.name] = f"{type(exc).__name__}: {exc}"
        targets = {label: target for peer in loaded for label, target in peer.targets.items()}
        points, failed = interleaved_points(
            targets, settings.clients, settings.seconds, settings.warmup, settings.rounds, bar
        )
        bar.update()
        for peer in loaded:
            for label in peer.targets:
                index = label.split(" ", 1)[1]
                peer.results[index]["qps"] = points[label]
        unavailable.update({f"{label} QPS": reason for label, reason in failed.items()})
    # results are read after the servers stopped: their memory at the end of the run is recorded too
    for peer in loaded:
        results[peer.name] = peer.results
    return results, unavailable


def run_peers(
    output: Path,
    peers_dir: Path,
    settings: PeerSettings,
    systems: tuple[str, ...] = SYSTEMS,
    progress: bool = True,
    dataset: str | None = None,
) -> dict[str, Any]:
    """``dataset``: a named data set (``dataset.from_dataset``) instead of the clustered vectors; its
    run compares arrwdb and Chroma only, and adds ``issue29_targets``."""
    from tqdm import tqdm

    from arrwdb.bench.peers.embed_peer import run_embedding
    from arrwdb.bench.peers.milvus_peer import run_milvus

    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise ValueError(f"unknown systems {sorted(unknown)} (known: {', '.join(SYSTEMS)})")
    output.parent.mkdir(parents=True, exist_ok=True)
    work_dir = peers_dir / "work"
    work_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_before = os.getloadavg()
    if dataset is None:
        data = make_data(settings.rows, settings.queries, settings.dimension, k=settings.k)
    else:
        data = from_dataset(dataset, settings.rows, settings.queries, k=settings.k)
        settings = replace(settings, dimension=int(data.vectors.shape[1]))
        systems = tuple(s for s in systems if s in ("arrwdb", "chroma"))
    inputs = save(data, work_dir)
    steps = {"arrwdb": 2, "chroma": 1, "milvus": 1}
    embeds = dataset is None and any(s in systems for s in ("arrwdb", "infinity"))
    total = sum(steps.get(s, 0) for s in systems) + 1 + len(THREADS) * embeds
    bar = tqdm(total=total, desc="peers", disable=not progress)
    results, unavailable = _http_systems(data, settings, work_dir, systems, bar)
    if "milvus" in systems:
        try:
            results["milvus"] = run_milvus(data, settings, work_dir, inputs, bar)
        except Exception as exc:  # say exactly why
            unavailable["milvus"] = f"{type(exc).__name__}: {exc}"
    embed_systems = tuple(s for s in ("arrwdb", "infinity") if s in systems and dataset is None)
    embedding = run_embedding(settings, work_dir, bar, embed_systems) if embed_systems else {}
    unavailable.update(embedding.pop("unavailable", {}))
    bar.close()
    report: dict[str, Any] = {
        "benchmark": "peers",
        "machine": machine_info(),
        "settings": {
            **asdict(settings),
            "data": f"{data.name}, metric {data.metric}"
            if data.name
            else f"{data.clusters} gaussian clusters (spread {data.spread}), unit vectors, metric cosine",
            "k": data.k,
        },
        "systems": results,
        "embedding": embedding,
        "unavailable": unavailable,
        "wall_seconds": time.perf_counter() - started,
        "load_average": {"before": load_before[0], "after": os.getloadavg()[0]},
    }
    report["ratios"] = ratios(report)
    report["targets"] = targets(report)
    if dataset is not None:
        report["issue29_targets"] = issue29_targets(report)
    output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    peers_figure(report, output.with_suffix(".png"))
    return report


def main(args: argparse.Namespace) -> int:
    overrides = {
        "rows": args.rows,
        "queries": args.queries,
        "clients": args.clients,
        "seconds": args.seconds,
        "texts": args.texts,
        "precision": args.precision,
    }
    settings = replace(QUICK if args.quick else PeerSettings(), **{k: v for k, v in overrides.items() if v is not None})
    if args.own_defaults:
        settings = replace(settings, hnsw={})
    report = run_peers(
        args.output, args.peers_dir, settings, args.systems, progress=not args.no_progress, dataset=args.dataset
    )
    print(format_report(report))
    print(f"\nwrote {args.output} and {args.output.with_suffix('.png')}", file=sys.stderr)
    return 0
