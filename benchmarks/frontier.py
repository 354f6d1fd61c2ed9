#!/usr/bin/env python
"""The accuracy-latency frontier: every trained variant's test accuracy against its int8 latency.

    python benchmarks/frontier.py runs/f128 runs/f160 ... [--default] [--threads 1,2] [--rounds 5] [--profile]

Each argument is a conversion folder (`edgeleuk convert ... --out DIR`); --default adds the packaged
model. Accuracy and macro F1 are the int8 TFLite variant's on the test part, as `convert` measured
and recorded them in the manifest; multiply-adds come from the manifest too. Latency is measured
here, all models in one run: batch-1 `invoke()` of the int8 TFLite file through LiteRT, interleaved
round by round so that every model sees the same machine state. The rate (multiply-adds per second)
lets a user estimate another device's time from its own measured rate. --profile adds ONNX
Runtime's per-node profile of each int8 ONNX file: where the time goes.

Writes frontier.json, frontier.md and frontier.png to --out. Device-safe (no TensorFlow).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from edgeleuk.errors import UserError  # noqa: E402
from edgeleuk.files import atomic_path, atomic_write_text  # noqa: E402
from edgeleuk.manifest import read_manifest, verify_variant  # noqa: E402
from edgeleuk.runtime import load  # noqa: E402
from edgeleuk.runtime.classifier import DEFAULT_MODEL_DIR  # noqa: E402


def point(folder: Path) -> dict:
    manifest = read_manifest(folder)
    variant = manifest.variant("tflite-int8")
    metrics = variant.metrics
    if "accuracy" not in metrics:
        raise UserError(f"{folder}: the int8 variant carries no test accuracy (convert it with --data)")
    train = {}
    if (folder / "metrics.json").is_file():
        train = json.loads((folder / "metrics.json").read_text())
    return {
        "name": folder.name if folder != DEFAULT_MODEL_DIR else "default (the study's model, fine-tuned)",
        "folder": str(folder),
        "input_size": manifest.preprocess.size,
        "alpha": manifest.model.get("alpha", 1.0),
        "distilled_from": manifest.model.get("distilled_from"),
        "multiply_adds": manifest.model.get("multiply_adds"),
        "parameters": manifest.model.get("parameters"),
        "size_bytes": variant.size_bytes,
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics.get("macro_f1"),
        "keras_accuracy": next((v.metrics.get("accuracy") for v in manifest.variants if v.name == "keras"), None),
        "train_seconds": train.get("train_seconds"),
    }


def measure(folders: list[Path], threads: list[int], rounds: int, runs: int) -> dict[tuple[int, int], list[float]]:
    """p50 batch-1 invoke() per (model, threads), interleaved: round r times every model once."""
    loaded = {}
    for i, folder in enumerate(folders):
        for t in threads:
            clf = load(folder, variant="tflite-int8", threads=t)
            clf.backend.set_input(clf.prepare(np.zeros((1, clf.spec.size, clf.spec.size, 3), np.uint8)))
            for _ in range(30):
                clf.backend.interpreter.invoke()
            loaded[(i, t)] = clf
    times: dict[tuple[int, int], list[float]] = {k: [] for k in loaded}
    for _ in range(rounds):
        for key, clf in loaded.items():
            it = clf.backend.interpreter
            for _ in range(runs):
                t0 = time.perf_counter()
                it.invoke()
                times[key].append((time.perf_counter() - t0) * 1e3)
    return times


def pareto(points: list[dict], key: str) -> list[int]:
    """Indices of the points no other point beats on both latency (lower) and accuracy (not lower)."""
    front = []
    for i, p in enumerate(points):
        if not any(
            q[key] <= p[key] and q["accuracy"] >= p["accuracy"] and (q[key] < p[key] or q["accuracy"] > p["accuracy"])
            for j, q in enumerate(points)
            if j != i
        ):
            front.append(i)
    return front


def profile(folder: Path, runs: int = 200, threads: int = 2) -> dict:
    """ONNX Runtime's per-node profile of the int8 ONNX file: the ten nodes that take the most time."""
    import onnxruntime as ort

    manifest = read_manifest(folder)
    variant = manifest.variant("onnx-int8")
    path = verify_variant(folder, variant)
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        dtype = np.float32 if session.get_inputs()[0].type == "tensor(float)" else np.uint8
        feed = {
            session.get_inputs()[0].name: np.zeros((1, manifest.preprocess.size, manifest.preprocess.size, 3), dtype)
        }
        for _ in range(20):
            session.run(None, feed)
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    nodes: dict[str, dict] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            name = e["name"][: -len("_kernel_time")]
            row = nodes.setdefault(
                name, {"node": name, "op": e.get("args", {}).get("op_name", "?"), "us": 0.0, "calls": 0}
            )
            row["us"] += e["dur"]
            row["calls"] += 1
    total = sum(r["us"] for r in nodes.values()) or 1.0
    by_op: dict[str, float] = {}
    for r in nodes.values():
        by_op[r["op"]] = by_op.get(r["op"], 0.0) + r["us"]
    top = sorted(nodes.values(), key=lambda r: -r["us"])[:10]
    shapes = _conv_shapes(path)
    return {
        "top_nodes": [
            {
                "node": r["node"],
                "op": r["op"],
                "us_per_image": round(r["us"] / max(r["calls"], 1), 1),
                "share": round(r["us"] / total, 4),
                **shapes.get(r["node"].split("_token_")[0], {}),
            }
            for r in top
        ],
        "by_op": {k: round(v / total, 4) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])},
        "node_ms_per_image": round(total / (runs + 20) / 1e3, 3),
    }


def _conv_shapes(path: Path) -> dict[str, dict]:
    """Kernel (out, in/groups, kh, kw) and output size (C×H×W) of each convolution, when the onnx package is
    there (host): what makes a node expensive. The device has no onnx; the table then names nodes only."""
    try:
        import onnx
        from onnx import numpy_helper, shape_inference
    except ImportError:
        return {}
    model = shape_inference.infer_shapes(onnx.load(str(path)))
    weights = {i.name: numpy_helper.to_array(i).shape for i in model.graph.initializer}
    outputs = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
    dequantized = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    found = {}
    for node in model.graph.node:
        if node.op_type != "Conv":  # the file is QDQ: ORT fuses Dequantize → Conv → Quantize into QLinearConv
            continue
        weight = dequantized.get(node.input[1], node.input[1])
        parts = weight.split("/")
        layer = next((parts[i - 1] for i, p in enumerate(parts) if p in ("convolution", "depthwise") and i), "")
        # folded kernels lose their name: the fused output's layer (…/block_2_depthwise_relu_1/Relu6:0) has it
        if not layer:
            out = node.output[0].split("/")
            layer = out[-2] if len(out) > 1 else ""
            for tail in ("_1", "_relu", "_BN"):
                layer = layer[: -len(tail)] if layer.endswith(tail) else layer
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        found[node.name] = {
            "layer": layer.rsplit("_", 1)[0] if layer[-2:-1] == "_" else layer,
            "kernel": list(weights.get(weight, ())),
            "groups": groups,
            "output": outputs.get(node.output[0]),
        }
    return found


def plot(points: list[dict], front: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [p["p50_ms_2t"] for p in points]
    ys = [p["accuracy"] * 100 for p in points]
    ax.scatter(xs, ys, color="#4c72b0", zorder=3)
    for k, (p, x, y) in enumerate(zip(points, xs, ys)):
        # stack labels of close points
        near = sum(1 for j in range(k) if abs(xs[j] - x) < 0.03 * max(xs) and abs(ys[j] - y) < 0.05)
        ax.annotate(
            f"{p['name']} ({p['multiply_adds'] / 1e6:.0f} M)", (x, y), textcoords="offset points",
            xytext=(5, 4 - 11 * near), fontsize=8
        )
    order = sorted(front, key=lambda i: xs[i])
    ax.plot(
        [xs[i] for i in order], [ys[i] for i in order], color="#c44e52", linestyle="--", label="Pareto front", zorder=2
    )
    ax.set_xlabel("int8 TFLite batch-1 p50, 2 threads (ms, this machine)")
    ax.set_ylabel("test accuracy, int8 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)


def table(points: list[dict], front: list[int], threads: list[int]) -> str:
    head = ("| variant | input | distilled | multiply-adds | test accuracy (int8) | macro F1 | "
            + " | ".join(f"p50 {t} thread{'s' if t > 1 else ''}" for t in threads)
            + " | rate, 2 threads | training | front |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for i, p in enumerate(points):
        rate = p["multiply_adds"] / (p["p50_ms_2t"] / 1e3) / 1e9 if p.get("multiply_adds") else None
        lines.append(
            f"| {p['name']} | {p['input_size']} | {'yes' if p['distilled_from'] else 'no'} | "
            f"{p['multiply_adds'] / 1e6:.0f} M | "
            f"{p['accuracy'] * 100:.2f}% | {p['macro_f1']:.4f} | "
            + " | ".join(f"{p[f'p50_ms_{t}t']:.3f} ms" for t in threads)
            + f" | {rate:.1f} G/s | {p['train_seconds'] or 0:.0f} s | {'●' if i in front else ''} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="*", type=Path, help="conversion folders")
    p.add_argument("--default", action="store_true", help="add the packaged model")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=100, help="invocations per model per round")
    p.add_argument("--profile", action="store_true", help="ONNX Runtime per-node profile of each int8 ONNX file")
    p.add_argument("--out", type=Path, default=Path("runs/frontier"))
    args = p.parse_args()
    folders = ([DEFAULT_MODEL_DIR] if args.default else []) + list(args.folders)
    if not folders:
        p.error("name at least one conversion folder, or --default")
    try:
        threads = [int(t) for t in args.threads.split(",")]
        points = [point(f) for f in folders]
        times = measure(folders, threads, args.rounds, args.runs)
    except UserError as exc:
        print(f"frontier: error: {exc}", file=sys.stderr)
        return 1
    for i, pt in enumerate(points):
        for t in threads:
            pt[f"p50_ms_{t}t"] = float(np.median(times[(i, t)]))
        if pt.get("multiply_adds"):
            pt["multiply_adds_per_second_2t"] = pt["multiply_adds"] / (
                pt.get("p50_ms_2t", pt[f"p50_ms_{threads[-1]}t"]) / 1e3
            )
    key = "p50_ms_2t" if 2 in threads else f"p50_ms_{threads[-1]}t"
    front = pareto(points, key)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"points": points, "pareto_front": [points[i]["name"] for i in front], "threads": threads,
              "rounds": args.rounds, "runs_per_round": args.runs, "backend": "LiteRT, int8 TFLite, batch 1"}
    if args.profile:
        result["profiles"] = {pt["name"]: profile(Path(pt["folder"])) for pt in points}
    atomic_write_text(args.out / "frontier.json", json.dumps(result, indent=2) + "\n")
    text = table(points, front, threads)
    atomic_write_text(args.out / "frontier.md", text + "\n")
    if 2 in threads:
        plot(points, front, args.out / "frontier.png")
    print(text)
    if args.profile:
        for name, prof in result["profiles"].items():
            print(
                f"\n{name}: ONNX Runtime int8, 2 threads, {prof['node_ms_per_image']} ms of node time per image; by "
                "operator: "
                + ", ".join(f"{k} {v * 100:.0f}%" for k, v in list(prof["by_op"].items())[:5])
            )
            for r in prof["top_nodes"]:
                where = (
                    f"{r.get('layer')}: kernel {r.get('kernel')}{' depthwise' if r.get('groups', 1) > 1 else ''} → "
                    f"{r.get('output')}"
                    if r.get("kernel")
                    else ""
                )
                print(f"  {r['share'] * 100:5.1f}%  {r['us_per_image']:7.1f} µs  {r['op']:<12} {r['node']:<22} {where}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
