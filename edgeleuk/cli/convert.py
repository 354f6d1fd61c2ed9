"""edgeleuk convert: quantized TFLite and ONNX variants of a Keras model, each loaded back and checked."""

from __future__ import annotations

import argparse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeleuk convert", description=__doc__)
    p.add_argument("model", nargs="?", help="a .keras model (default: the packaged default model's source)")
    p.add_argument("--out", default="runs/convert", help="output folder (default: runs/convert)")
    p.add_argument("--int8", action="store_true", help="int8 TFLite and ONNX plus the float32 references (the default)")
    p.add_argument("--all", action="store_true", help="every variant: tflite fp32/fp16/int8/dynamic, onnx fp32/int8")
    p.add_argument("--variants", help="comma-separated variant names (e.g. tflite-int8,onnx-fp32)")
    p.add_argument("--formats", help="comma-separated formats to keep: tflite,onnx")
    p.add_argument("--data", help="image folder: calibration from the split's training part, checks on its test part")
    p.add_argument("--split", help="split.json (default: the one beside the model)")
    p.add_argument("--calibration-size", type=int, help="calibration images (default 300, stratified)")
    p.add_argument("--float-output", action="store_true", help="int8 TFLite with a float32 output instead of uint8")
    p.add_argument(
        "--rehearse",
        metavar="DIR",
        help="a model adapted with train --init-from: the first site's data, fitted together with --data so both "
        "sites are in distribution (default: the folder its run rehearsed, when it is here)",
    )
    p.add_argument(
        "--claim",
        type=float,
        default=0.95,
        help="a model adapted with train --init-from is published only when the exact lower bound of its accuracy "
        "on --data's test part reaches this (default 0.95)",
    )
    p.add_argument("--min-answered", type=float, default=0.9,
                   help="… and it answers at least this share of those fields (default 0.9)")
    p.add_argument(
        "--max-drop", type=float, default=1.0,
        help="fail when a variant loses more accuracy points than this (default 1.0)"
    )
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from edgeleuk.cli import sigterm_as_interrupt
    from edgeleuk.errors import UsageError
    from edgeleuk.export.pipeline import ConvertConfig, convert
    from edgeleuk.stats import Claim

    claim = Claim(args.claim, args.min_answered)  # a bad claim is refused before anything loads

    sigterm_as_interrupt()  # a stopped conversion removes its staging folder, like Ctrl-C

    names = ["all"] if args.all else (args.variants.split(",") if args.variants else ["int8"])
    formats = [f.strip() for f in args.formats.split(",")] if args.formats else None
    for f in formats or []:
        if f not in ("tflite", "onnx"):
            raise UsageError(f"Received: --formats {f}; expected tflite and/or onnx")
    if args.calibration_size is not None and args.calibration_size < 1:
        raise UsageError(f"Received: --calibration-size {args.calibration_size}; expected at least 1")
    _, failed = convert(
        ConvertConfig(
            model=args.model, out=args.out, variants=[n.strip() for n in names], formats=formats, data=args.data,
            split=args.split, calibration_size=args.calibration_size, max_drop=args.max_drop,
            float_output=args.float_output, rehearse=args.rehearse, claim=claim
        )
    )
    if failed:
        import sys

        for name, why in failed.items():
            print(f"edgeleuk convert: {name} {why}: not published", file=sys.stderr)
        print(
            "edgeleuk convert: the other variants were written. A model that loses accuracy in int8 often needs more "
            "calibration images (--calibration-size) or training; --max-drop sets how many points a variant may lose.",
            file=sys.stderr,
        )
        return 1
    return 0
