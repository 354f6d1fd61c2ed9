"""edgeleuk evaluate: accuracy (95% CI), per-class and macro P/R/F1, confusion matrix and calibration error."""

from __future__ import annotations

import argparse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeleuk evaluate", description=__doc__)
    p.add_argument(
        "model", nargs="?", help=".keras, .tflite, .onnx or a conversion folder (default: the packaged model)"
    )
    p.add_argument("--data", required=True, help="image folder (one sub-folder per class)")
    p.add_argument("--split", help="split.json (default: the one beside the model, else a new split)")
    p.add_argument("--part", default="test", choices=("train", "test", "val"), help="which part (default: test)")
    p.add_argument("--variant", help="variant of a conversion folder (default: int8 TFLite)")
    p.add_argument("--threads", type=int, help="inference threads")
    p.add_argument(
        "--robustness", action="store_true",
        help="also run the camera-degradation suite (robustness.json, robustness.png)"
    )
    p.add_argument("--severities", help="comma-separated severities 1-5 for --robustness (default: all)")
    p.add_argument("--conditions", help="comma-separated conditions for --robustness (default: all)")
    p.add_argument(
        "--write-gate",
        action="store_true",
        help="with --robustness on a conversion folder: write the focus and exposure limits the suite found for this "
        "model into its manifest (the quality gate's limits; the leukocyte check stays as convert set it)",
    )
    p.add_argument(
        "--ood", action="store_true",
        help="also check out-of-distribution sets built from the test part, through the device's run loop (ood.json)"
    )
    p.add_argument(
        "--out", default="runs/evaluate", help="folder for metrics.json and confusion.png (default: runs/evaluate)"
    )
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from edgeleuk.errors import UsageError, UserError
    from edgeleuk.evaluate.report import EvalRequest, evaluate

    try:
        severities = tuple(int(v) for v in args.severities.split(",")) if args.severities else None
    except ValueError:
        raise UsageError(f"Received: --severities {args.severities}; expected numbers 1-5 such as 1,3,5") from None
    conditions = args.conditions.split(",") if args.conditions else None
    if conditions or severities:
        from edgeleuk.degrade import CONDITIONS, level_of

        for c in conditions or []:
            if c not in CONDITIONS:
                raise UserError(f"Received: condition {c!r}; expected one of {', '.join(CONDITIONS)}")
        for s in severities or ():
            level_of(s)
    evaluate(EvalRequest(args.model, args.data, split=args.split, part=args.part, out=args.out, variant=args.variant,
                         threads=args.threads, robustness=args.robustness, severities=severities, conditions=conditions,
                         ood=args.ood, write_gate=args.write_gate))
    return 0
