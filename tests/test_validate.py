"""Site acceptance: exact intervals, the claim test, the verdicts, the report, and its errors."""

import json

import cv2
import pytest

from conftest import LABELS, cli, smear
from edgeleuk.stats import Claim, clopper_pearson, images_needed
from edgeleuk.validate.acceptance import ANSWERED, OOD, Acceptance, FieldResult, SampleResult
from edgeleuk.validate.judge import judge


@pytest.mark.parametrize(
    "k, n, lower, upper",
    [  # scipy.stats.beta.ppf(0.025, k, n-k+1) and beta.ppf(0.975, k+1, n-k)
        (562, 566, 0.982005, 0.998071),
        (0, 10, 0.0, 0.308497),
        (10, 10, 0.691503, 1.0),
        (95, 100, 0.887165, 0.983568),
        (1, 3, 0.008404, 0.905701),
    ],
)
def test_the_exact_interval_matches_the_beta_quantiles(k, n, lower, upper):
    lo, hi = clopper_pearson(k, n)
    assert lo == pytest.approx(lower, abs=2e-6) and hi == pytest.approx(upper, abs=2e-6)


def test_images_needed_is_the_first_count_that_shows_the_claim():
    n = images_needed(99, 100, 0.97)
    assert clopper_pearson(int(0.99 * n), n)[0] >= 0.97 > clopper_pearson(int(0.99 * (n - 1)), n - 1)[0]
    assert images_needed(97, 100, 0.97) is None and images_needed(562, 566, 0.97) == 566


def _fields(label: str, right: int, wrong: int, flagged: int) -> list[FieldResult]:
    other = "b" if label == "a" else "a"
    return ([FieldResult(f"{label}/{i}.png", label, "s", ANSWERED, label, 0.95) for i in range(right)]
            + [FieldResult(f"{label}/w{i}.png", label, "s", ANSWERED, other, 0.9) for i in range(wrong)]
            + [FieldResult(f"{label}/o{i}.png", label, "s", OOD, other, 0.99) for i in range(flagged)])


def test_a_site_the_model_refuses_fails_naming_the_out_of_distribution_share_and_the_hidden_answers():
    acc = Acceptance(labels=("a", "b"), model="m", data="d", groups="none", per_sample=False,
                     fields=_fields("a", 5, 0, 45) + _fields("b", 50, 0, 0))
    doc = judge(acc, Claim(0.9))
    assert doc["result"] == "FAIL" and doc["overall"]["ood_share"] == 0.45
    assert any("45.0% out of distribution (the model's own class on them right on 0.0%)" in r for r in doc["reasons"])
    assert any(r.startswith("a: only 10.0% of its 50 fields answered") for r in doc["reasons"])


def test_a_passing_site_and_the_notes_that_do_not_fail_it():
    samples = [SampleResult("p1", "a", "a", 0.85, 10, 0, 0.8), SampleResult("p2", "b", "b", 0.99, 10, 0, 0.8)]
    acc = Acceptance(
        labels=("a", "b"), model="m", data="d", groups="folders",
        fields=_fields("a", 300, 6, 0) + _fields("b", 300, 0, 0), samples=samples
    )
    doc = judge(acc, Claim(0.95))
    assert doc["result"] == "PASS", doc["reasons"]
    assert doc["samples"]["lowest_margin"] == pytest.approx(0.05) and doc["samples"]["weak"] == ["a/p1"]
    wrong = judge(Acceptance(labels=("a", "b"), model="m", data="d", groups="folders", fields=acc.fields,
                             samples=[SampleResult("p3", "a", "b", 0.9, 10, 0, 0.8)]), Claim(0.95))
    assert wrong["result"] == "FAIL" and "a/p3 called b" in " ".join(wrong["reasons"])


def _site(root, first=500, patients=2, fields=3):
    for label in LABELS:
        for p in range(patients):
            folder = root / label / f"slide-{p}"
            folder.mkdir(parents=True)
            for f in range(fields):
                cv2.imwrite(str(folder / f"{f}.png"), smear(label, first + 10 * p + f))
    return root


def test_validate_writes_its_report_and_fails_an_unreachable_claim(converted, tmp_path):
    site = _site(tmp_path / "site")
    proc = cli("validate", str(converted), "--data", str(site), "--claim", "0.999", "--out", str(tmp_path / "v"))
    assert proc.returncode == 3, proc.stderr
    doc = json.loads((tmp_path / "v" / "validation.json").read_text())
    assert doc["result"] == "FAIL" and doc["overall"]["n"] == 24 and doc["samples"]["n"] == 8
    assert any("lower bound is below the claim 100%" in r or "not above the claim" in r for r in doc["reasons"]), doc[
        "reasons"
    ]
    assert "result: FAIL" in proc.stdout and (tmp_path / "v" / "validation.md").is_file()
    html = tmp_path / "v" / "validation.html"
    assert not html.exists() or ("<svg" in html.read_text() and "Site acceptance" in html.read_text())


@pytest.mark.parametrize("case, rc, message", [
    ("claim", 2, "Received: --claim 1.5; expected a share between 0 and 1"),
    ("unknown", 1, "unknown class folder 'Healthy'"),
    ("mixed", 1, "are in the model's"),
])
def test_bad_validate_input_is_one_clear_error_and_writes_nothing(converted, dataset, tmp_path, case, rc, message):
    import shutil

    data, args = _site(tmp_path / "site"), []
    if case == "claim":
        args = ["--claim", "1.5"]
    elif case == "unknown":
        shutil.copytree(data / "Pro", data / "Healthy")
    else:
        shutil.copy(dataset / "Pro" / "WBC-Pro-010.jpg", data / "Pro" / "slide-0" / "from-training.jpg")
    proc = cli("validate", str(converted), "--data", str(data), "--out", str(tmp_path / "v"), *args)
    assert proc.returncode == rc and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "v").exists()
