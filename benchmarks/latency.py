#!/usr/bin/env python
"""Latency of every variant on every backend present, against the float model on a GPU.

    python benchmarks/latency.py                     # the packaged model set, this machine
    python benchmarks/latency.py --quick             # CI: few runs, one thread setting
    python benchmarks/latency.py --model runs/convert --data DATA --reference gpu/results.json

Each (variant, backend, threads, batch) runs in its own subprocess, pinned to its cores, after a
warm-up and for at least --min-runs runs and --min-seconds, so peak RSS is its own; all of them run
--rounds times round-robin. Each figure is the median over the undisturbed rounds (the fastest and
those within 10% of it: other load on a shared machine only slows rounds down); a configuration with
fewer than two such rounds gets more (up to --max-rounds), so p50 repeats on a shared machine.
Writes results.json, results.csv, results.md and latency.png to --out. It reads artifacts, never converts.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # edgeleuk, and the sibling modules when loaded by path

from edgeleuk.errors import UserError, missing_package  # noqa: E402
from edgeleuk.files import atomic_write_text  # noqa: E402
from edgeleuk.manifest import read_manifest, sha256_file  # noqa: E402
from edgeleuk.runtime.classifier import DEFAULT_MODEL_DIR  # noqa: E402
from latency_plan import machine_facts, plan  # noqa: E402
from latency_report import FIELDS, chart, gpu_line, table  # noqa: E402

REFERENCE_DIR = HERE / "reference"  # GPU results recorded with --gpu-only for the packaged model


TOLERANCE = 0.10  # rounds within this of the fastest count as undisturbed


class Progress:
    """A line at most every 10 s: how far, and about how long is left."""

    def __init__(self, total: int, every: float = 10.0):
        self.total, self.done, self.every = total, 0, every
        self.start = self.last = time.perf_counter()

    def step(self, where: str) -> None:
        self.done += 1
        now = time.perf_counter()
        if now - self.last >= self.every or self.done == self.total:
            self.last = now
            left = (now - self.start) / self.done * (self.total - self.done)
            print(f"  {where}: {self.done}/{self.total} measurements, about {left / 60:.1f} min left", flush=True)


def run_rounds(jobs: list[dict], rounds: int, report, max_rounds: int | None = None) -> list[dict]:
    """Run every job `rounds` times, round-robin, so a burst of load on this (shared) machine spreads
    over many rows instead of skewing one. A row whose rounds do not include two undisturbed ones
    (within 10% of each other at the fast end) gets more rounds, up to `max_rounds`."""

    results: list[list[dict]] = [[] for _ in jobs]
    progress = Progress(rounds * len(jobs))
    for r in range(rounds):
        for i, job in enumerate(jobs):
            results[i].append(run_job(job))
            progress.step(f"round {r + 1}/{rounds}")
    for _ in range(rounds, max_rounds or rounds):
        unsettled = [i for i, rs in enumerate(results) if 0 < len(undisturbed(rs)) < min(2, len(rs))]
        if not unsettled:
            break
        for i in unsettled:
            results[i].append(run_job(jobs[i]))
    rows = [combine(rs) for rs in results]
    for row in rows:
        report(row)
    return rows


def undisturbed(rounds: list[dict]) -> list[dict]:
    """The rounds that ran at the machine's own speed: the fastest and those within 10% of it. On a
    shared machine other load only ever slows a round down (seen here: whole rounds 25-35% slower)."""
    done = [r for r in rounds if "p50_ms" in r]
    if not done:
        return []
    fastest = min(r["p50_ms"] for r in done)
    return [r for r in done if r["p50_ms"] <= fastest * (1 + TOLERANCE)]


def combine(rounds: list[dict]) -> dict:
    """A row's figures: medians over its undisturbed rounds; all rounds' p50s are kept beside them."""
    import statistics

    done = [r for r in rounds if "skipped" not in r]
    if not done:
        return rounds[0]
    used = undisturbed(done)
    row = dict(used[0])
    for key in (
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "mean_ms",
        "throughput_ips",
        "bare_p50_ms",
        "e2e_p50_ms",
        "load_ms",
        "first_ms",
    ):
        values = [r[key] for r in used if r.get(key) is not None]
        if values:
            row[key] = statistics.median(values)
    row["runs"] = sum(r.get("runs", 0) for r in used)
    row["peak_rss_mb"] = max(r.get("peak_rss_mb", 0) for r in done)
    row["p50_rounds_ms"] = [round(r["p50_ms"], 4) for r in done]
    row["rounds_used"] = len(used)
    return row


def run_job(job: dict) -> dict:
    if "skipped" in job:
        return {**job}
    payload = dict(job)
    payload["backend"] = job.get("backend_arg")
    try:
        path = os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))
        proc = subprocess.run(
            [sys.executable, str(HERE / "_worker.py"), json.dumps(payload)], capture_output=True, text=True,
            timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": path}
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        result = (
            json.loads(lines[-1])
            if lines
            else {"skipped": f"worker failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}"}
        )
    except subprocess.TimeoutExpired:
        result = {"skipped": "timed out after 600 s"}
    return {**job, **result}


def gpu_reference(args, folder: Path) -> dict:
    """The fp32 model on a GPU: measured here when one is present, else a result recorded earlier
    (--reference, or the one shipped in benchmarks/reference/ when it was recorded for this very file)."""
    onnx = folder / "model_fp32.onnx"
    if args.reference:
        return recorded_reference(Path(args.reference), onnx)
    if not onnx.is_file():
        return {"skipped": f"no {onnx.name} in {folder} to run on a GPU (convert with --int8 or --all)"}
    # one pinned core: the Python thread that launches the kernels stays put, so rounds agree
    job = {"kind": "gpu", "file": str(onnx), "threads": 1, "throughput_batch": 32}
    rounds = [run_job(job)]
    if "skipped" not in rounds[0]:  # no GPU now means none in the next round either
        # eager time varies by process
        rounds += [run_job(job) for _ in range(0 if args.quick else max(5, args.rounds) - 1)]
    result = {k: v for k, v in combine_gpu(rounds).items() if k not in ("kind", "file", "threads")}
    result["model_sha256"] = _model_sha(onnx)
    if "skipped" not in result:
        return {**result, "source": "measured here"}
    for shipped in sorted(REFERENCE_DIR.glob("*.json")):
        ref = recorded_reference(shipped, onnx)
        if ref.get("model_sha256") == result["model_sha256"] and "skipped" not in ref:
            return {**ref, "source": f"{ref['source']}; none measured here: {result['skipped']}"}
    return result


def combine_gpu(rounds: list[dict]) -> dict:
    """GPU rounds (each a fresh process) → per configuration, the median of each figure over rounds."""
    import statistics

    done = [r for r in rounds if "skipped" not in r]
    if not done:
        return rounds[0]
    out = dict(done[0])
    for key, first in done[0].items():
        if isinstance(first, dict) and "p50_ms" in first:
            runs = [r[key] for r in done if "p50_ms" in r.get(key, {})]
            out[key] = {
                **first,
                **{
                    f: statistics.median(r[f] for r in runs)
                    for f in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_ips")
                },
                "runs": sum(r["runs"] for r in runs),
                "p50_rounds_ms": [round(r["p50_ms"], 4) for r in runs],
            }
    return out


@functools.lru_cache(maxsize=8)
def _model_sha(onnx: Path) -> str:
    """Hashed once per run: each shipped reference is checked against the same 10 MB file."""
    return sha256_file(onnx)


def recorded_reference(path: Path, onnx: Path) -> dict:
    """A GPU result recorded by this script elsewhere (its results.json), labelled with where it came from."""
    try:
        recorded = json.loads(path.read_text())
        ref, machine = recorded["gpu_reference"], recorded["machine"]
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise UserError(f"--reference {path}: not a results.json of this script ({exc})") from None
    shown = path.resolve().relative_to(HERE.parent) if path.resolve().is_relative_to(HERE.parent) else path
    source = f"recorded on {machine.get('gpu')} ({recorded.get('date', 'date not recorded')}): {shown}"
    if onnx.is_file() and ref.get("model_sha256") not in (None, _model_sha(onnx)):
        source += f"; WARNING: recorded for another model file than {onnx}"
    return {**ref, "source": source}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="conversion folder with manifest.json (default: the packaged model set)")
    p.add_argument("--variants", help="comma-separated variant names (default: all in the manifest)")
    p.add_argument("--threads", help="comma-separated thread counts (default: 1 … cores)")
    p.add_argument("--batch", type=int, default=8, help="throughput batch size (default 8)")
    p.add_argument("--min-runs", type=int, default=300, help="timed runs per configuration, over all rounds")
    p.add_argument("--min-seconds", type=float, default=3.0, help="timed seconds per configuration, over all rounds")
    p.add_argument(
        "--rounds", type=int, default=3,
        help="round-robin rounds; figures are medians over rounds (default 3; the GPU reference takes at least 5)"
    )
    p.add_argument(
        "--max-rounds", type=int, default=6,
        help="rounds for a configuration with fewer than two undisturbed rounds (default 6)"
    )
    p.add_argument("--data", help="image folder: adds accuracy on the test part of the model's split")
    p.add_argument("--split", help="split.json for --data (default: the one beside the model)")
    p.add_argument(
        "--reference",
        help="results.json recorded on a GPU machine (default: measure here, else the recorded one "
        "in benchmarks/reference/ made for this model file)",
    )
    p.add_argument(
        "--gpu-only", action="store_true",
        help="measure only the GPU reference: record it on a GPU machine for --reference"
    )
    p.add_argument("--quick", action="store_true", help="few runs, one thread setting, batch 1 (for CI)")
    p.add_argument("--out", default="runs/bench", help="output folder (default runs/bench)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        folder = Path(args.model) if args.model else DEFAULT_MODEL_DIR
        if not (folder / "manifest.json").is_file():
            raise UserError(f"{folder} has no manifest.json; pass a conversion output folder")
        facts = machine_facts()
        print(f"machine: {facts['cpu_summary']}, {facts['cores']} cores, {facts['os']}, Python {facts['python']}")
        gpu = gpu_reference(args, folder)
        jobs = [] if args.gpu_only else plan(args, folder)
        rows = _measure(jobs, args)
        if args.gpu_only and gpu.get("source") != "measured here":
            raise UserError(f"--gpu-only: no GPU reference measured here ({gpu.get('skipped', gpu.get('source'))})")
    except UserError as exc:
        print(f"latency.py: error: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out)
    _write(out, folder, facts, gpu, rows)
    print()
    print(gpu_line(gpu))
    print(table(rows, gpu))
    print(f"\nwrote {out}/results.json, results.csv, results.md, latency.png")
    if jobs and all(r.get("skipped") for r in rows):
        print(f"latency.py: error: every configuration failed or was skipped ({rows[0]['skipped']})", file=sys.stderr)
        return 1
    return 0


def _report(row: dict) -> None:
    """One configuration's line as soon as it is measured."""
    state = (
        row.get("skipped")
        or f"p50 {row['p50_ms']:.3f} ms (rounds: {', '.join(f'{v:.3f}' for v in row['p50_rounds_ms'])})"
    )
    print(
        f"  {row['variant']:<15}{row['backend']:<26}threads {row['threads']} batch {row['batch']}: {state}", flush=True
    )


def _measure(jobs: list, args) -> list[dict]:
    if jobs:
        quick = " (--quick: one round, one thread setting, batch 1: under a minute)"
        print(
            f"measuring {len(jobs)} configurations, {1 if args.quick else args.rounds} round(s) each, each in its own "
            "process" + ("" if args.quick else quick),
            flush=True,
        )
    return run_rounds(jobs, 1 if args.quick else args.rounds, _report, None if args.quick else args.max_rounds)


def _write(out: Path, folder: Path, facts: dict, gpu: dict, rows: list[dict]) -> None:
    """results.json, results.csv, results.md and the chart."""
    out.mkdir(parents=True, exist_ok=True)
    labels = list(read_manifest(folder).labels)
    md = (f"# Latency\n\nmachine: {facts['cpu_summary']}, {facts['cores']} cores, {facts['os']}\n\n"
          f"model: {folder} ({len(labels)} classes: {', '.join(labels)})\n\n{gpu_line(gpu)}\n\n{table(rows, gpu)}\n")
    clean = [{k: v for k, v in r.items() if k not in ("model", "backend_arg", "kind")} for r in rows]
    doc = {"date": time.strftime("%Y-%m-%d"), "machine": facts, "labels": labels, "gpu_reference": gpu, "rows": clean}
    atomic_write_text(out / "results.json", json.dumps(doc, indent=2) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(clean)
    atomic_write_text(out / "results.csv", buffer.getvalue())
    atomic_write_text(out / "results.md", md)
    try:
        chart(rows, gpu, out / "latency.png")
    except ImportError:
        print(f"matplotlib not installed: no latency.png ({missing_package('matplotlib', 'bench')})")

if __name__ == "__main__":
    sys.exit(main())
