import shutil
from collections import Counter

import pytest

from conftest import make_dataset
from edgeleuk.classes import known_alias as class_of
from edgeleuk.dataset import file_number, scan
from edgeleuk.errors import UserError
from edgeleuk.split import make_split, read_split, write_split


def test_class_names_of_every_layout():
    assert class_of("Benign") == "Benign"
    assert class_of("[Malignant] early Pre-B") == "Early"
    assert class_of("[Malignant] Pre-B") == "Pre"
    assert class_of("[Malignant] Pro-B") == "Pro"
    assert class_of("Healthy") is None


def test_file_numbers():
    assert file_number("WBC-Malignant-Pro-012.jpg") == 12
    assert file_number("Snap_013 (2).jpg") == 13
    assert file_number("cell.jpg") is None


def test_original_parent_and_kaggle_names(tmp_path):
    names = {"Early": "[Malignant] early Pre-B", "Pre": "[Malignant] Pre-B", "Pro": "[Malignant] Pro-B"}
    make_dataset(tmp_path / "Original", per_class=12, folder_names=names)
    make_dataset(tmp_path / "Segmented", per_class=12)  # ignored
    found = scan(tmp_path)
    assert found.root.name == "Original"
    assert Counter(s.label for s in found.samples) == {"Benign": 12, "Early": 12, "Pre": 12, "Pro": 12}


def test_bad_layouts(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        scan(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no class folders"):
        scan(tmp_path / "empty")
    make_dataset(tmp_path / "d", per_class=12)
    (tmp_path / "d" / "Healthy").mkdir()  # any folder is a class: an empty one is named with every count
    with pytest.raises(
        UserError, match=r"too few readable images in Healthy \(Benign: 12, Early: 12, Healthy: 0, Pre: 12, Pro: 12\)"
    ):
        scan(tmp_path / "d")
    with pytest.raises(UserError, match="unknown class folder 'Healthy'.*--classes"):
        scan(tmp_path / "d", classes="Benign,Early,Pre,Pro")
    make_dataset(tmp_path / "few", per_class=3)
    with pytest.raises(UserError, match="too few"):
        scan(tmp_path / "few")


def test_same_file_under_two_classes_is_an_error(tmp_path):
    make_dataset(tmp_path, per_class=12)
    shutil.copy(tmp_path / "Pre" / "WBC-Pre-010.jpg", tmp_path / "Pro" / "copied.jpg")
    with pytest.raises(UserError, match="two classes"):
        scan(tmp_path)


def test_corrupt_files_skipped_and_listed(tmp_path):
    make_dataset(tmp_path, per_class=12)
    (tmp_path / "Pre" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    found = scan(tmp_path)
    assert [p.name for p, _ in found.skipped] == ["broken.jpg"]
    assert "truncated" in found.skipped[0][1]


def test_an_image_with_too_many_pixels_is_skipped_with_its_reason(tmp_path):
    from conftest import huge_png

    root = make_dataset(tmp_path / "d", per_class=12)
    huge_png(root / "Pre" / "WBC-Pre-999.png")
    found = scan(root)
    assert [(p.name, why) for p, why in found.skipped] == [
        ("WBC-Pre-999.png", "too many pixels to decode (over 134 megapixels)")
    ]


def test_split_is_deterministic_stratified_and_keeps_blocks_together(tmp_path):
    make_dataset(tmp_path, per_class=40)
    # a byte-identical pair far apart in numbering must stay together
    shutil.copy(tmp_path / "Pro" / "WBC-Pro-010.jpg", tmp_path / "Pro" / "WBC-Pro-990.jpg")
    found = scan(tmp_path)
    a, b = make_split(found.samples, seed=1), make_split(found.samples, seed=1)
    assert a.assignment == b.assignment
    parts = Counter(a.assignment.values())
    n = len(found.samples)
    assert abs(parts["train"] / n - 0.7) < 0.08 and abs(parts["test"] / n - 0.2) < 0.08 and parts["val"] > 0
    by_block = {}
    for s in found.samples:
        by_block.setdefault((s.label, s.number // 20), set()).add(a.assignment[s.path])
    assert all(len(p) == 1 for p in by_block.values())
    pro = {s.path.name: a.assignment[s.path] for s in found.samples if s.label == "Pro"}
    assert pro["WBC-Pro-010.jpg"] == pro["WBC-Pro-990.jpg"]
    for label in ("Benign", "Early", "Pre", "Pro"):
        assert {a.assignment[s.path] for s in found.samples if s.label == label} == {"train", "test", "val"}


def test_split_file_round_trip_and_mismatch(tmp_path):
    make_dataset(tmp_path / "d", per_class=20)
    found = scan(tmp_path / "d")
    split = make_split(found.samples)
    write_split(tmp_path / "split.json", split, found.samples, found.root)
    assert read_split(tmp_path / "split.json", found.samples, found.root).assignment == split.assignment
    (tmp_path / "d" / "Pre" / "WBC-Pre-010.jpg").write_bytes((tmp_path / "d" / "Pre" / "WBC-Pre-020.jpg").read_bytes())
    changed = scan(tmp_path / "d")
    with pytest.raises(UserError, match="differs"):
        read_split(tmp_path / "split.json", changed.samples, changed.root)


@pytest.mark.parametrize("kind, message", [
    ("missing", "split file {p} does not exist"),
    ("folder", "split file {p} is a folder, not a file"),
    ("latin1", "{p}: not UTF-8 text (a split.json is UTF-8)"),
    ("not json", "{p} is not an edgeleuk split.json"),
])
def test_unreadable_split_files_are_one_clear_error(tmp_path, kind, message):
    make_dataset(tmp_path / "d", per_class=12)
    found = scan(tmp_path / "d")
    path = tmp_path / "split.json"
    if kind == "folder":
        path.mkdir()
    elif kind == "latin1":
        path.write_bytes('{"files": ["é"]}'.encode("latin-1"))
    elif kind == "not json":
        path.write_text("[1, 2")
    with pytest.raises(UserError) as info:
        read_split(path, found.samples, found.root)
    assert str(info.value).startswith(message.format(p=path))
