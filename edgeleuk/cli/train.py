"""edgeleuk train: the study's recipe (frozen base), optionally fine-tuned, into a run folder."""

from __future__ import annotations

import argparse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeleuk train", description=__doc__)
    p.add_argument(
        "--data", required=True,
        help="folder with one sub-folder per class (any names, at least two), or the Kaggle layout"
    )
    p.add_argument(
        "--classes",
        help="the labels' order, a,b,c; or folders merged into one label: healthy=Benign,blast=Early+Pre+Pro "
        "(default: every class folder, sorted; the ALL dataset's in its own order)",
    )
    p.add_argument(
        "--groups",
        default="auto",
        help="what must never cross the split (a patient, a slide): folders (class/patient/*.jpg), blocks "
        "(runs of 20 file numbers), files, or a CSV of file,group (default auto: folders, else blocks, else files)",
    )
    p.add_argument(
        "--init-from",
        metavar="MODEL",
        help="start from a trained model's weights (a run folder or .keras, e.g. edgeleuk/models/default) to adapt "
        "it to your images; its width and input size are kept; classes it does not know need --classes and get new "
        "head rows",
    )
    p.add_argument(
        "--rehearse",
        metavar="DIR",
        help="with --init-from: the source model's own data, mixed into every fine-tuning batch so its site is not "
        "forgotten (its split.json's train part; its test part is scored at the end beside the new one)",
    )
    p.add_argument("--rehearse-share", type=float, default=0.5,
                   help="--rehearse: first-site images per batch, as a share of the new site's (default 0.5)")
    p.add_argument(
        "--cv",
        type=int,
        default=0,
        metavar="K",
        help="grouped K-fold cross-validation (K ≥ 3) on the training and validation parts before the final model: "
        "figures per fold and mean ± sd in cv.json and cv.md (default: none)",
    )
    _run_args(p)
    _stage2_args(p)
    _schedule_args(p)
    return p


def _run_args(p: argparse.ArgumentParser) -> None:
    """The run folder, the backbone's weights and the split."""
    p.add_argument("--out", default="runs/train", help="run folder to write (default: runs/train)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the trained model already in --out (all its files go)"
    )
    p.add_argument("--weights", default="imagenet", help="imagenet (default), none, or a backbone .weights.h5 path")
    p.add_argument("--split", help="reuse a split.json instead of making one")
    p.add_argument(
        "--fine-tune", action="store_true", help="stage 2: unfreeze the top of the base (batch norm stays frozen)"
    )
    p.add_argument(
        "--fine-tune-from", default="block_9",
        help="first base block to unfreeze (default: block_9, as the shipped model)"
    )


def _stage2_args(p: argparse.ArgumentParser) -> None:
    """Stage 2: fine-tuning, its augmentation and distillation."""
    p.add_argument(
        "--augment",
        default="robust",
        choices=("basic", "robust"),
        help="stage-2 augmentation: basic (flips, 90° turns, mild colour jitter) or robust (plus random camera-like "
             "degradations; default)",
    )
    p.add_argument(
        "--outliers",
        type=float,
        default=0.0,
        help="stage 2: outlier fields (zoomed, mosaics, leukocytes painted out) added to each batch, as a share of it, "
        "trained towards equal probabilities (outlier exposure; default 0: it did not help the shipped score, see "
        "the model card)",
    )
    p.add_argument(
        "--teacher", help="stage 2: distil from this trained .keras model (its soft labels on the training images)"
    )
    p.add_argument(
        "--temperature", type=float, default=2.0,
        help="--teacher: soften its probabilities as softmax(log p / T) (default 2)"
    )
    p.add_argument("--distill-weight", type=float, default=0.5,
                   help="--teacher: target = (1 - w) one-hot + w teacher (default 0.5; 0: labels alone)")


def _schedule_args(p: argparse.ArgumentParser) -> None:
    """Epochs, rates and sizes."""
    p.add_argument("--epochs", type=int, default=60, help="stage-1 epochs at most (early stopping on val loss)")
    p.add_argument("--fine-tune-epochs", type=int, default=25, help="stage-2 epochs at most")
    p.add_argument(
        "--fine-tune-patience", type=int, default=6,
        help="stage-2 early-stopping patience (the learning rate drops after half of it)"
    )
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--fine-tune-learning-rate", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--alpha", type=float, default=1.0, help="MobileNetV2 width (the study: 1.0)")
    p.add_argument("--input-size", type=int, default=224, help="input side in pixels (the study: 224)")
    p.add_argument(
        "--feature-cache", help="folder for cached base features, or 'off' (default: ~/.cache/edgeleuk/features)"
    )


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    import math

    from edgeleuk.errors import UsageError, UserError

    if args.cv and args.cv < 3:
        raise UsageError(f"Received: --cv {args.cv}; expected K ≥ 3 folds (or 0: none)")
    if not 0 <= args.outliers <= 1:
        raise UsageError(f"Received: --outliers {args.outliers}; expected 0 … 1")
    if not (math.isfinite(args.temperature) and args.temperature > 0):
        raise UsageError(f"Received: --temperature {args.temperature}; expected a number > 0")
    if not 0 <= args.distill_weight <= 1:
        raise UsageError(f"Received: --distill-weight {args.distill_weight}; expected 0 … 1")
    if not 0 < args.rehearse_share <= 1:
        raise UsageError(f"Received: --rehearse-share {args.rehearse_share}; expected more than 0, at most 1")
    if args.rehearse and not args.init_from:
        raise UserError("--rehearse replays the data of the model named by --init-from: add --init-from")
    if args.teacher and not args.fine_tune:
        raise UserError("--teacher distils in the fine-tuning stage: add --fine-tune")
    from edgeleuk.cli import sigterm_as_interrupt
    from edgeleuk.train.fit import TrainConfig, train

    sigterm_as_interrupt()  # like Ctrl-C: the best weights so far, a complete run folder

    config = TrainConfig(
        data=args.data, out=args.out, classes=args.classes, groups=args.groups, cv=args.cv, init_from=args.init_from,
        rehearse=args.rehearse, rehearse_share=args.rehearse_share, weights=args.weights, alpha=args.alpha,
        input_size=args.input_size, split=args.split, seed=args.seed, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, fine_tune=args.fine_tune, fine_tune_from=args.fine_tune_from,
        augment=args.augment, outliers=args.outliers, fine_tune_epochs=args.fine_tune_epochs,
        fine_tune_patience=args.fine_tune_patience, fine_tune_learning_rate=args.fine_tune_learning_rate,
        feature_cache=args.feature_cache, teacher=args.teacher, distill_temperature=args.temperature,
        distill_weight=args.distill_weight
    )
    summary = train(config, overwrite=args.overwrite)
    return 130 if summary["interrupted"] else 0
