"""Knowing when not to answer: the out-of-distribution score, its manifest statistics, the run loop's
use of it, the magnification check and the scale calibration."""

import dataclasses
import json
import os
import shutil

import cv2
import numpy as np
import pytest

from conftest import cli, smear
from edgeleuk.classes import KNOWN_DATASET as LABELS
from edgeleuk.degrade import rescale
from edgeleuk.errors import UserError
from edgeleuk.manifest import SCHEMA_VERSION, manifest_from_dict, manifest_to_dict, read_manifest, write_manifest
from edgeleuk.ood import OODScorer, Parts, fit_ood
from edgeleuk.preprocess import preprocess
from edgeleuk.runtime import load
from edgeleuk.runtime.embedded import read_tflite_info
from edgeleuk.runtime.scale import ScaleMonitor, measure_cells, scaled_region
from edgeleuk.runtime.verdict import OOD_DECISION, Verdict


def _clusters(rng, n, dims=12, classes=3, spread=1.0):
    centres = np.arange(classes)[:, None] * 3.0 * np.eye(classes, dims)
    labels = rng.integers(0, classes, n)
    return centres[labels] + rng.normal(0, spread, (n, dims)), labels


def test_score_is_the_mahalanobis_distance_and_threshold_flags_the_target():
    rng = np.random.default_rng(0)
    train, labels = _clusters(rng, 3000)
    val, _ = _clusters(rng, 2000)
    other, _ = _clusters(rng, 3000, dims=5)
    other_val, _ = _clusters(rng, 2000, dims=5)
    stats = fit_ood(Parts([train, other], labels, [val, other_val], classes=3), names=["a", "b"], target_flagged=0.02)
    scorer = OODScorer(stats)
    flagged = ~scorer.in_distribution(scorer.score([val, other_val]))
    assert abs(flagged.mean() - 0.02) < 0.005  # the union of the two spaces' flags hits the target
    # against an explicit inverse: the same distance to the nearest centre, over √dims
    a = stats.components[0]
    means = np.array(a.means)
    cov = sum(np.outer(x - means[c], x - means[c]) for x, c in zip(train, labels)) / (len(train) - 1)
    cov = (1 - a.shrinkage) * cov + a.shrinkage * np.trace(cov) / 12 * np.eye(12)
    x = val[:5]
    d2 = np.stack([np.einsum("ni,ij,nj->n", x - m, np.linalg.inv(cov), x - m) for m in means], 1).min(1)
    np.testing.assert_allclose(scorer.distances([x, other_val[:5]])[0], np.sqrt(d2 / 12), rtol=1e-3)
    # the one-pass score is the largest of the spaces' distances over their thresholds
    both = [val[:50], other_val[:50]]
    expected = np.max([d / c.threshold for d, c in zip(scorer.distances(both), stats.components)], axis=0)
    np.testing.assert_allclose(scorer.score(both), expected, rtol=1e-4)
    far = rng.normal(0, 1, (200, 12)) + 8.0
    assert (~scorer.in_distribution(scorer.score([far, other_val[:200]]))).mean() == 1.0  # one space is enough


def test_statistics_round_trip_through_the_manifest(tmp_path, converted):
    manifest = read_manifest(converted)
    assert manifest.ood is not None and manifest.quality is not None and manifest.schema_version == SCHEMA_VERSION
    write_manifest(tmp_path, manifest)
    again = read_manifest(tmp_path)
    assert (
        again.ood == manifest.ood
        and again.cell_diameter_px == manifest.cell_diameter_px
        and again.quality == manifest.quality
    )
    # the same reader for the file's own copy
    embedded = manifest_from_dict(read_tflite_info(converted / "model_int8.tflite"))
    assert embedded.ood == manifest.ood and embedded.quality == manifest.quality and embedded.variants == ()
    x = [np.random.default_rng(1).random((4, d)).astype(np.float32) for d in again.ood.dims]
    np.testing.assert_array_equal(OODScorer(again.ood).score(x), OODScorer(manifest.ood).score(x))


def test_manifest_ood_is_strict(converted):
    data = manifest_to_dict(read_manifest(converted))
    bad = json.loads(json.dumps(data))
    bad["ood"]["extra"] = 1
    with pytest.raises(UserError, match=r"unknown key ood\.'extra'"):
        manifest_from_dict(bad)
    bad = json.loads(json.dumps(data))
    bad["ood"]["components"][0]["whitening"] = bad["ood"]["components"][0]["whitening"][:-1]
    with pytest.raises(UserError, match="disagree in size"):
        manifest_from_dict(bad)
    bad = json.loads(json.dumps(data))
    bad["ood"]["components"][1]["threshold"] = -1
    with pytest.raises(UserError, match="'field': threshold"):
        manifest_from_dict(bad)
    bad = json.loads(json.dumps(data))
    bad["ood"]["components"][0]["colour"] = "blue"
    with pytest.raises(UserError, match=r"unknown key ood.components\[0\]\.'colour'"):
        manifest_from_dict(bad)
    bad = json.loads(json.dumps(data))
    bad["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(UserError, match="newer"):
        manifest_from_dict(bad)
    bad = json.loads(json.dumps(data))
    bad["quality"]["min_leukocyte_fraction"] = float("nan")
    with pytest.raises(UserError, match=r"quality\.min_leukocyte_fraction = nan; expected a finite number"):
        manifest_from_dict(bad)
    bad["quality"] = {"min_focus": 4.0, "blur": 1}
    with pytest.raises(UserError, match=r"unknown key quality\.'blur'"):
        manifest_from_dict(bad)


def _far_images(size: int, n: int = 24) -> np.ndarray:
    """Nothing like a class-coded disc: stripes, checkerboards and saturated noise."""
    rng = np.random.default_rng(5)
    out = []
    for i in range(n):
        y, x = np.mgrid[0:size, 0:size]
        if i % 3 == 0:
            img = np.stack([(np.sin(x / (2 + i % 5)) > 0) * 255] * 3, -1)
        elif i % 3 == 1:
            img = np.stack([((x // 4 + y // 4) % 2) * 255, np.zeros_like(x), ((x // 8) % 2) * 255], -1)
        else:
            img = rng.integers(0, 256, (size, size, 3))
        out.append(img.astype(np.uint8))
    return np.stack(out)


def _training_like(spec, n: int = 24) -> np.ndarray:
    return np.stack([preprocess(smear(LABELS[i % 4], 500 + i), spec) for i in range(n)])


@pytest.mark.parametrize("variant", ["tflite-fp32", "tflite-int8", "onnx-fp32", "onnx-int8"])
def test_far_images_are_flagged_training_like_ones_are_not(converted, variant):
    clf = load(converted, variant=variant)
    assert clf.ood is not None and len(clf.features_indices) == 2
    _, near = clf.infer(_training_like(clf.spec))
    _, far = clf.infer(_far_images(clf.spec.size))
    assert clf.ood.in_distribution(clf.judge(near)).mean() >= 0.9
    assert clf.ood.in_distribution(clf.judge(far)).mean() <= 0.1


def test_int8_and_float_variants_agree_on_the_decision(converted):
    frames = np.concatenate([_training_like(read_manifest(converted).preprocess), _far_images(64)])
    decisions = {}
    for name in ("tflite-fp32", "tflite-int8", "onnx-int8"):
        clf = load(converted, variant=name)
        decisions[name] = clf.ood.in_distribution(clf.judge(clf.infer(frames)[1]))
    assert (decisions["tflite-int8"] == decisions["tflite-fp32"]).mean() >= 0.9
    assert (decisions["onnx-int8"] == decisions["tflite-fp32"]).mean() >= 0.9
    for v in read_manifest(converted).variants:  # conversion checked the same on the validation views
        if v.format != "keras":
            assert len(v.features) == 2 and v.metrics["ood_agreement_val"] >= 0.9, v.name


@pytest.fixture(scope="module")
def ood_folder(tmp_path_factory, converted):
    folder = tmp_path_factory.mktemp("ood_frames")
    for i, img in enumerate(_far_images(160, 12)):
        cv2.imwrite(str(folder / f"far{i:02d}.png"), img)
    return folder


def test_run_log_carries_the_fields_and_a_folder_of_strangers_is_referred(converted, ood_folder, tmp_path):
    log = tmp_path / "run.jsonl"
    proc = cli(
        "run", "--model", str(converted), "--source", str(ood_folder), "--log", str(log), "--min-focus", "0", check_rc=0
    )
    assert f"verdict: {OOD_DECISION}" in proc.stdout
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    frames = [x for x in lines if "class" in x]
    assert frames and all(isinstance(x["in_distribution"], bool) and isinstance(x["ood_score"], float) for x in frames)
    summary = lines[-1]
    assert summary["frames_out_of_distribution"] == sum(not x["in_distribution"] for x in frames) >= 0.9 * len(frames)
    assert summary["verdict"]["decision"] == OOD_DECISION and summary["verdict"]["class"] is None


def test_training_like_frames_still_get_a_class(converted, tmp_path):
    folder = tmp_path / "pro"
    folder.mkdir()
    for i in range(8):
        cv2.imwrite(str(folder / f"p{i}.png"), smear("Pro", 900 + i))
    proc = cli("run", "--model", str(converted), "--source", str(folder), "--min-focus", "0", "--quiet", check_rc=0)
    assert "out of distribution: refer" not in proc.stdout
    assert "verdict: Pro" in proc.stdout or "verdict: refer to a specialist" in proc.stdout


def test_a_model_without_statistics_runs_and_says_once_it_cannot_judge(converted, ood_folder, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(converted, bare)
    manifest = read_manifest(bare)
    write_manifest(bare, dataclasses.replace(manifest, ood=None))
    log = tmp_path / "bare.jsonl"
    proc = cli(
        "run", "--model", str(bare), "--source", str(ood_folder), "--log", str(log), "--min-focus", "0", check_rc=0
    )
    assert proc.stderr.count("cannot tell frames unlike its training images") == 1
    assert OOD_DECISION not in proc.stdout
    frames = [json.loads(x) for x in log.read_text().splitlines() if '"class"' in x]
    assert all(x["in_distribution"] is None and x["ood_score"] is None for x in frames[:-1])


def test_verdict_refers_when_too_many_frames_are_out_of_distribution():
    v = Verdict(LABELS, 0.8, max_ood_fraction=0.25)
    for _ in range(7):
        v.add(np.array([0.0, 0.0, 1.0, 0.0]))
    for _ in range(2):
        v.add_out_of_distribution()
    assert v.decision == "Pre"  # 2 of 9 usable frames
    v.add_out_of_distribution()
    assert v.decision == OOD_DECISION and v.as_dict()["class"] is None  # 3 of 10
    only = Verdict(LABELS, 0.8, max_ood_fraction=0.25)
    only.add_out_of_distribution()
    assert only.decision == OOD_DECISION
    blind = Verdict(LABELS, 0.8, max_ood_fraction=None)
    blind.add_out_of_distribution()
    assert blind.decision == "no usable frame"


def discs(diameter: float, size=(640, 480), seed: int = 0) -> np.ndarray:
    """A synthetic smear (BGR): pink discs of one diameter, apart, on a bright background."""
    rng = np.random.default_rng(seed)
    w, h = size
    image = np.full((h, w, 3), (235, 232, 240), np.uint8)
    step = int(diameter * 1.8)
    for y in range(step, h - step, step):
        for x in range(step, w - step, step):
            cx, cy = x + int(rng.integers(-step // 8, step // 8 + 1)), y + int(rng.integers(-step // 8, step // 8 + 1))
            # 2r+1 px across
            cv2.circle(image, (cx, cy), int(round((diameter - 1) / 2)), (170, 120, 200), -1, lineType=cv2.LINE_AA)
    return np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)


def test_cell_ruler_reads_known_diameters_and_scales_linearly():
    for d in (11, 17, 25, 41):
        reading = measure_cells(cv2.cvtColor(discs(d), cv2.COLOR_BGR2RGB))
        assert reading.cells >= 20 and abs(reading.diameter_px - d) / d < 0.06, (d, reading)
    assert measure_cells(np.full((224, 224, 3), 240, np.uint8)).diameter_px is None


def test_calibrate_scale_writes_the_config_keeping_its_mode_group_and_link(converted, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(converted, model)
    write_manifest(model, dataclasses.replace(read_manifest(model), cell_diameter_px=10.0))
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(5):
        cv2.imwrite(str(frames / f"f{i}.png"), discs(25.0, seed=i))
    # the service's config: a token, mode 640, the group edgeleuk (here a group id of its own where
    # the tests run as root), reached through a link, as /etc/edgeleuk/edgeleuk.toml may be
    config = tmp_path / "etc" / "device.toml"
    config.parent.mkdir()
    config.write_text(
        '[camera]\nwidth = 640\n\n[sample]\nmin_confidence = 0.8\n\n[serve]\ntoken = "t0ken-0123456789abcdef"\n'
    )
    config.chmod(0o640)
    group = 4242 if os.geteuid() == 0 else os.getegid()
    os.chown(config, -1, group)
    link = tmp_path / "device.toml"
    link.symlink_to(config)
    proc = cli(
        "calibrate-scale", "--model", str(model), "--source", str(frames), "--config", str(link), "--write", check_rc=0
    )
    from edgeleuk.runtime.config import read_config

    scale = read_config(link)["camera"]["scale"]  # and the config's own check of its token still passes
    assert abs(scale - 2.5) < 0.1, proc.stdout
    # the rest of the file is kept
    assert "min_confidence = 0.8" in config.read_text() and "t0ken" in config.read_text()
    assert link.is_symlink() and (config.stat().st_mode & 0o777, config.stat().st_gid) == (0o640, group)
    bad = cli("calibrate-scale", "--model", str(model), "--source", str(frames), "--write")
    assert bad.returncode == 1 and "--write needs --config" in bad.stderr


def test_scale_sets_the_crop_and_a_crop_larger_than_the_frame_is_an_error():
    assert scaled_region(480, 640, 224, 1.5) == (152, 72, 336, 336)
    assert scaled_region(480, 640, 224, 1.0, roi=(0, 0, 300, 480)) == (38, 128, 224, 224)
    with pytest.raises(UserError, match="needs a 560×560 px region"):
        scaled_region(480, 640, 224, 2.5)


def test_scale_monitor_refuses_magnified_fields_only():
    field = cv2.cvtColor(discs(15, size=(224, 224)), cv2.COLOR_BGR2RGB)
    monitor = ScaleMonitor(15.0, every=1)
    for _ in range(3):
        ratio = monitor.update(field)
    assert abs(ratio - 1.0) < 0.08
    monitor = ScaleMonitor(15.0, every=1)
    for _ in range(3):
        ratio = monitor.update(rescale(field, 2.0))
    assert ratio > 1.7


def test_magnification_condition_and_training_scale_draws():
    from edgeleuk.degrade import degrade, random_scale

    field = cv2.cvtColor(discs(15, size=(224, 224)), cv2.COLOR_BGR2RGB)
    for severity in (1, 5):
        out = degrade(field, "magnification", severity, seed=3)
        assert out.shape == field.shape
        ratio = measure_cells(out).diameter_px / 15.0
        expected = 1 + 0.3 * severity / 5
        assert min(abs(ratio - expected), abs(ratio - 1 / expected)) < 0.08, (severity, ratio)
    factors = set()
    for seed in range(40):
        out = random_scale(field, np.random.default_rng(seed), p=1.0)
        factors.add(round(measure_cells(out).diameter_px / 15.0, 2))
    assert len(factors) > 15 and min(factors) >= 0.65 and max(factors) <= 1.5  # continuous, within 0.7-1.4


def test_an_out_of_distribution_frame_is_shown_red_with_no_class(converted):
    from edgeleuk.runtime.quality import assess
    from edgeleuk.runtime.records import Control, FrameRecord, FrameResult
    from edgeleuk.runtime.sinks import DisplaySink
    from edgeleuk.runtime.sources import Frame

    shown = []

    class Recorder:
        def show(self, image, color_order, region, overlay):
            shown.append((overlay.probs, overlay.quality, overlay.verdict_text))
            return False

    clf = load(converted)
    frame = Frame(0, smear("Pre", 1), "f")
    quality = assess(preprocess(frame.image, clf.spec))
    verdict = Verdict(LABELS, 0.8, max_ood_fraction=0.25)
    verdict.add_out_of_distribution()
    record = FrameRecord("2026-01-01T00:00:00", "f", 0)
    result = FrameResult(frame, record, quality, np.array([0.1, 0.1, 0.7, 0.1]), in_distribution=False, ood_score=3.0)
    DisplaySink(Recorder(), LABELS, Control()).frame(result, verdict, None)
    probs, shown_quality, text = shown[0]
    assert probs is None and not shown_quality.usable and shown_quality.reason == "out of distribution: not answered"
    assert OOD_DECISION in text and "(1 of 1 usable frames)" in text


@pytest.mark.host
def test_scores_compared_on_the_float_model(trained, dataset):
    """evaluate --ood's comparison: every candidate thresholded on the validation views, on the same data."""
    import keras

    from edgeleuk.dataset import load_arrays, scan
    from edgeleuk.evaluate.ood_methods import compare_methods
    from edgeleuk.manifest import PreprocessSpec
    from edgeleuk.split import read_split

    spec = PreprocessSpec(size=64)
    found = scan(dataset)
    split = read_split(trained / "split.json", found.samples, found.root)
    parts = {p: load_arrays(split.part(found.samples, p), spec, progress=False) for p in ("train", "val", "test")}
    model = keras.models.load_model(trained / "model.keras", compile=False)
    result = compare_methods(
        model, Parts(*parts["train"], parts["val"][0], 4), parts["test"][0], {"far": _far_images(64)}, target=0.05
    )
    assert len(result["rows"]) == 7 and sum("(shipped)" in r["method"] for r in result["rows"]) == 1
    for row in result["rows"]:
        assert row["val_flagged"] <= 0.1 and 0 <= row["auroc"] <= 1, row
    shipped = next(r for r in result["rows"] if "(shipped)" in r["method"])
    assert shipped["sets"]["far"] >= 0.9


def _cells_field(
    rng: np.random.Generator, leukocyte: tuple[int, int, int] | None = None, size: int = 224
) -> np.ndarray:
    """RGB: lavender-grey red cells on a bright background, and optionally one stained leukocyte."""
    field = np.full((size, size, 3), (236, 234, 242), np.uint8)
    for _ in range(40):
        cv2.circle(field, tuple(int(v) for v in rng.integers(0, size, 2)), 8, (186, 178, 206), -1)
    if leukocyte is not None:
        cv2.circle(field, (size // 2, size // 2), 12, leukocyte, -1)
    return np.clip(field + rng.normal(0, 3, field.shape), 0, 255).astype(np.uint8)


def test_leukocyte_check_finds_stained_cells_pale_ones_included():
    from edgeleuk.export.domain import quality_limits
    from edgeleuk.runtime.quality import assess, leukocyte_fraction

    rng = np.random.default_rng(0)
    red_only = [_cells_field(rng) for _ in range(5)]
    purple = [_cells_field(rng, (120, 50, 160)) for _ in range(5)]  # a deep purple nucleus
    pale = [_cells_field(rng, (226, 164, 224)) for _ in range(5)]  # a pale pink blast, as in this dataset's Pro fields
    assert max(leukocyte_fraction(x) for x in red_only) == 0
    assert min(leukocyte_fraction(x) for x in purple + pale) > 0.008  # a disc of radius 12: 0.9% of the crop
    limits = quality_limits(np.stack(purple + pale))
    assert 0.001 < limits.min_leukocyte_fraction < 0.004 and "training images" in limits.calibration
    assert quality_limits(np.stack(red_only)).min_leukocyte_fraction == 0  # no stained cell in training: no check
    assert all(assess(x, limits).reason == "no leukocyte" for x in red_only)
    assert all(assess(x, limits).usable for x in purple + pale)
    grey = cv2.cvtColor(cv2.cvtColor(purple[0], cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)  # unstained, or another stain
    assert assess(grey, limits).reason == "no leukocyte"


def test_run_uses_the_models_gate_limits_and_the_config_overrides_them(converted, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(converted, model)
    manifest = read_manifest(model)
    limits = dataclasses.replace(manifest.quality, min_leukocyte_fraction=0.005, min_focus=0.0)
    write_manifest(model, dataclasses.replace(manifest, quality=limits))
    folder = tmp_path / "red"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(6):
        cv2.imwrite(str(folder / f"r{i}.png"), cv2.cvtColor(_cells_field(rng), cv2.COLOR_RGB2BGR))
    log = tmp_path / "red.jsonl"
    proc = cli("run", "--model", str(model), "--source", str(folder), "--log", str(log), check_rc=0)
    summary = json.loads(log.read_text().splitlines()[-1])
    assert summary["frames_rejected"] == {"no leukocyte": 6} and summary["verdict"]["class"] is None
    assert "no usable frame" in proc.stdout
    config = tmp_path / "edgeleuk.toml"
    config.write_text("[quality]\nmin_leukocyte_fraction = 0\n")
    log2 = tmp_path / "red2.jsonl"
    cli("run", "--model", str(model), "--source", str(folder), "--log", str(log2), "--config", str(config), check_rc=0)
    assert "no leukocyte" not in json.loads(log2.read_text().splitlines()[-1])["frames_rejected"]


@pytest.mark.host
def test_write_gate_puts_this_models_limits_into_its_manifest(converted, dataset, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(converted, model)
    before = read_manifest(model).quality
    proc = cli(
        "evaluate", str(model), "--data", str(dataset), "--variant", "tflite-int8", "--robustness", "--write-gate",
        "--out", str(tmp_path / "evaluated"), check_rc=0
    )
    after = read_manifest(model).quality
    assert "wrote the quality gate's limits into" in proc.stdout
    assert after.min_leukocyte_fraction == before.min_leukocyte_fraction
    assert "evaluate --robustness on this model" in after.calibration
    assert (after.min_focus, after.max_brightness) != (before.min_focus, before.max_brightness)
    assert load(model).quality == after  # the runtime reads them
    bad = cli(
        "evaluate", str(converted / "model_int8.tflite"), "--data", str(dataset), "--robustness", "--write-gate",
        check_rc=1
    )
    assert "--write-gate needs --robustness and a conversion folder" in bad.stderr


def _stained_field(seed: int, od_scale: float = 1.0, strength: float = 1.0, red: float = 1.0) -> np.ndarray:
    """RGB: a light background with red cells and one purple leukocyte, its stain `strength` × a base
    (the red cells' `red` × theirs)."""
    rng = np.random.default_rng(seed)
    image = np.empty((224, 224, 3), np.float32)
    image[:] = (236, 226, 232)
    red_colour = tuple(
        float(v) for v in np.array([236.0, 226.0, 232.0]) * (np.array([228.0, 196.0, 186.0]) / (236, 226, 232)) ** red
    )
    for _ in range(6):  # pale enough to stay out of the leukocyte mask when stained 3× (a real field's may not)
        cv2.circle(image, (int(rng.integers(10, 214)), int(rng.integers(10, 214))), 14, red_colour, -1)
    od = -np.log(np.array([150.0, 60.0, 160.0]) / 236.0) * strength  # the leukocyte's colour as optical density
    colour = tuple(float(v) for v in 236.0 * np.exp(-od))
    cv2.circle(image, (112 + int(rng.integers(-20, 21)), 112 + int(rng.integers(-20, 21))), 30, colour, -1)
    image = np.clip(image + rng.normal(0, 2, image.shape), 0, 255)
    if od_scale != 1.0:  # the whole field stained more strongly (Beer-Lambert), as degrade.stain_intensity does
        image = 256.0 * np.exp(-od_scale * -np.log((image + 1.0) / 256.0)) - 1.0
    return np.clip(image, 0, 255).astype(np.uint8)


def test_stain_strength_reads_a_stronger_stain_and_not_exposure_or_white_balance():
    from edgeleuk.runtime.quality import stain_strength

    base = np.array(stain_strength(_stained_field(1)))  # leukocytes, red cells
    assert np.all(np.abs(np.array(stain_strength(_stained_field(1, od_scale=2.0))) - base - np.log(2.0)) < 0.15)
    darker = np.clip(_stained_field(1).astype(np.float32) * 0.85, 0, 255).astype(np.uint8)
    cast = np.clip(_stained_field(1).astype(np.float32) * np.array([0.92, 1.0, 1.06]), 0, 255).astype(np.uint8)
    assert np.all(np.abs(np.array(stain_strength(darker)) - base) < 0.06) and np.all(
        np.abs(np.array(stain_strength(cast)) - base) < 0.06
    )
    for side in (160, 96, 64):  # the smaller models' inputs read the same (not only multiples of the 56×56 copy)
        small = cv2.resize(_stained_field(1), (side, side), interpolation=cv2.INTER_AREA)
        assert np.all(np.abs(np.array(stain_strength(small)) - base) < 0.05)
    red_cells = np.array(stain_strength(_stained_field(1, red=2.0)))  # only the red cells stained more strongly
    assert abs(red_cells[0] - base[0]) < 0.02 and abs(red_cells[1] - base[1] - np.log(2.0)) < 0.15
    red_cells_only = np.full((224, 224, 3), (236, 226, 232), np.uint8)
    for centre in ((60, 60), (100, 150), (170, 90)):
        cv2.circle(red_cells_only, centre, 14, (228, 196, 186), -1)
    leukocytes, red = stain_strength(red_cells_only)
    assert leukocytes is None and red is not None
    assert stain_strength(np.full((224, 224, 3), (236, 226, 232), np.uint8)) == (None, None)


def test_stain_limits_refer_a_far_stronger_stain_of_the_named_class_only():
    from edgeleuk.export.domain import fit_stain
    from edgeleuk.ood_stats import OODComponent, OODStats

    rng = np.random.default_rng(0)
    strengths = {0: 0.7, 1: 1.2}  # class 0 stained paler than class 1, as Pro is in the real data
    labels = np.array([c for c in (0, 1) for _ in range(30)])
    images = np.stack(
        [_stained_field(i, strength=strengths[c] * rng.uniform(0.95, 1.05)) for i, c in enumerate(labels)]
    )
    stain = fit_stain(images[::2], labels[::2], images[1::2], labels[1::2], classes=2)
    assert stain is not None and stain.log_limit[0] < stain.log_limit[1] and "severity-3 stain" in stain.calibration
    scorer = OODScorer(OODStats(components=(OODComponent("head", ((0.0,),), ((1.0,),), 1.0),), stain=stain))
    pale = _stained_field(99, strength=0.7)
    assert stain.red_log_limit is not None and "red cells" in stain.calibration
    assert scorer.stain_score(*_reading(pale, 0)) < 1.0  # like its class's training fields
    assert scorer.stain_score(*_reading(_stained_field(99, strength=0.7, od_scale=1.3), 0)) < 1.0  # within severity 3
    assert scorer.stain_score(*_reading(_stained_field(99, strength=0.7, od_scale=3.0), 0)) > 1.0  # far stronger
    # its red cells far stronger
    assert scorer.stain_score(*_reading(_stained_field(99, strength=0.7, red=3.0), 0)) > 1.0
    assert scorer.stain_score(*_reading(pale, 1)) < 1.0  # paler than the named class: not this check's to judge
    assert scorer.stain_score(None, 0) == 0.0 and scorer.stain_score(None, 0, None) == 0.0


def _reading(image: np.ndarray, top: int) -> tuple:
    """stain_score's arguments for `image` named class `top`."""
    from edgeleuk.runtime.quality import stain_strength

    leukocytes, red = stain_strength(image)
    return leukocytes, top, red


def test_the_run_loop_refers_a_stain_beyond_the_named_class_limit(converted, tmp_path):
    """The manifest's stain limits, set here around a field's own strength: the same fields stained 3×
    are all referred, those read and those between readings (the stain is the slide's: read on every
    8th usable frame, runtime/stain.py), while the fields as they are pass the stain check. Each
    frame's ood_score is at least the running stain score of the readings so far, as logged."""
    from edgeleuk.runtime.quality import stain_strength

    manifest = read_manifest(converted)
    normal = stain_strength(preprocess(cv2.cvtColor(_stained_field(5), cv2.COLOR_RGB2BGR), manifest.preprocess))[0]
    model = tmp_path / "model"
    shutil.copytree(converted, model)
    data = json.loads((model / "manifest.json").read_text())
    limit = round(normal + float(np.log(1.42)) + 0.1, 4)
    data["ood"]["stain"] = {
        "log_limit": [limit] * 4,
        "log_mean": [normal] * 4,
        "log_sd": [0.05] * 4,
        "calibration": "test",
    }
    (model / "manifest.json").write_text(json.dumps(data))
    logs = {}
    for name, scale in (("as_is", 1.0), ("strong", 3.0)):
        folder = tmp_path / name
        folder.mkdir()
        for i in range(10):
            cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(_stained_field(i, od_scale=scale), cv2.COLOR_RGB2BGR))
        log = tmp_path / f"{name}.jsonl"
        cli("run", "--model", str(model), "--source", str(folder), "--min-focus", "0", "--log", str(log), check_rc=0)
        logs[name] = [json.loads(x) for x in log.read_text().splitlines()]
    for name, records in logs.items():
        frames = [r for r in records if "class" in r]
        assert len(frames) == 10, name
        read = [i for i, r in enumerate(frames) if r["quality"]["stain"] is not None]
        # the first 3, then every 8th; red cells too
        assert read == [0, 1, 2, 8] and all(frames[i]["quality"]["red_stain"] is not None for i in read)
        ratios = [float(np.exp(frames[i]["quality"]["stain"] - limit)) for i in read]
        assert all(r["ood_score"] >= ratios[0] - 1e-3 for r in frames[:8])
        assert all(r["ood_score"] >= max(ratios) - 1e-3 for r in frames[8:])  # the larger of the two readings
        if name == "as_is":
            assert max(ratios) < 1.0  # the stain check passes them (the features judge them on their own)
        else:
            assert min(ratios) > 1.0 and not any(r["in_distribution"] for r in frames)
            assert records[-1]["verdict"]["decision"] == OOD_DECISION


def test_stain_monitor_reads_the_first_frames_then_every_nth_and_starts_afresh_for_a_new_sample():
    from edgeleuk.ood_stats import OODComponent, OODStats, StainStats
    from edgeleuk.runtime.quality import Quality
    from edgeleuk.runtime.stain import StainMonitor

    stain = StainStats(log_limit=(0.0, 1.0), log_mean=(0.0, 0.0), log_sd=(0.1, 0.1))
    monitor = StainMonitor(
        OODScorer(OODStats(components=(OODComponent("head", ((0.0,),), ((1.0,),), 1.0),), stain=stain)), every=2,
        window=3
    )

    def usable(reading=None, top=0):  # one usable frame after inference: its stain as `assess` read it (or not)
        due = monitor.due
        return due, monitor.update(Quality(50.0, 200.0, 0.0, 0.0, True, None, stain=reading), top)

    assert usable() == (True, 0.0)  # too few stained pixels: nothing read, the features judge alone
    # every frame is read until three readings: against class 0's limit, e^0
    assert usable(np.log(2.0)) == (True, pytest.approx(2.0))
    assert usable(np.log(4.0)) == (True, pytest.approx(4.0))  # the largest reading
    assert usable(np.log(0.5)) == (True, pytest.approx(4.0))  # a paler one does not clear it
    # then every 2nd: against class 1's limit, e^1: 2.94
    assert usable(np.log(8.0), top=1) == (True, pytest.approx(4.0))
    assert usable(9.0) == (False, pytest.approx(4.0))  # not its turn: a reading there is not counted
    assert usable(0.0) == (True, pytest.approx(8.0 / np.e))  # three readings back, 4 has left the window
    monitor.reset()
    assert monitor.due and monitor.score == 0.0 and not monitor.readings


def test_a_slide_that_gives_no_stain_reading_is_not_read_on_every_frame():
    from edgeleuk.ood_stats import OODComponent, OODStats, StainStats
    from edgeleuk.runtime.quality import Quality
    from edgeleuk.runtime.stain import StainMonitor

    stain = StainStats(log_limit=(0.0, 1.0), log_mean=(0.0, 0.0), log_sd=(0.1, 0.1))
    monitor = StainMonitor(
        OODScorer(OODStats(components=(OODComponent("head", ((0.0,),), ((1.0,),), 1.0),), stain=stain))
    )
    due = []
    for _ in range(48):  # fields without enough stained pixels: nothing is ever read
        due.append(monitor.due)
        monitor.update(Quality(50.0, 200.0, 0.0, 0.0, True, None, stain=None), 0)
    assert due[:24] == [True] * 24 and [i for i, d in enumerate(due) if d][24:] == [24, 32, 40]


def test_a_sample_too_short_for_the_ruler_says_so():
    from edgeleuk.runtime.records import Summary

    field = cv2.cvtColor(discs(15, size=(224, 224)), cv2.COLOR_BGR2RGB)
    monitor = ScaleMonitor(15.0, every=8)
    ratios = [monitor.update(rescale(field, 2.0)) for _ in range(17)]
    assert ratios[15] is None and ratios[16] > 1.7  # readings on fields 1, 9 and 17
    short = Summary(checks={"magnification": (2, 3), "stain": (3, 3)})
    assert short.unjudged() == ["the magnification check had 2 of the 3 readings it needs: not judged in this sample"]


def test_manifest_stain_limits_are_strict(converted):
    data = json.loads(json.dumps(manifest_to_dict(read_manifest(converted))))
    data["ood"]["stain"] = {"log_limit": [1.0] * 4, "log_mean": [0.5] * 4, "log_sd": [0.1] * 4, "by": "x"}
    with pytest.raises(UserError, match=r"unknown key ood\.stain\.'by'"):
        manifest_from_dict(data)
    data["ood"]["stain"] = {"log_limit": [1.0] * 3, "log_mean": [0.5] * 4, "log_sd": [0.1] * 4}
    with pytest.raises(UserError, match="one value per class"):
        manifest_from_dict(data)
    data["ood"]["stain"] = {"log_limit": [1.0] * 4, "log_mean": [0.5] * 4, "log_sd": [0.1] * 4}
    assert manifest_from_dict(data).ood.stain.log_limit == (1.0,) * 4  # converted before the red cells were read
    assert manifest_from_dict(data).ood.stain.red_log_limit is None
    data["ood"]["stain"].update(red_log_limit=[0.2] * 4, red_log_mean=[-0.4] * 4)
    with pytest.raises(UserError, match="all three or none"):
        manifest_from_dict(data)
    data["ood"]["stain"]["red_log_sd"] = [0.1] * 4
    assert manifest_from_dict(data).ood.stain.red_log_limit == (0.2,) * 4


def test_stain_limits_for_another_number_of_classes_are_refused_at_load(converted, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(converted, model)
    data = json.loads((model / "manifest.json").read_text())
    data["ood"]["stain"] = {"log_limit": [1.0] * 3, "log_mean": [0.5] * 3, "log_sd": [0.1] * 3}
    (model / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="ood.stain has 3 limits for 4 labels"):
        load(model)
