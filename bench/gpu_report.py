"""The short table `arrwdb bench gpu` prints (the JSON file holds everything)."""

from __future__ import annotations

from typing import Any


def _gb(nbytes: float | None) -> str:
    return "-" if nbytes is None else f"{nbytes / 1e9:.2f} GB"


def _problem(result: dict[str, Any]) -> str | None:
    if "error" in result:
        return f"ERROR {result['error']}"
    if "skipped" in result:
        return f"skipped: {result['skipped']}"
    return None


def format_table(report: dict[str, Any]) -> str:
    results = report["results"]
    config = report["config"]
    machine = report["machine"]
    lines = [f"arrwdb GPU check on {machine.get('gpu') or machine['cpu']} ({config['device']}), {report['total_s']} s"]
    lines.append(f"{'step':<34} {'figure':>14}  notes")

    def row(step: str, figure: str, notes: str = "") -> None:
        lines.append(f"{step:<34} {figure:>14}  {notes}")

    for name in config["steps"]:
        result = results.get(name)
        if result is None:
            continue
        problem = _problem(result)
        if problem:
            row(name, "-", problem)
            continue
        if name == "bandwidth":
            row("memory bandwidth (copy)", f"{result['gb_per_s']:.0f} GB/s", "the floor a scan is held to")
        elif name == "brute_force":
            label = f"brute force {result['rows'] // 1000}k x {result['dimension']} {result['dtype']}"
            notes = f"fp32 copy on {result['fp32_copy']}; {_gb(result['gpu_memory_bytes'])} on the GPU"
            if result.get("floor_ms"):
                notes += f"; floor {result['floor_ms']:.2f} ms"
            row(label, "", notes)
            for p in result["points"]:
                floor = f", {p['over_bandwidth_floor']:.1f}x floor" if "over_bandwidth_floor" in p else ""
                row(f"  batch {p['batch']}", f"{p['qps']:,.0f} q/s", f"{p['ms']:.2f} ms/batch{floor}")
            parts = result["kernel_parts_batch256"]
            row(
                "  raw kernel, batch 256",
                f"{parts['kernel_grouped_ms']:.2f} ms",
                f"no re-rank, no host copies; plain top-k {parts['kernel_plain_ms']:.2f} ms, products alone "
                f"{parts['products_ms']:.2f} ms, one block's top-k {parts['block_topk_plain_ms']:.2f} ms "
                f"(grouped {parts['block_topk_grouped_ms']:.2f} ms)",
            )
            fused = result.get("fused", {})
            if "skipped" in fused:
                row("  fused scan", "-", fused["skipped"])
            for p in fused.get("points", []):
                over = f", {p['fused_over_floor']:.1f}x floor (current {p['current_over_floor']:.1f}x)"
                row(
                    f"  fused scan, batch {p['batch']}",
                    f"{p['fused_ms']:.2f} ms",
                    f"current kernel {p['current_ms']:.2f} ms" + (over if "fused_over_floor" in p else ""),
                )
        elif name == "ivf":
            row(
                f"IVF {result['rows'] // 1000}k ({result['backend']})",
                f"{result['qps_batch256']:,.0f} q/s",
                f"batch 256; batch 1 {result['ms_batch1']:.2f} ms; recall@10 {result['recall_at_10']:.3f}; "
                f"build {result['build_s']:.1f} s, publish {result['publish_s']:.1f} s {result['backend_note']}",
            )
        elif name == "embedding":
            for label in ("short", "long"):
                r = result[label]
                row(
                    f"embedding {label} texts ({result['dtype']})",
                    f"{r['overlapped_per_s']:,.0f} t/s",
                    f"prepare overlapped; inline {r['inline_per_s']:,.0f} t/s; weights {result['weights']}",
                )
        elif name == "gil":
            for mode in ("scripted", "eager"):
                row(
                    f"GIL: {result['rows'] // 1000}k x {result['batch']} queries, {mode}",
                    f"{result[f'{mode}_beside_busy_thread_ms']:.2f} ms",
                    f"beside a thread busy in Python; alone {result[f'{mode}_alone_ms']:.2f} ms",
                )
        elif name == "server_store":
            label = f"server store {result['rows'] // 1000}k x {result['dimension']}"
            row(label, f"{result['build_s']:.0f} s", "built")
        elif name == "server":
            _server_rows(result, row)
    return "\n".join(lines)


def _server_rows(result: dict[str, Any], row: Any) -> None:
    row(
        f"server {result['rows'] // 1000}k x {result['dimension']}",
        "",
        f"in process (batch 256) {result['in_process']['qps']:,.0f} q/s; "
        f"store built in {result['store_build_s']:.0f} s",
    )
    for run in result["runs"]:  # start-up: /ready, then the documents' metadata read behind it
        if "settled_s" in run:
            row(f"  {run['device']} server start", f"{run['settled_s']:.1f} s", f"/ready at {run['start_s']:.1f} s")
    for run in result["runs"]:
        search = run["search"]
        busy = search.get("device_busy")
        row(
            f"  {run['device']}, batching {run['batching']}, {run.get('workers', 0)} HTTP workers, "
            f"{search['clients']} clients",
            f"{search['qps']:,.0f} q/s",
            f"p50 {search['p50_ms']:.1f} ms, p99 {search['p99_ms']:.1f} ms, batch {search['mean_batch_size']:.0f}"
            + (f", device busy {busy:.0%}" if busy is not None else "")
            + f", library on {run['library_device']}",
        )
        for key, form in (("search_batch", "base64"), ("search_batch_json", "JSON floats")):
            if key in run:
                batch = run[key]
                row(
                    f"    /search/batch, 256 a request ({form})",
                    f"{batch['qps']:,.0f} q/s",
                    f"p50 {batch['p50_ms']:.1f} ms, {batch['clients']} clients",
                )
    for skipped in result.get("skipped_runs", []):
        row(f"  {skipped.split(':')[0]}", "-", "skipped: past the time budget")
    for key, value in result.get("ratios", {}).items():
        row(f"  {key}", f"{value:.2f}x")
