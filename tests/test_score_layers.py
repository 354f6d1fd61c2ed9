"""The out-of-distribution score as the TFLite and ONNX files' own layers: the same scores as numpy,
used only when built from the manifest's statistics, and removable for a benchmark's baseline."""

import dataclasses
import json
import shutil

import numpy as np
import pytest

from edgeleuk.export.score_layers import strip_onnx, strip_tflite
from edgeleuk.manifest import manifest_from_dict, manifest_to_dict, read_manifest, sha256_file, write_manifest
from edgeleuk.ood import score_output_name
from edgeleuk.runtime import load
from test_ood import _far_images, _training_like


def _frames(spec) -> np.ndarray:
    return np.concatenate([_training_like(spec, 12), _far_images(spec.size, 12)])


@pytest.mark.parametrize("variant", ["tflite-int8", "tflite-fp32", "onnx-int8", "onnx-fp32"])
def test_score_layers_give_the_numpy_score_and_decisions(converted, variant):
    clf = load(converted, variant=variant)
    assert clf.backend.output_names[clf.score_index] == score_output_name(clf.ood.stats)
    frames = _frames(clf.spec)
    probs, own = clf.infer_judged(frames)  # one batch of 24
    reference_probs, features = clf.infer(frames)
    reference = clf.ood.score(features)
    np.testing.assert_allclose(own, reference, rtol=1e-5)
    np.testing.assert_array_equal(probs, reference_probs)
    assert clf.ood.in_distribution(own).tolist() == clf.ood.in_distribution(reference).tolist()
    assert 0 < clf.ood.in_distribution(own).sum() < len(frames)  # both kinds present: the check could fail
    one = clf.infer_judged(frames[-1])[1]  # batch of one, as the run loop calls it
    np.testing.assert_allclose(one, reference[-1:], rtol=1e-5)
    listed = read_manifest(converted).variant(variant)
    assert listed.metrics["score_layers_max_diff"] <= 1e-4  # convert checked the same on its validation views


@pytest.mark.parametrize("variant", ["tflite-int8", "onnx-int8", "onnx-fp32"])
def test_every_packaged_file_scores_in_its_own_layers(variant):
    """A partial re-conversion refits the statistics: every shipped file must still carry layers built
    from the manifest's, or the device scores with numpy and says so at every start."""
    from edgeleuk.runtime.classifier import DEFAULT_MODEL_DIR

    clf = load(DEFAULT_MODEL_DIR, variant=variant)
    assert clf.score_index is not None and clf.backend.output_names[clf.score_index] == score_output_name(clf.ood.stats)


def test_other_statistics_than_the_layers_score_with_numpy(converted, tmp_path, capfd):
    """A manifest whose thresholds were changed after conversion: the layers would answer for the
    old ones, so the runtime says so and scores with numpy, under the new thresholds."""
    folder = tmp_path / "edited"
    shutil.copytree(converted, folder)
    manifest = read_manifest(folder)
    components = tuple(dataclasses.replace(c, threshold=c.threshold * 2) for c in manifest.ood.components)
    write_manifest(folder, dataclasses.replace(manifest, ood=dataclasses.replace(manifest.ood, components=components)))
    clf = load(folder, variant="tflite-int8")
    assert clf.score_index is None and "score layers were built from other statistics" in capfd.readouterr().err
    original = load(converted, variant="tflite-int8")
    frames = _frames(clf.spec)
    np.testing.assert_allclose(clf.infer_judged(frames)[1], original.infer_judged(frames)[1] / 2, rtol=1e-4)


def test_a_model_without_statistics_reads_neither_layers_nor_features(converted, tmp_path):
    folder = tmp_path / "bare"
    shutil.copytree(converted, folder)
    data = manifest_to_dict(read_manifest(folder))
    data["ood"] = None
    write_manifest(folder, manifest_from_dict(json.loads(json.dumps(data))))
    clf = load(folder, variant="tflite-int8")
    # the layers are not taken for features
    assert clf.ood is None and clf.score_index is None and len(clf.features_indices) == 2
    probs, scores = clf.infer_judged(_frames(clf.spec))
    assert scores is None and probs.shape == (24, 4)


# editing ONNX needs onnx: host side
@pytest.mark.parametrize("variant", ["tflite-int8", pytest.param("onnx-int8", marks=pytest.mark.host)])
def test_strip_removes_only_the_score_layers(converted, tmp_path, variant):
    folder = tmp_path / "stripped"
    shutil.copytree(converted, folder)
    manifest = read_manifest(folder)
    listed = manifest.variant(variant)
    path = folder / listed.file
    if path.suffix == ".tflite":
        path.write_bytes(strip_tflite(path.read_bytes()))
    else:
        strip_onnx(path, path)
    variants = tuple(
        dataclasses.replace(v, sha256=sha256_file(path)) if v.name == variant else v for v in manifest.variants
    )
    write_manifest(folder, dataclasses.replace(manifest, variants=variants))
    before, after = load(converted, variant=variant), load(folder, variant=variant)
    assert after.score_index is None and len(after.backend.output_names) == len(before.backend.output_names) - 1
    frames = before.prepare(_frames(before.spec)[:1])
    assert all(np.array_equal(a, b) for a, b in zip(after.backend.invoke(frames), before.backend.invoke(frames)))
    np.testing.assert_allclose(
        after.infer_judged(_frames(before.spec))[1], before.infer_judged(_frames(before.spec))[1], rtol=1e-5
    )
