"""`pipeline.py --score-cost`: what the out-of-distribution score adds to the run loop. The model
without its statistics (its files without the score layers), with the features' statistics only,
and as it is, alternated on the same decoded frames; and the score's share of the inference step,
with the file's own layers and with numpy."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeleuk.files import atomic_write_text
from edgeleuk.runtime import load
from pipeline import DecodedClip, run_decoded


@contextlib.contextmanager
def call_timers():
    """Seconds spent in the score's own calls (and the gate's leukocyte mask), timed where the run loop calls them."""
    import edgeleuk.runtime.quality as quality
    from edgeleuk.ood import OODScorer

    spent: dict[str, list[float]] = {"stain_strength": [], "leukocyte_mask": [], "OODScorer.score": []}
    targets = [(quality, "stain_strength"), (quality, "leukocyte_mask"), (OODScorer, "score")]
    originals = [getattr(owner, name) for owner, name in targets]

    def timed(function, key):
        def call(*a, **k):
            start = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                spent[key].append(time.perf_counter() - start)
        return call

    for (owner, name), function in zip(targets, originals):
        setattr(owner, name, timed(function, "OODScorer.score" if name == "score" else name))
    try:
        yield spent
    finally:
        for (owner, name), function in zip(targets, originals):
            setattr(owner, name, function)


def _strip_score_layers(folder: Path) -> None:
    """The file `load(folder)` runs, without its score layers (and the manifest's hash to match): the
    model as it would be without the score."""
    from edgeleuk.export.score_layers import strip_onnx, strip_tflite
    from edgeleuk.manifest import sha256_file

    chosen = load(str(folder)).path
    manifest = json.loads((folder / "manifest.json").read_text())
    for variant in manifest.get("variants", []):
        if variant["file"] == chosen.name:
            if chosen.suffix == ".tflite":
                chosen.write_bytes(strip_tflite(chosen.read_bytes()))
            else:
                strip_onnx(chosen, chosen)
            variant["sha256"], variant["size_bytes"] = sha256_file(chosen), chosen.stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest))


def inference_step_cost_us(
    shipped: str, stripped: str, threads: int, clip: Path, runs: int = 600, pairs: int = 8
) -> dict[str, float] | None:
    """µs the features' score adds to the inference step (`infer_judged`: the interpreter, reading
    its outputs, the score), over reading the probabilities only: with the file's own score layers,
    and with numpy from the features of the file without them. Each alternated call by call with the
    file without them reading the probabilities only, each call after a frame's preprocessing and gate
    as in the run loop (the interpreter's drift between runs is far larger than the difference, so
    the run loop's own timings cannot show it). An interpreter has a speed of its own (pairs of fresh
    ones differed by -22 to +116 µs, 2026-12-01, commit 2e610a9), so each comparison runs on `pairs` fresh pairs
    and gives the median of their differences and the pairs' range."""
    import dataclasses

    from edgeleuk.preprocess import preprocess
    from edgeleuk.runtime.quality import assess
    from edgeleuk.runtime.stain import READ_EVERY

    layers = load(shipped, threads=threads)
    if layers.ood is None or layers.score_index is None:
        return None
    xs = [preprocess(f, layers.spec) for f in DecodedClip(clip, 60).frames]
    xs = [x.reshape(x.shape[-3:]) for x in xs]
    result: dict[str, float] = {}
    for arm in ("layers", "numpy"):
        differences = []
        for _ in range(pairs):
            # interpreters of their own: sharing one made every other call follow a call of its own
            # interpreter, weights still in cache (~100 µs faster)
            bare = load(stripped, threads=threads)
            other = (
                load(shipped, threads=threads)
                if arm == "layers"
                else dataclasses.replace(load(stripped, threads=threads), ood=layers.ood)
            )
            times: list[list[float]] = [[], []]
            for i in range(runs * 2):
                x = xs[(i // 2) % len(xs)]
                assess(x, layers.quality, stain=(i // 2) % READ_EVERY == 0)  # the stain read as the run loop reads it
                t0 = time.perf_counter()
                (other if i % 2 else bare).infer_judged(x)
                times[i % 2].append((time.perf_counter() - t0) * 1e6)
            differences.append(float(np.median(times[1][50:]) - np.median(times[0][50:])))
        result[arm] = float(np.median(differences))
        result[f"{arm} range"] = [min(differences), max(differences)]
    return result


SCORE_STEPS = ("quality", "inference", "invoke", "ood", "total")
ARMS_COMPARED = ("features", "full")


def score_cost(clip: Path, log: Path, args, out: Path) -> int:
    """The model without its `ood` statistics (its files without the score layers), with the features'
    statistics only, and as it is, alternated on the same decoded frames."""
    from edgeleuk.runtime.classifier import packaged_model

    folder = Path(args.model) if args.model else packaged_model("default")
    if folder is None or not (folder / "manifest.json").is_file():
        raise SystemExit("--score-cost needs a conversion folder (--model DIR with a manifest.json)")
    with tempfile.TemporaryDirectory() as tmp:
        arms = _score_arms(folder, Path(tmp))
        rows = _score_rounds(clip, log, args, arms)
        step = inference_step_cost_us(str(folder), str(arms["none"]), args.threads, clip)
    result = _score_result(rows, step, args, folder)
    atomic_write_text(out / "pipeline-score-cost.json", json.dumps(result, indent=2) + "\n")
    _print_score(result, step)
    print(f"wrote {out / 'pipeline-score-cost.json'}")
    return 0


def _score_arms(folder: Path, tmp: Path) -> dict[str, Path]:
    """The compared copies of the model: without the score, with the features' statistics only, as it
    is, and as it is with timers around the score's calls (not compared: the timers cost µs)."""
    arms = {}
    for arm in ("none", "features"):
        arms[arm] = tmp / arm
        shutil.copytree(folder, arms[arm], ignore=shutil.ignore_patterns("*.keras", "*.png"))
        manifest = json.loads((arms[arm] / "manifest.json").read_text())
        if arm == "none":
            manifest.pop("ood", None)
        else:
            manifest.get("ood", {}).pop("stain", None)
        (arms[arm] / "manifest.json").write_text(json.dumps(manifest))
    _strip_score_layers(arms["none"])
    arms["full"] = arms["timed"] = folder
    return arms


def _score_rounds(clip: Path, log: Path, args, arms: dict[str, Path]) -> list[dict]:
    rows = []
    for i in range(args.pairs):
        for arm, model in arms.items():
            log.unlink(missing_ok=True)
            with call_timers() if arm == "timed" else contextlib.nullcontext({}) as spent:
                run_decoded(clip, log, args.frames, str(model), args.threads)
            frames = [r for r in map(json.loads, log.read_text().splitlines()) if "latency_ms" in r]
            row = {"arm": arm, "round": i, **_score_row(frames, spent)}
            rows.append(row)
            shown = ", ".join(
                f"{k} {v:.3f}" for k, v in row.items() if k not in ("arm", "round", "scored", "stain read")
            )
            print(f"round {i + 1}, score {arm}: {shown} ms (p50); stain read on {row['stain read']:.1%} of frames")
    return rows


def _score_row(frames: list[dict], spent: dict) -> dict:
    """One run's p50 per step, and the means the stain needs: it is read on a few frames only
    (runtime/stain.py), which a p50 leaves out."""
    read = [f["quality"].get("stain") is not None or f["quality"].get("red_stain") is not None for f in frames]
    return {
        **{k: float(np.median([f["latency_ms"][k] for f in frames])) for k in SCORE_STEPS},
        "scored": float(np.mean([f.get("ood_score") is not None for f in frames])),
        "gate and score mean": float(np.mean([f["latency_ms"]["quality"] + f["latency_ms"]["ood"] for f in frames])),
        "stain read": float(np.mean(read)),
        **{f"{k} p50": float(np.median(v)) * 1e3 for k, v in spent.items() if v},
    }


def _added(rows: list[dict], arm: str, steps: tuple[str, ...], extra_ms: float = 0.0) -> list[float]:
    """What `arm` adds over the same round's run without the score, in the `steps`, plus `extra_ms`."""
    base = {r["round"]: sum(r[k] for k in steps) for r in rows if r["arm"] == "none"}
    return [sum(r[k] for k in steps) - base[r["round"]] + extra_ms for r in rows if r["arm"] == arm]


def _score_result(rows: list[dict], step: dict | None, args, folder: Path) -> dict:
    # the file as shipped scores in its layers, else numpy inside the inference step (timed apart)
    extra = (step["layers"] if step else 0.0) / 1e3
    added = {arm: _added(rows, arm, ("quality", "ood"), extra) for arm in ARMS_COMPARED}
    means = {arm: _added(rows, arm, ("gate and score mean",), extra) for arm in ARMS_COMPARED}
    # the run loop's own inference timings instead (noisier by far)
    looped = {arm: _added(rows, arm, ("quality", "inference", "ood")) for arm in ARMS_COMPARED}
    result = {
        "threads": args.threads,
        "frames": args.frames,
        "model": str(folder),
        "runs": rows,
        "inference_step_us": step,
        "added_ms": added,
        "added_ms_median": {a: float(np.median(v)) for a, v in added.items()},
        "added_ms_mean": means,
        "added_ms_mean_median": {a: float(np.median(v)) for a, v in means.items()},
        "added_ms_median_with_loop_invoke": {a: float(np.median(v)) for a, v in looped.items()},
    }
    timed = [r for r in rows if r["arm"] == "timed" and "stain_strength p50" in r]
    if timed:  # the steadiest estimate of the mean: the p50s (no reading on the median frame) plus the readings' share
        reading_ms = float(np.median([r["stain_strength p50"] for r in timed]))
        share = float(np.median([r["stain read"] for r in timed]))
        result["stain_reading_ms"], result["stain_read_share"] = reading_ms, share
        result["added_ms_full_p50_plus_readings"] = result["added_ms_median"]["full"] + share * reading_ms
    return result


def _print_score(result: dict, step: dict | None) -> None:
    if step is not None:
        print(f"the features' score in the inference step, over reading the probabilities only (alternated call by "
              f"call, median of fresh interpreter pairs): {step['layers']:.1f} µs with the file's own layers (pairs "
              f"{step['layers range'][0]:.1f} to {step['layers range'][1]:.1f}), {step['numpy']:.1f} µs with numpy "
              f"from its features ({step['numpy range'][0]:.1f} to {step['numpy range'][1]:.1f})")
    for arm, what in (("features", "the features' distances"), ("full", "the whole score (distances and stain check)")):
        rounds = ", ".join(f"{a:.3f}" for a in result["added_ms"][arm])
        print(f"{what} add per round: {rounds} ms; median {result['added_ms_median'][arm]:.3f} ms (with the loop's "
              f"own inference timings instead: {result['added_ms_median_with_loop_invoke'][arm]:.3f} ms)")
        means = ", ".join(f"{a:.3f}" for a in result["added_ms_mean"][arm])
        print(f"  from each run's mean over its frames instead: {means} ms; "
              f"median {result['added_ms_mean_median'][arm]:.3f} ms")
    if "stain_reading_ms" in result:
        print(f"the stain reading, timed in the loop: {result['stain_reading_ms']:.3f} ms, on "
              f"{result['stain_read_share']:.1%} of frames; the whole score's p50s plus that share: "
              f"{result['added_ms_full_p50_plus_readings']:.3f} ms")
