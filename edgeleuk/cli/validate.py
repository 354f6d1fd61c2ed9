"""edgeleuk validate: site acceptance of a model on this laboratory's own labelled images (method
verification, as ISO 15189 and CLSI EP12 ask), through the run loop's path: quality gate, model file,
out-of-distribution score. Runs on the device (no TensorFlow).

Layout: SITE_DIR/<class>/<sample>/*.jpg (a sample folder gets the verdict `run` would give), or
SITE_DIR/<class>/*.jpg. Exit 0: PASS; 3: FAIL (the reasons are printed and written); 1: an error.
Research use only: a PASS verifies this model on these images, not a diagnosis.
"""

from __future__ import annotations

import argparse

FAIL_EXIT = 3


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgeleuk validate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "model", nargs="?", help=".tflite/.onnx file or conversion folder (default: the packaged int8 model)"
    )
    p.add_argument(
        "--data", required=True, help="the site's labelled images: one folder per class, named as the model's labels"
    )
    p.add_argument("--claim", type=float, default=0.95,
                   help="the accuracy to show: the lower bound of its exact 95%% interval must reach it (default 0.95)")
    p.add_argument("--min-answered", type=float, default=0.9,
                   help="the share of fields the model must answer, not refuse (default 0.9)")
    p.add_argument(
        "--groups",
        default="auto",
        help="samples: folders, blocks (runs of 20 file numbers), files (none), or a CSV "
        "of file,group (default auto: sample folders when every image is in one, else none)",
    )
    p.add_argument(
        "--out", default="validation", help="folder for validation.json, .md and .html (default: ./validation)"
    )
    p.add_argument("--variant", help="variant of the model folder (default: tflite-int8)")
    p.add_argument("--threads", type=int, help="inference threads (default: all cores)")
    p.add_argument(
        "--min-confidence", type=float, default=0.8, help="a sample verdict below this refers (default 0.8, as run)"
    )
    p.add_argument(
        "--scale", type=float,
        help="frame pixels per training-image pixel, as for run (default: the whole centre square)"
    )
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from edgeleuk.errors import UsageError
    from edgeleuk.stats import Claim

    claim = Claim(args.claim, args.min_answered)  # a bad claim is refused before anything loads
    if not 0.0 <= args.min_confidence <= 1.0:
        raise UsageError(f"Received: --min-confidence {args.min_confidence}; expected 0 … 1")
    from pathlib import Path

    from edgeleuk.dataset import scan
    from edgeleuk.files import writable_folder
    from edgeleuk.groups import assign_groups
    from edgeleuk.runtime import load
    from edgeleuk.runtime.classifier import classes_beside
    from edgeleuk.runtime.session import RunOptions
    from edgeleuk.split import unseen_part
    from edgeleuk.validate.acceptance import run_acceptance
    from edgeleuk.validate.judge import judge
    from edgeleuk.validate.report import terminal, write_report

    classifier = load(args.model, variant=args.variant, threads=args.threads)
    found = scan(args.data, check_decode=False, classes=classes_beside(classifier.path, classifier.labels),
                 require_all=False, least=0)
    if not found.samples:
        from edgeleuk.errors import UserError

        raise UserError(f"{args.data} holds no images in its class folders ({', '.join(found.labels)})")
    found, new = unseen_part(found, Path(classifier.path).parent / "split.json")
    which = "all of it (none is in the model's split.json: new to the model)" if new else \
        "the test part of the model's split.json (the rest trained or tuned it)"
    groups = _sample_groups(found, args.groups, assign_groups)
    out = writable_folder(args.out, "--out")  # after every check of the input: a refused run leaves no folder behind
    print(f"model: {classifier.name}; research use only, not a diagnosis")
    print(f"validating on {len(found.samples)} fields of {args.data}, {which} ("
          + ", ".join(f"{k} {v}" for k, v in found.counts().items()) + ")", flush=True)
    options = RunOptions(status="off", min_confidence=args.min_confidence, scale=args.scale)
    result = run_acceptance(classifier, found, groups, options, f"{classifier.name} ({Path(classifier.path).name})")
    result.data = f"{found.root}, {which}"
    doc = judge(result, claim)
    written = write_report(doc, Path(out))
    print(terminal(doc))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0 if doc["result"] == "PASS" else FAIL_EXIT


def _sample_groups(found, source: str, assign_groups):
    """Samples are sub-folders or a CSV's groups; with neither, fields are judged alone (no verdicts)."""
    if source == "auto":
        if not all(s.subfolder is not None for s in found.samples):
            return None
        source = "folders"
    if source == "files":
        return None
    return assign_groups(found, source)
