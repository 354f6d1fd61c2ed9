"""Evaluate any model (Keras, or a TFLite/ONNX variant through the device runtime) on a split part."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeleuk.classes import KNOWN_DATASET, ClassMap, bare_labels
from edgeleuk.errors import UserError
from edgeleuk.files import atomic_write_text
from edgeleuk.manifest import PreprocessSpec

Predictor = Callable[[np.ndarray], np.ndarray]


@dataclass
class Loaded:
    predict: Predictor
    spec: PreprocessSpec
    name: str
    folder: Path  # where a split.json may sit
    classifier: Any = None  # the runtime Classifier (None for a Keras model)
    classes: ClassMap = ClassMap(KNOWN_DATASET)  # the model's labels and the folders they read

    def judged(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and the in-distribution decision per image (None: the model cannot judge)."""
        if self.classifier is None or self.classifier.ood is None:
            return self.predict(images), None
        from edgeleuk.runtime.classifier import infer_all

        probs, features = infer_all(self.classifier, images)
        return probs, self.classifier.ood.in_distribution(self.classifier.judge(features, images, probs))


def load_predictor(model: str | Path | None, variant: str | None = None, threads: int | None = None) -> Loaded:
    """A batch predictor for a .keras file (Keras on the host) or anything the runtime loads."""
    from edgeleuk.manifest import read_manifest

    path = Path(model) if model else None
    if path is not None and path.suffix == ".keras":
        from edgeleuk.keras_file import load_keras

        net = load_keras(path, "model")
        if (path.parent / "manifest.json").is_file():
            manifest = read_manifest(path.parent)
            spec, classes = manifest.preprocess, manifest.classes()
        else:  # a bare model file: labels as convert would give them
            spec, classes = (
                PreprocessSpec(size=int(net.input_shape[1])),
                ClassMap(bare_labels(int(net.output_shape[-1]))),
            )
        return Loaded(lambda x: net.predict(x, batch_size=32, verbose=0), spec, path.name, path.parent, classes=classes)
    from edgeleuk.runtime import load
    from edgeleuk.runtime.classifier import classes_beside, predict_all

    clf = load(path, variant=variant, threads=threads)
    folder = path if path is not None and path.is_dir() else clf.path.parent
    return Loaded(lambda x: predict_all(clf, x), clf.spec, clf.name, folder, clf, classes_beside(clf.path, clf.labels))


def model_classes(model: str | Path) -> ClassMap:
    """The class map of a model file or folder, from its manifest (the known dataset's without one)."""
    from edgeleuk.manifest import read_manifest

    path = Path(model)
    listed = path / "manifest.json" if path.is_dir() else path.parent / "manifest.json"
    return read_manifest(listed).classes() if listed.is_file() else ClassMap(KNOWN_DATASET)


def split_images(data: str, spec: PreprocessSpec, split: str | None, part: str, model_folder: Path,
                 classes: ClassMap) -> tuple[np.ndarray, np.ndarray, str, Any]:
    """The images of one split part, their labels, a note, and the part as an edgeleuk.dataset.Scan.
    The split is --split, else split.json beside the model, else made anew. A folder none of whose
    images the model's split lists (your own labelled images) is evaluated whole (split.unseen_part)."""
    from edgeleuk.dataset import load_arrays, scan
    from edgeleuk.split import make_split, read_split, unseen_part

    found = scan(data, classes=classes, require_all=False)
    split_file = Path(split) if split else model_folder / "split.json"
    if not split and split_file.is_file():
        chosen, new = unseen_part(found, split_file, part, hint=", or pass --split")
        if new:
            images, labels = load_arrays(list(found.samples), spec)
            return (
                images,
                labels,
                f"all {len(found.samples)} images of {data} (none is in the model's {split_file.name}: new to it)",
                found,
            )
        samples, note = list(chosen.samples), f"{part} part of {split_file}"
    elif split:  # a named one must be readable: read_split says why not
        samples, note = (
            read_split(split_file, found.samples, found.root).part(found.samples, part),
            f"{part} part of {split_file}",
        )
    else:
        made = make_split(found.samples)
        samples = made.part(found.samples, part)
        note = f"{part} part of a new split (seed {made.seed}); pass --split to use the training run's"
    if not samples:
        raise UserError(f"the {part} part of the split is empty")
    images, labels = load_arrays(samples, spec)
    return images, labels, note, dataclasses.replace(found, samples=tuple(samples))


def _sample_figures(part, probs: np.ndarray, labels: np.ndarray) -> dict[str, Any] | None:
    """Verdicts per sample folder or run of file numbers, each group's fields pooled as `run` pools them."""
    from edgeleuk.groups import assign_groups
    from edgeleuk.metrics import sample_verdicts

    groups = assign_groups(part)
    if groups.source.startswith("file"):
        return None  # every file alone: no samples to pool
    verdicts = sample_verdicts(probs, labels, [groups.of[s.path] for s in part.samples], part.labels)
    verdicts["groups_from"] = groups.source
    return verdicts


def format_samples(v: dict[str, Any]) -> str:
    weak = [r["group"] for r in v["rows"] if r["margin"] is None or r["margin"] < 0.1]
    low = "—" if v["lowest_margin"] is None else f"{v['lowest_margin']:.3f}"
    return (
        f"samples ({v['groups_from']}): {v['right']} of {v['n']} verdicts right; lowest margin of a right verdict {low}"
        + (f"\nwrong, referred or passed by under 0.1: {', '.join(weak)}" if weak else "")
    )


@dataclass(frozen=True)
class EvalRequest:
    """What `evaluate` measures, on what, and where it writes (the command's flags)."""

    model: str | None  # None: the packaged default
    data: str
    split: str | None = None
    part: str = "test"
    out: str | None = None
    variant: str | None = None
    threads: int | None = None
    robustness: bool = False
    severities: tuple[int, ...] | None = None
    conditions: list[str] | None = None
    ood: bool = False
    write_gate: bool = False


def evaluate(request: EvalRequest) -> dict[str, Any]:
    """Metrics of the model on the part; writes metrics.json and confusion.png to `out`."""
    r = request
    model, data, split, part, out, variant, threads = r.model, r.data, r.split, r.part, r.out, r.variant, r.threads
    robustness, severities, conditions, ood, write_gate = r.robustness, r.severities, r.conditions, r.ood, r.write_gate
    from edgeleuk import plots
    from edgeleuk.files import writable_folder
    from edgeleuk.metrics import classification_metrics, format_metrics

    if write_gate and not (robustness and model and Path(model).is_dir() and (Path(model) / "manifest.json").is_file()):
        raise UserError("--write-gate needs --robustness and a conversion folder (with manifest.json) as the model")
    if write_gate and (severities or conditions):
        raise UserError("--write-gate calibrates on the whole suite: drop --severities and --conditions")
    if out:
        writable_folder(out, "--out")  # before the model and the images load
    loaded = load_predictor(model, variant, threads)
    images, labels, note, evaluated = split_images(data, loaded.spec, split, part, loaded.folder, loaded.classes)
    probs = loaded.predict(images)
    metrics = classification_metrics(labels, probs, loaded.classes.labels)
    metrics.update(model=loaded.name, data=note, samples=_sample_figures(evaluated, probs, labels))
    print(format_metrics(metrics, f"{loaded.name} on the {note}:"))
    if metrics["samples"]:
        print(format_samples(metrics["samples"]))
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        plots.plot_confusion(
            metrics, folder / "confusion.png", f"{loaded.name}: {metrics['accuracy'] * 100:.1f}% (n={metrics['n']})"
        )
        print(f"wrote {folder / 'metrics.json'} and confusion.png")
    if robustness:
        from edgeleuk.degrade import SEVERITIES
        from edgeleuk.evaluate.robustness import Suite, format_robustness, write_robustness
        from edgeleuk.evaluate.robustness import robustness as run_suite

        limits = loaded.classifier.quality if loaded.classifier is not None else None
        suite = Suite(conditions=conditions, severities=severities or SEVERITIES, limits=limits)
        results = run_suite(
            loaded.predict, images, labels, suite,
            judged=loaded.judged if loaded.classifier is not None and loaded.classifier.ood is not None else None
        )
        results.update(model=loaded.name, data=note)
        print(format_robustness(results))
        if out:
            write_robustness(results, Path(out), f"{loaded.name}: accuracy under camera-like degradations")
            print(f"wrote {Path(out) / 'robustness.json'} and robustness.png")
        metrics["robustness"] = results.get("moderate")
        if write_gate:
            _write_gate(Path(model), results["gate_suggestion"])
    if ood:
        metrics["ood"] = _ood(loaded, data, split, out, images, labels)
    return metrics


def _ood(
    loaded: Loaded, data: str, split: str | None, out: str | None, test: np.ndarray, test_labels: np.ndarray
) -> dict[str, Any]:
    """The OOD sets and every split part through the device's run loop; the score comparison when the
    folder holds the Keras source model."""
    from edgeleuk.evaluate.ood_report import format_ood, ood_evaluation
    from edgeleuk.evaluate.ood_sets import build_ood_sets

    if loaded.classifier is None:
        raise UserError(
            "--ood runs the device's run loop: pass a conversion folder or a .tflite/.onnx file, not a .keras model"
        )
    parts = {p: split_images(data, loaded.spec, split, p, loaded.folder, loaded.classes)[:2] for p in ("train", "val")}
    parts["test"] = (test, test_labels)
    sets = build_ood_sets(test)
    result = ood_evaluation(loaded.classifier, parts, sets)
    print(format_ood(result))
    keras_file = loaded.folder / "model.keras"
    if keras_file.is_file():
        import keras

        from edgeleuk.evaluate.ood_methods import compare_methods, format_methods
        from edgeleuk.ood import Parts

        model = keras.models.load_model(keras_file, compile=False)
        fit = Parts(parts["train"][0], parts["train"][1], parts["val"][0], len(loaded.classifier.labels))
        result["methods"] = compare_methods(model, fit, test, sets)
        print("scores compared (float Keras model; % flagged, before the gate; threshold: 1% of validation views)")
        print(format_methods(result["methods"]))
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "ood.json", json.dumps(result, indent=2) + "\n")
        print(f"wrote {folder / 'ood.json'}")
    return {k: result[k] for k in ("ood_min_flagged_or_refused", "ood_verdicts_naming_a_class") if k in result}


def _write_gate(folder: Path, suggestion: dict[str, Any]) -> None:
    """The suite's focus and exposure limits for this model into its manifest (atomically)."""
    import dataclasses

    from edgeleuk.manifest import QualityLimits, read_manifest, write_manifest

    manifest = read_manifest(folder)
    base = manifest.quality or QualityLimits()
    found = {
        k: round(float(suggestion[k]), 4)
        for k in ("min_focus", "min_brightness", "max_brightness", "max_dark_fraction", "max_bright_fraction")
        if k in suggestion
    }
    note = (
        f"focus and exposure: evaluate --robustness on this model ({suggestion['frames']} frames; a limit where "
        "frames beyond "
        f"it are under {suggestion['target_accuracy']:.0%} correct, else the edge of what the suite covered)"
    )
    leuk = base.calibration.split(";")[0] if base.calibration.startswith("min_leukocyte_fraction") else ""
    limits = dataclasses.replace(base, **found, calibration="; ".join(filter(None, [leuk, note])))
    write_manifest(folder, dataclasses.replace(manifest, quality=limits))
    print(
        f"wrote the quality gate's limits into {folder / 'manifest.json'}: "
        + ", ".join(f"{k} {v}" for k, v in found.items())
    )
