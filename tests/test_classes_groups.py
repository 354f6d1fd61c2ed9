"""Classes come from the data; groups (patients) come from folders, a CSV or file-number runs."""

from collections import Counter
from pathlib import Path

import cv2
import pytest

from conftest import make_dataset, smear
from edgeleuk.classes import parse_classes
from edgeleuk.dataset import scan
from edgeleuk.errors import UserError
from edgeleuk.groups import assign_groups
from edgeleuk.split import make_split


def _folder(root: Path, name: str, n: int, tint: str = "Pre", start: int = 0) -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(root / name / f"img_{start + i}.png"), smear(tint, start + i + 1000 * len(name)))


def test_any_folder_names_are_the_classes_in_sorted_order(tmp_path):
    for name, tint in (("normal", "Benign"), ("lymphocyte", "Pre"), ("Blästen", "Pro")):
        _folder(tmp_path, name, 12, tint)
    found = scan(tmp_path)
    assert found.labels == ("Blästen", "lymphocyte", "normal")
    assert [s.class_index for s in found.samples if s.label == "normal"] == [2] * 12
    assert scan(tmp_path, classes="normal,Blästen,lymphocyte").labels == ("normal", "Blästen", "lymphocyte")


def test_folders_merge_into_one_label(tmp_path):
    make_dataset(tmp_path, per_class=12, folder_names={"Early": "[Malignant] early Pre-B"})
    found = scan(tmp_path, classes="healthy=Benign,blast=Early+Pre+Pro")
    assert found.labels == ("healthy", "blast")
    assert found.counts() == {"healthy": 12, "blast": 36}
    assert found.classes.folders == {"healthy": ("Benign",), "blast": ("Early", "Pre", "Pro")}
    groups = assign_groups(found, "blocks")  # the same file numbers in two merged folders are two patients
    folders = {}
    for s in found.samples:
        folders.setdefault(groups.of[s.path], set()).add(s.path.parent.name)
    assert all(len(v) == 1 for v in folders.values()) and "blast/Pre/0-19" in groups.of.values()
    assert len(set(groups.of.values())) == 4 * 7  # numbers 10-120 in runs of 20, per folder


@pytest.mark.parametrize("spec, message", [
    ("blast", r"--classes: 1 class \(blast\); a classifier needs at least 2"),
    ("a,A", "class 'A' is named twice"),
    ("a=x,b=x", "folder 'x' is given to both 'a' and 'b'"),
    ("a/b,c", "expected a non-empty name without"),
    ("a=,b", "names an empty folder"),
])
def test_bad_class_lists_are_clear_errors(spec, message):
    with pytest.raises(UserError, match=message):
        parse_classes(spec)


def test_one_class_and_a_class_under_the_minimum_name_the_counts(tmp_path):
    _folder(tmp_path / "one", "blast", 12)
    with pytest.raises(UserError, match=r"1 class \(blast\); a classifier needs at least 2"):
        scan(tmp_path / "one")
    _folder(tmp_path / "few", "blast", 12)
    _folder(tmp_path / "few", "normal", 4, "Benign")
    with pytest.raises(UserError, match=r"too few readable images in normal \(blast: 12, normal: 4\)"):
        scan(tmp_path / "few")


def test_sample_folders_are_the_groups_and_never_cross_the_split(tmp_path):
    for c, tint in (("blast", "Pro"), ("normal", "Benign")):
        for p in range(10):
            _folder(tmp_path / c, f"patient_{c}_{p}", 3, tint, start=10 * p)
    found = scan(tmp_path)
    groups = assign_groups(found)
    assert groups.source.startswith("sample folders") and len(set(groups.of.values())) == 20
    split = make_split(found.samples, seed=3, group_of=groups.of)
    sides = {}
    for s in found.samples:
        sides.setdefault(groups.of[s.path], set()).add(split.assignment[s.path])
    assert all(len(v) == 1 for v in sides.values())
    assert Counter(split.assignment.values())["train"] == 42  # 7 of each class's 10 patients


def test_a_group_in_two_classes_is_named_and_kept_whole(tmp_path):
    for c, tint in (("blast", "Pro"), ("normal", "Benign")):
        for p in range(6):
            _folder(tmp_path / c, f"patient_{p}", 3, tint, start=10 * p)  # the same patient names in both classes
    found = scan(tmp_path)
    groups = assign_groups(found, "folders")
    assert len(groups.crossing) == 6 and "hold more than one class" in groups.note()
    split = make_split(found.samples, group_of=groups.of)
    for name in groups.crossing:
        assert len({split.assignment[s.path] for s in found.samples if groups.of[s.path] == name}) == 1


def test_groups_from_a_csv_and_its_errors(tmp_path):
    make_dataset(tmp_path / "d", per_class=12)
    found = scan(tmp_path / "d")
    rows = ["file,group"] + [
        f"{s.path.relative_to(found.root).as_posix()},p{i % 8}" for i, s in enumerate(found.samples)
    ]
    (tmp_path / "g.csv").write_text("\n".join(rows) + "\n")
    groups = assign_groups(found, str(tmp_path / "g.csv"))
    assert set(groups.of.values()) == {f"p{i}" for i in range(8)} and groups.source == "g.csv"
    (tmp_path / "short.csv").write_text("\n".join(rows[:10]) + "\n")
    with pytest.raises(UserError, match="39 of 48 images are not listed"):
        assign_groups(found, str(tmp_path / "short.csv"))
    with pytest.raises(UserError, match="expected auto, folders, blocks, files or an existing CSV"):
        assign_groups(found, str(tmp_path / "nope.csv"))


def test_blocks_then_files_when_nothing_else_is_known(tmp_path):
    make_dataset(tmp_path / "d", per_class=12)
    assert assign_groups(scan(tmp_path / "d")).source == "runs of 20 file numbers"
    for c, tint in (("a", "Pro"), ("b", "Benign")):
        (tmp_path / "u" / c).mkdir(parents=True)
        for i in range(10):
            cv2.imwrite(str(tmp_path / "u" / c / f"{c}{chr(97 + i)}.png"), smear(tint, i))
    assert "no patients known" in assign_groups(scan(tmp_path / "u")).source
    _folder(tmp_path / "u" / "a", "p1", 2, "Pro")
    with pytest.raises(UserError, match="lie directly in a class folder"):
        assign_groups(scan(tmp_path / "u"), "folders")
