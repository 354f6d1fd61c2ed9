"""`edgeleuk convert`: every requested variant converted, loaded back in its runtime, checked, and
written atomically with the manifest (a failed or interrupted run leaves the previous output as it was)."""

from __future__ import annotations

import json
import math
import platform
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

from edgeleuk import __version__
from edgeleuk.errors import UsageError, UserError
from edgeleuk.export import sites
from edgeleuk.export.conversion import Conversion, ConvertConfig, prepare
from edgeleuk.export.output import carry_over, merged_rows, staging_folder, swap
from edgeleuk.export.recipes import QuantizationConfig
from edgeleuk.export.variant_checks import variant_row
from edgeleuk.export.variant_file import VariantJob, write_variant
from edgeleuk.files import atomic_write_text
from edgeleuk.interrupts import Held
from edgeleuk.manifest import SCHEMA_VERSION, Manifest, Variant, embedded_info, sha256_file, write_manifest


def _versions() -> dict[str, str]:
    from edgeleuk.versions import version_of

    out = {"edgeleuk": __version__, "python": platform.python_version()}
    for dist in ("tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert"):
        if version_of(dist):
            out[dist] = version_of(dist)
    return out


def _variant(cfg: QuantizationConfig, path: Path, classifier, seconds: float, metrics: dict) -> Variant:
    b = classifier.backend
    features = tuple(int(b.output_sizes[i]) for i in classifier.features_indices)
    return Variant(
        name=cfg.name, format=cfg.format, file=path.name, sha256=sha256_file(path), precision=cfg.precision,
        input_name=b.input_name, input_shape=tuple(None if d in (-1, None) else int(d) for d in b.input_shape),
        input_dtype=b.input_dtype, output_dtype=classifier.output_dtype, input_quantization=b.input_quantization,
        output_quantization=classifier.output_quantization, features=features, size_bytes=path.stat().st_size,
        conversion_seconds=round(seconds, 2), metrics=metrics
    )


def convert(config: ConvertConfig) -> tuple[list[dict[str, Any]], list[str]]:
    """Convert, check and write; returns the report rows and the variants that failed --max-drop.
    Ctrl-C and SIGTERM stop it between two steps (loading, each variant, writing), never inside a
    converter: the staging folder is then removed and the previous output stays as it was."""
    with Held("stopping after this step of the conversion") as held:
        return _convert(config, held)


def _convert(config: ConvertConfig, held: Held) -> tuple[list[dict[str, Any]], list[str]]:
    from edgeleuk.export.parity import format_report

    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; convert writes a folder of variants")
    if not (math.isfinite(config.max_drop) and config.max_drop >= 0):
        raise UsageError(f"Received: --max-drop {config.max_drop}; expected a number of accuracy points ≥ 0")
    conv = prepare(config)
    held.checkpoint()
    staging = staging_folder(out)
    try:
        failed = _publish(conv, staging, held)
        swap(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    print(format_report(conv.rows))
    print(f"wrote {out}" + (f" (not published: {', '.join(failed)})" if failed else ""))
    return conv.rows, failed


def _publish(conv: Conversion, staging: Path, held: Held) -> dict[str, str]:
    """Every variant into `staging`, the failed ones removed, then the manifest and the report; returns the failed."""
    out, config = Path(conv.config.out), conv.config
    previous = carry_over(out, staging, conv.source_sha, conv.model_path)
    variants = []
    for variant in _convert_variants(conv, staging):
        variants.append(variant)
        held.checkpoint()
    failed = _failed(
        conv.rows, config.max_drop, sites.site_failures(conv.rows, config.claim) if sites.adapted(conv.base) else {}
    )
    for v in [v for v in variants if v.name in failed]:  # a variant that fails the gate is never published
        (staging / v.file).unlink(missing_ok=True)
    variants = [v for v in variants if v.name not in failed]
    if conv.in_place:
        variants.insert(0, _keras_variant(conv.model_path, conv.source_sha, conv.size, conv.rows))
    write_manifest(staging, _manifest(conv, previous, variants))
    images = conv.images
    if images.split_file is not None and images.split_file.resolve() != (out / "split.json").resolve():
        shutil.copyfile(images.split_file, staging / "split.json")
    _write_report(conv, staging, previous is not None)
    return failed


def _manifest(conv: Conversion, previous: Manifest | None, variants: list[Variant]) -> Manifest:
    from edgeleuk.keras_graph import multiply_adds

    base, model = conv.base, conv.model
    manifest = previous or Manifest(
        labels=conv.classes.labels, class_folders=conv.classes.folders, preprocess=conv.spec,
        model=dict(base.model) if base else {"input_size": conv.size}, source_model_sha256=conv.source_sha
    )
    if conv.domain is not None:
        _warn_stale_layers(previous, conv.domain.ood, {c.name for c in conv.chosen})
        manifest = replace(manifest, **{**conv.learned, "quality": _kept_gate(previous, conv.domain.quality)})
    manifest = replace(
        manifest,
        model={
            **manifest.model,
            "input_size": conv.size,
            "parameters": int(model.count_params()),
            "multiply_adds": multiply_adds(model),
        },
    )
    source = conv.model_path.name if conv.in_place else str(conv.model_path)
    return replace(
        manifest.with_variants(variants),
        versions=_versions(),
        schema_version=SCHEMA_VERSION,
        provenance={
            **manifest.provenance,
            "evaluation": conv.images.note,
            "split_sha256": conv.images.split_sha256,
            "source_model": source,
        },
    )


def _write_report(conv: Conversion, staging: Path, merge: bool) -> None:
    from edgeleuk.export.parity import format_report

    report_rows = merged_rows(staging / "report.json", conv.rows) if merge else conv.rows
    report = {"rows": report_rows, "note": conv.images.note, "max_drop_points": conv.config.max_drop,
              "labels": list(conv.classes.labels), "evaluated_files": conv.images.test_files}
    atomic_write_text(staging / "report.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(
        staging / "report.md", f"# Conversion report\n\n{conv.images.note}\n\n{format_report(report_rows)}\n"
    )


def _failed(rows: list[dict[str, Any]], max_drop: float, more: dict[str, str]) -> dict[str, str]:
    """Variants that are not published, and why: more than max_drop points below the Keras model's
    test accuracy, other answers under another CPU's int8 kernels, or `more` (an adapted model's
    new site). Marked in the report."""
    failed = more | {
        r["variant"]: f"gives other answers under the {r['kernel_failed']} int8 kernels (top class agrees on "
        f"{r['kernel_agreement']:.1%} of {r['kernel_images']} images)"
        for r in rows
        if r.get("kernel_failed")
    }
    if rows and rows[0]["variant"] == "keras":
        reference = rows[0]["accuracy"]
        for r in rows[1:]:
            if (reference - r["accuracy"]) * 100 > max_drop:
                failed.setdefault(r["variant"], f"lost more than {max_drop} accuracy points against the Keras model")
    for r in rows:
        if r["variant"] != "keras":
            r["published"] = r["variant"] not in failed
    return failed


def _warn_stale_layers(previous: Manifest | None, fitted, converted: set[str]) -> None:
    """The statistics are fitted anew on every conversion, and on another machine they differ in the
    last digits: variants not converted this time keep score layers built from the earlier ones (run
    then scores with numpy from their features, and says so). Say which, and how to refresh them."""
    from edgeleuk.ood import fingerprint

    if previous is None or previous.ood is None or fitted is None or fingerprint(previous.ood) == fingerprint(fitted):
        return
    stale = [v.name for v in previous.variants if v.format in ("tflite", "onnx") and v.name not in converted]
    if stale:
        print(f"note: the out-of-distribution statistics came out slightly different from the earlier conversion's; "
              f"{', '.join(stale)} keep score layers built from the earlier ones and will score with numpy: "
              f"convert them again too (--variants {','.join(sorted(converted | set(stale)))})", flush=True)


def _kept_gate(previous: Manifest | None, fitted):
    """A re-conversion of the same model refits the gate's leukocyte check; the focus and exposure
    limits that `evaluate --robustness --write-gate` measured for it stay (convert cannot measure them)."""
    if (
        previous is None
        or previous.quality is None
        or fitted is None
        or "evaluate --robustness" not in previous.quality.calibration
    ):
        return fitted
    measured = previous.quality.calibration.split("; ", 1)[-1]
    return replace(previous.quality, min_leukocyte_fraction=fitted.min_leukocyte_fraction,
                   calibration=f"{fitted.calibration.split(';')[0]}; {measured}")


def _convert_variants(conv: Conversion, staging: Path) -> Iterator[Variant]:
    """Convert each variant into staging, load it back in its runtime and check it; appends report rows."""
    from edgeleuk.runtime.backends import open_backend
    from edgeleuk.runtime.classifier import Classifier

    info = embedded_info(Manifest(labels=conv.classes.labels, preprocess=conv.spec, source_model_sha256=conv.source_sha,
                                  versions={"edgeleuk": __version__}, **conv.learned))
    with tempfile.TemporaryDirectory(dir=staging) as work:
        for cfg in sorted(conv.chosen, key=lambda c: (c.format, c.precision != "fp32")):
            print(f"converting {cfg.name} …", flush=True)
            try:
                job = VariantJob(
                    conv.exported, cfg, staging, info, Path(work), conv.domain.ood if conv.domain is not None else None
                )
                path, seconds = write_variant(job, conv.images.calibration)
                classifier = Classifier(
                    backend=open_backend(path, threads=None), labels=conv.classes.labels, spec=conv.spec, path=path
                )
            except UserError:
                raise
            except Exception as exc:
                log = Path(work) / f"{cfg.name}.log"
                tail = log.read_text(errors="replace")[-1500:] if log.is_file() else ""
                raise UserError(
                    f"{cfg.name}: conversion failed ({exc.__class__.__name__}: {str(exc).splitlines()[0][:300]}); "
                    f"the previous output in {conv.config.out} is unchanged"
                    + (f"\nconverter log (end):\n{tail}" if tail else "")
                ) from None
            row = variant_row(conv, cfg, path, classifier, seconds)
            conv.rows.append(row)
            checks = {
                k: row[k]
                for k in (
                    "accuracy",
                    "macro_f1",
                    "agreement",
                    "max_prob_diff",
                    "ood_agreement_val",
                    "ood_flagged_test",
                    "score_layers_max_diff",
                    "kernel_agreement",
                )
                if k in row
            }
            yield replace(
                _variant(cfg, path, classifier, seconds, checks), kernels_checked=tuple(row.get("kernels_checked", ()))
            )


def _keras_variant(model_path: Path, source_sha: str, size: int, rows: list[dict[str, Any]]) -> Variant:
    """The source model, listed when it lives in the output folder."""
    keras_row = rows[0] if rows and rows[0]["variant"] == "keras" else {}
    return Variant(
        name="keras", format="keras", file=model_path.name, sha256=source_sha, precision="fp32", input_name="image",
        input_shape=(None, size, size, 3), input_dtype="float32", output_dtype="float32",
        size_bytes=model_path.stat().st_size,
        metrics={k: keras_row[k] for k in ("accuracy", "macro_f1") if k in keras_row}
    )
