#!/usr/bin/env python
"""Could the stain reading run inside the model file, as the features' score does? Times a stand-in.

    python benchmarks/stain_layers.py [--model DIR] [--data ../shared/data/all4] [--threads 2] [--runs 2000]
    [--gather] [--out DIR]

The shipped reading (`runtime.quality.stain_strength`) takes a quantile and two masked medians, which
a TFLite graph can only get by sorting. The stand-in is cheaper than that: on the 56×56 copy of the
input, the optical density (log, or with --gather a 256-entry table), the leukocyte colour margin,
a background (the mean density of the pixels below the field's mean), and the sums and counts for
the two masked means: 29 builtin operations (28 with --gather). It is appended to the model's TFLite file and timed
against the file as it is and against the file with the stand-in's first operation only, the
56×56 copy (invoke only, the three alternated call by call, each on its own interpreter); in the same run,
`stain_strength` is timed right after an invoke of the same file,
as the run loop calls it, on real fields with --data (else synthetic ones: red cells and a
leukocyte on blurred noise). Its four outputs are checked against numpy, so the timed graph computes
what it says. Needs ai-edge-litert only (device-safe).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from edgeleuk.export import score_layers  # noqa: E402
from edgeleuk.files import atomic_write_text  # noqa: E402
from edgeleuk.preprocess import OD_LUT, preprocess  # noqa: E402
from edgeleuk.runtime.quality import STAIN_MARGIN, STAIN_SIDE, leukocyte_mask, stain_strength  # noqa: E402


class _Graph:
    """Tensors and operators appended to a TFLite file's graph, on the 56×56 copy's shapes."""

    def __init__(self, data: bytes):
        _, self.s = score_layers.tflite_schema()
        self.model = score_layers.read_tflite(data)
        self.g = score_layers.GraphEditor(self.model, self.s)
        self.B, self.Opts, self.T = self.s.BuiltinOperator, self.s.BuiltinOptions, self.s.TensorType
        side = STAIN_SIDE
        self.image, self.plane, self.one = [1, side, side, 3], [1, side, side, 1], [1, 1, 1, 1]
        self.keep = self.s.ReducerOptionsT()
        self.keep.keepDims = True

    def t(self, name, shape, constant=None, dtype=None):
        index = self.g.tensor("stand_in/" + name, shape, constant, batch=False)
        if dtype is not None:
            self.g.graph.tensors[index].type = dtype
        return index

    def op(self, code, inputs, shape, options_type=0, options=None, dtype=None):
        out = self.t(f"op{len(self.g.graph.operators)}", shape, dtype=dtype)
        self.g.op(code, inputs, [out], options_type, options)
        return out

    def binary(self, code, a, b, shape, name: str):
        """An elementwise operator with its options (Mul, Sub, Add, Div)."""
        return self.op(code, [a, b], shape, getattr(self.Opts, f"{name}Options"), getattr(self.s, f"{name}OptionsT")())

    def reduce(self, code, x, axes, shape):
        return self.op(code, [x, axes], shape, self.Opts.ReducerOptions, self.keep)

    def finish(self, out) -> bytes:
        self.g.graph.outputs = np.append(self.g.graph.outputs, np.int32(out))
        self.model.signatureDefs = []  # the stand-in is read by index
        return score_layers.write_tflite(self.model)


def _i32(*v):
    return np.array(v, np.int32)


def _f32(*v):
    return np.array(v, np.float32)


def stand_in(data: bytes, gather: bool = False, slice_only: bool = False) -> bytes:
    """`data` (a TFLite file with a uint8 224×224 input) with the stand-in as one more output:
    [leukocytes' density sum, their count, red cells' density sum, their count]; with `slice_only`,
    its first operation alone (the 56×56 copy)."""
    x = _Graph(data)
    B, step = x.B, 224 // STAIN_SIDE
    begin, end = x.t("begin", [4], _i32(0, 0, 0, 0)), x.t("end", [4], _i32(1, 224, 224, 3))
    small = x.op(B.STRIDED_SLICE, [int(x.g.graph.inputs[0]), begin, end, x.t("strides", [4], _i32(1, step, step, 1))],
                 x.image, x.Opts.StridedSliceOptions, x.s.StridedSliceOptionsT(), x.T.UINT8)
    if slice_only:
        return x.finish(small)
    axes, channels = x.t("axes", [3], _i32(1, 2, 3)), x.t("channels", [1], _i32(3))
    values = x.op(B.CAST, [small], x.image)
    od = _density(x, small, values, channels, gather)
    purple = x.reduce(B.SUM, x.binary(B.MUL, values, x.t("margin_weights", [3], _f32(0.5, -1, 0.5)), x.image, "Mul"),
                      channels, x.plane)
    leukocytes = x.op(B.CAST, [x.op(B.GREATER, [purple, x.t("margin", [1], _f32(STAIN_MARGIN))], x.plane,
                                    dtype=x.T.BOOL)], x.plane)
    below = x.op(B.CAST, [x.op(B.LESS, [od, x.reduce(B.MEAN, od, axes, x.one)], x.plane, dtype=x.T.BOOL)], x.plane)
    background = x.binary(B.DIV, x.reduce(B.SUM, x.binary(B.MUL, od, below, x.plane, "Mul"), axes, x.one),
                          x.reduce(B.SUM, below, axes, x.one), x.one, "Div")
    relative = x.binary(B.SUB, od, background, x.plane, "Sub")
    dense = x.op(B.CAST, [x.op(B.GREATER, [relative, x.t("red_od", [1], _f32(0.3))], x.plane, dtype=x.T.BOOL)], x.plane)
    red = x.binary(B.MUL, dense, x.binary(B.SUB, x.t("ones", [1], _f32(1)), leukocytes, x.plane, "Sub"), x.plane, "Mul")
    sums = [x.reduce(B.SUM, x.binary(B.MUL, relative, m, x.plane, "Mul"), axes, x.one) for m in (leukocytes, red)]
    counts = [x.reduce(B.SUM, m, axes, x.one) for m in (leukocytes, red)]
    joined = x.s.ConcatenationOptionsT()
    joined.axis = 3
    out = x.op(B.CONCATENATION, [sums[0], counts[0], sums[1], counts[1]], [1, 1, 1, 4], x.Opts.ConcatenationOptions,
               joined)
    return x.finish(out)


def _density(x: _Graph, small, values, channels, gather: bool = False):
    """Each pixel's optical density summed over its channels: a table lookup (`gather`) or log."""
    B = x.B
    if gather:
        index = x.op(B.CAST, [small], x.image, dtype=x.T.INT32)
        per_channel = x.op(B.GATHER, [x.t("table", [256], OD_LUT), index], x.image, x.Opts.GatherOptions,
                           x.s.GatherOptionsT())
        return x.reduce(B.SUM, per_channel, channels, x.plane)
    logs = x.op(B.LOG, [x.binary(B.ADD, values, x.t("one", [1], _f32(1)), x.image, "Add")], x.image)
    return x.binary(B.SUB, x.t("log256", [1], _f32(3 * np.log(256.0))), x.reduce(B.SUM, logs, channels, x.plane),
                    x.plane, "Sub")


def stand_in_numpy(image: np.ndarray) -> np.ndarray:
    """What `stand_in` computes, in float64."""
    small = image[::224 // STAIN_SIDE, ::224 // STAIN_SIDE].astype(np.float64)
    od = (-np.log((small + 1.0) / 256.0)).sum(-1)
    leukocytes = (small @ [0.5, -1.0, 0.5]) > STAIN_MARGIN
    background = od[od < od.mean()].mean()
    relative = od - background
    red = (relative > 0.3) & ~leukocytes
    return np.array([relative[leukocytes].sum(), leukocytes.sum(), relative[red].sum(), red.sum()])


def fields(data: str | None, count: int = 16) -> list[np.ndarray]:
    """Fields as decoded (BGR): every seventh image of `data`, else synthetic ones (red cells and a leukocyte on
    blurred noise)."""
    if data:
        paths = sorted(Path(data).glob("*/*.jpg"))[::7][:count]
        if not paths:
            raise SystemExit(f"{data}: no CLASS/*.jpg images")
        return [cv2.imread(str(path)) for path in paths]
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        field = cv2.GaussianBlur(rng.integers(150, 255, (224, 224, 3), dtype=np.uint8), (0, 0), 2)
        for _ in range(6):  # red cells, pink (BGR): under the leukocyte colour margin
            cv2.circle(field, (int(rng.integers(20, 204)), int(rng.integers(20, 204))), 16, (165, 160, 200), -1)
        # a leukocyte, purple
        cv2.circle(field, (int(rng.integers(60, 164)), int(rng.integers(60, 164))), 40, (120, 60, 150), -1)
        out.append(field)
    return out


def _check(interpreter, frames: list[np.ndarray]) -> None:
    """The stand-in's outputs against numpy's on every frame."""
    for x in frames:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[-1]["index"]).reshape(-1)
        want = stand_in_numpy(x[0])
        if not np.allclose(got, want, rtol=1e-3, atol=1e-2):
            raise SystemExit(f"the stand-in's outputs {got} differ from numpy's {want}")


def _alternate(interpreters: dict, frames: list[np.ndarray], runs: int) -> dict[str, float]:
    """Each file invoked in turn, call by call; after the file as is, stain_strength on the same frame.
    p50 in µs, the first 5% of calls left out (warm-up)."""
    times: dict[str, list[float]] = {name: [] for name in (*interpreters, "stain_strength after invoke")}
    names = list(interpreters)
    for i in range(runs * len(names)):
        name, x = names[i % len(names)], frames[(i // len(names)) % len(frames)]
        it = interpreters[name]
        it.set_tensor(it.get_input_details()[0]["index"], x)
        t0 = time.perf_counter()
        it.invoke()
        times[name].append(time.perf_counter() - t0)
        if name == "as is":
            image = x[0]
            mask = leukocyte_mask(image)
            t0 = time.perf_counter()
            stain_strength(image, mask)
            times["stain_strength after invoke"].append(time.perf_counter() - t0)
    return {name: float(np.median(v[len(v) // 20:])) * 1e6 for name, v in times.items()}


def main() -> int:
    from ai_edge_litert.interpreter import Interpreter

    from edgeleuk.runtime import load

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="conversion folder (default: the packaged model)")
    p.add_argument("--data", help="an image folder (CLASS/*.jpg): real fields instead of synthetic ones")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--gather", action="store_true", help="optical density from a 256-entry table instead of LOG")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    classifier = load(args.model, threads=args.threads)
    if classifier.path.suffix != ".tflite":
        raise SystemExit(f"{classifier.path.name}: the stand-in is appended to TFLite files only")
    if classifier.spec.size != 224 or classifier.spec.dtype != "uint8":
        raise SystemExit(
            f"{classifier.path.name}: the stand-in needs a uint8 224×224 input (this one: {classifier.spec.dtype} "
            f"{classifier.spec.size})"
        )
    data = classifier.path.read_bytes()
    files = {
        "as is": data,
        "with the stand-in": stand_in(data, args.gather),
        "with its 56×56 copy only": stand_in(data, slice_only=True),
    }
    interpreters = {}
    for name, content in files.items():
        interpreters[name] = Interpreter(model_content=content, num_threads=args.threads)
        interpreters[name].allocate_tensors()
    frames = [preprocess(image, classifier.spec).reshape(1, 224, 224, 3) for image in fields(args.data)]
    _check(interpreters["with the stand-in"], frames)
    p50 = _alternate(interpreters, frames, args.runs)
    result = {
        "model": str(classifier.path),
        "threads": args.threads,
        "runs": args.runs,
        "density": "table" if args.gather else "log",
        "invoke_us": {name: p50[name] for name in files},
        "stand_in_adds_us": p50["with the stand-in"] - p50["as is"],
        "copy_alone_adds_us": p50["with its 56×56 copy only"] - p50["as is"],
        "stain_strength_after_invoke_us": p50["stain_strength after invoke"],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "stain-layers.json", json.dumps(result, indent=2) + "\n")
    print(f"the stand-in adds {result['stand_in_adds_us']:.1f} µs to invoke ({p50['as is']:.0f} µs as is, p50), "
          f"its first operation alone (the 56×56 copy) {result['copy_alone_adds_us']:.1f} µs; "
          f"stain_strength right after an invoke: {result['stain_strength_after_invoke_us']:.1f} µs")
    print(f"wrote {out / 'stain-layers.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
