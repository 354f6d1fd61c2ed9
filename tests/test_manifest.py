import json
import re

import pytest

from edgeleuk.errors import UserError
from edgeleuk.manifest import (
    Manifest,
    Quantization,
    Variant,
    manifest_from_dict,
    manifest_to_dict,
    read_manifest,
    sha256_file,
    verify_variant,
    write_manifest,
)


def _variant(tmp_path, name="tflite-int8"):
    f = tmp_path / "m.tflite"
    f.write_bytes(b"model bytes")
    return Variant(name=name, format="tflite", file=f.name, sha256=sha256_file(f), precision="int8", input_name="x",
                   input_shape=(1, 224, 224, 3), input_dtype="uint8", output_dtype="uint8",
                   input_quantization=Quantization(1.0, 0), output_quantization=Quantization(1 / 256, 0))


def test_round_trip(tmp_path):
    m = Manifest(variants=(_variant(tmp_path),), source_model_sha256="abc")
    write_manifest(tmp_path, m)
    back = read_manifest(tmp_path)
    assert back == m
    assert back.variant("tflite-int8").output_quantization.scale == 1 / 256


def test_unknown_key_is_named(tmp_path):
    data = manifest_to_dict(Manifest(variants=(_variant(tmp_path),)))
    data["variants"][0]["colour"] = "blue"
    with pytest.raises(UserError, match="colour"):
        manifest_from_dict(data)
    data = manifest_to_dict(Manifest())
    data["extra"] = 1
    with pytest.raises(UserError, match="extra"):
        manifest_from_dict(data)


def test_newer_schema_refused():
    data = manifest_to_dict(Manifest())
    data["schema_version"] = 99
    with pytest.raises(UserError, match="newer"):
        manifest_from_dict(data)


def test_hash_mismatch_detected(tmp_path):
    v = _variant(tmp_path)
    assert verify_variant(tmp_path, v).name == "m.tflite"
    (tmp_path / "m.tflite").write_bytes(b"changed")
    with pytest.raises(UserError, match="does not match"):
        verify_variant(tmp_path, v)


def test_unknown_variant_lists_known(tmp_path):
    m = Manifest(variants=(_variant(tmp_path),))
    with pytest.raises(UserError, match="tflite-int8"):
        m.variant("onnx-int8")


def test_write_is_atomic_no_temp_left(tmp_path):
    write_manifest(tmp_path, Manifest())
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
    json.loads((tmp_path / "manifest.json").read_text())


@pytest.mark.parametrize("name", ["../../../../etc/shadow", "/abs/other.tflite", "sub/m.tflite", "..", ""])
def test_variant_files_are_plain_names_inside_the_folder(tmp_path, name):
    data = manifest_to_dict(Manifest(variants=(_variant(tmp_path),)))
    data["variants"][0]["file"] = name
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"variants\[0\]\.file=.*plain file name"):
        read_manifest(tmp_path)


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            "input_shape",
            5,
            r"manifest: variants\[0\]\.input_shape = 5 has the wrong type; expected a list, each an integer or null",
        ),
        ("size_bytes", "big", r"manifest: variants\[0\]\.size_bytes = 'big' has the wrong type; expected an integer"),
        ("labels", 3, r"manifest: manifest\.labels = 3 has the wrong type"),
        ("variants", {"a": 1}, r"manifest: manifest\.variants = \{'a': 1\} has the wrong type"),
        ("schema_version", "3", r"manifest: manifest\.schema_version = '3' has the wrong type"),
    ],
)
def test_mistyped_values_are_one_error_naming_the_key(tmp_path, key, value, message):
    data = manifest_to_dict(Manifest(variants=(_variant(tmp_path),)))
    if key in ("input_shape", "size_bytes"):
        data["variants"][0][key] = value
    else:
        data[key] = value
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match=message):
        read_manifest(tmp_path)


@pytest.mark.parametrize("key", ["sha256", "input_shape", "file"])
def test_a_missing_key_is_named(tmp_path, key):
    data = manifest_to_dict(Manifest(variants=(_variant(tmp_path),)))
    del data["variants"][0][key]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match=rf"manifest: variants\[0\] lacks '{key}'"):
        read_manifest(tmp_path)


def test_a_manifest_that_is_not_utf8_or_is_a_folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "manifest.json").write_bytes(b'{"labels": ["\xff"]}')
    with pytest.raises(UserError, match="not UTF-8 text"):
        read_manifest(tmp_path / "a")
    (tmp_path / "b" / "manifest.json").mkdir(parents=True)
    with pytest.raises(UserError, match="is a folder, not a manifest file"):
        read_manifest(tmp_path / "b")


@pytest.mark.parametrize(
    "damage, named",
    [
        (
            lambda d: d["ood"]["components"][0]["means"][0].__setitem__(3, float("nan")),
            "manifest.ood.components[0].means[0][3] = nan",
        ),
        (
            lambda d: d.__setitem__("cell_diameter_px", -16.2),
            "manifest.cell_diameter_px = -16.2; expected a number above 0",
        ),
        (lambda d: d.__setitem__("cell_diameter_px", float("nan")), "manifest.cell_diameter_px = nan"),
        (
            lambda d: d["ood"]["components"][1]["whitening"][2].__setitem__(0, 1e308),
            "whitening[2][0] = 1e+308; expected a finite",
        ),
        (lambda d: d["quality"].__setitem__("min_focus", float("inf")), "manifest.quality.min_focus = inf"),
    ],
)
def test_non_finite_or_impossible_numbers_in_a_manifest_are_named(damage, named, tmp_path):
    from edgeleuk.manifest import MANIFEST_NAME
    from edgeleuk.runtime.classifier import DEFAULT_MODEL_DIR

    data = json.loads((DEFAULT_MODEL_DIR / MANIFEST_NAME).read_text())
    damage(data)
    # json writes NaN and Infinity as bare tokens, as a damaged file may hold
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(UserError, match=re.escape(named)):
        read_manifest(tmp_path)
