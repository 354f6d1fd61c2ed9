"""Site acceptance, the judgement: figures per class with exact intervals, the claim test, the
sample verdicts, and PASS or FAIL with every reason. Device-safe: stdlib and numpy."""

from __future__ import annotations

from collections import Counter
from typing import Any

from edgeleuk.metrics import calibration_error, trailing
from edgeleuk.stats import ALPHA, Claim, clopper_pearson, images_needed
from edgeleuk.validate.acceptance import ANSWERED, OOD, Acceptance, FieldResult

WEAK_MARGIN = 0.1  # a right sample verdict that passed min_confidence by less than this is listed


def _share(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def figures(fields: list[FieldResult], claim: Claim) -> dict[str, Any]:
    """n, the answered share and the refusals by reason, accuracy with its exact interval, the claim
    test, the images it would need, ECE; and the model's raw class on flagged fields, which the
    refusal alone hides."""
    n = len(fields)
    answered = [f for f in fields if f.outcome == ANSWERED]
    flagged = [f for f in fields if f.outcome == OOD]
    k = sum(f.predicted == f.truth for f in answered)
    lo, hi = clopper_pearson(k, len(answered)) if answered else (None, None)
    needed = images_needed(k, len(answered), claim.accuracy) if answered else None
    refusals = Counter(f.outcome.removeprefix("refused: ") for f in fields if f.outcome not in (ANSWERED,))
    return {
        "n": n, "answered": len(answered), "answered_share": _share(len(answered), n),
        "refused": dict(sorted(refusals.items())), "ood_share": _share(len(flagged), n),
        "correct": k, "accuracy": _share(k, len(answered)),
        "ci95": None if lo is None else [round(lo, 4), round(hi, 4)],
        "shows_claim": lo is not None and lo >= claim.accuracy,
        "images_needed": needed, "more_images_needed": None if needed is None else max(0, needed - len(answered)),
        "ece": None if not answered else round(calibration_error([f.confidence for f in answered],
                                                                 [f.predicted == f.truth for f in answered]), 4),
        "flagged_raw_accuracy": _share(sum(f.predicted == f.truth for f in flagged), len(flagged)),
    }


def confusion(fields: list[FieldResult], labels: tuple[str, ...]) -> list[list[int]]:
    """Rows: the true class; columns: the answer (answered fields only)."""
    table = [[0] * len(labels) for _ in labels]
    for f in fields:
        if f.outcome == ANSWERED and f.predicted in labels and f.truth in labels:
            table[labels.index(f.truth)][labels.index(f.predicted)] += 1
    return table


def _name(label: str, sample: str) -> str:
    """class/sample, once: a group named by file-number runs already starts with its class."""
    return sample if sample.startswith(f"{label}/") else f"{label}/{sample}"


def _samples(acc: Acceptance) -> dict[str, Any]:
    rows = [{"sample": s.name, "class": s.truth, "decision": s.decision, "confidence": s.confidence, "frames": s.frames,
             "frames_out_of_distribution": s.ood_frames, "margin": s.margin, "wrong": s.wrong,
             "unjudged": list(s.unjudged)} for s in acc.samples]
    margins = [s.margin for s in acc.samples if s.margin is not None]
    weak = [_name(s.truth, s.name) for s in acc.samples if s.wrong or (s.margin is not None and s.margin < WEAK_MARGIN)]
    return {"n": len(rows), "right": sum(s.right for s in acc.samples), "wrong": sum(s.wrong for s in acc.samples),
            "referred": sum(not s.right and not s.wrong for s in acc.samples),
            "lowest_margin": min(margins) if margins else None, "weak": weak, "rows": rows}


def _reasons(doc: dict[str, Any], claim: Claim) -> list[str]:
    reasons = []
    total = doc["overall"]
    if total["answered_share"] is not None and total["answered_share"] < claim.min_answered:
        gate = ", ".join(f"{k} {v}" for k, v in total["refused"].items() if k != OOD)
        raw = total["flagged_raw_accuracy"]
        reasons.append(
            f"only {total['answered_share']:.1%} of {total['n']} fields answered (at least {claim.min_answered:.0%} "
            f"asked): {total['ood_share']:.1%} out of distribution"
            + ("" if raw is None else f" (the model's own class on them right on {raw:.1%})")
            + (f"; refused by the quality gate: {gate}" if gate else "")
        )
    if total["answered"] and not total["shows_claim"]:
        more = total["more_images_needed"]
        why = ("the observed accuracy is not above the claim" if more is None
               else f"{more} more answered fields at this accuracy would show it")
        reasons.append(
            f"accuracy {total['accuracy']:.2%}, exact 95% interval {total['ci95'][0]:.2%}–{total['ci95'][1]:.2%}: "
            f"its lower bound is below the claim {claim.accuracy:.0%} ({why})"
        )
    for label, row in doc["per_class"].items():
        if row["n"] == 0:
            reasons.append(f"{label}: no images, so the model's answers for it are not verified")
        elif row["ci95"] is not None and row["ci95"][1] < claim.accuracy:
            reasons.append(
                f"{label}: accuracy {row['accuracy']:.2%} on {row['answered']} answered fields; even its upper bound "
                f"{row['ci95'][1]:.2%} is below the claim"
            )
        elif row["answered_share"] < claim.min_answered:
            reasons.append(f"{label}: only {row['answered_share']:.1%} of its {row['n']} fields answered")
    if doc["samples"] and doc["samples"]["wrong"]:
        wrong = [
            f"{_name(r['class'], r['sample'])} called {r['decision']}" for r in doc["samples"]["rows"] if r["wrong"]
        ]
        reasons.append(f"{len(wrong)} sample verdict(s) name the wrong class: {', '.join(wrong[:5])}")
    if doc["samples"] and doc["samples"]["referred"] > (1 - claim.min_answered) * doc["samples"]["n"]:
        s = doc["samples"]
        reasons.append(f"{s['referred']} of {s['n']} sample verdicts refer instead of naming the class "
                       f"(at most {1 - claim.min_answered:.0%} may)")
    if not total["answered"]:
        reasons.append("no field was answered")
    return reasons


def _notes(doc: dict[str, Any], claim: Claim) -> list[str]:
    """What does not fail the site but a laboratory should read: classes not yet shown on their own,
    a class whose accuracy trails the others, right verdicts that passed narrowly."""
    notes = []
    rows = {k: v for k, v in doc["per_class"].items() if v["accuracy"] is not None}
    for label in trailing({k: v["accuracy"] for k, v in rows.items()}):
        notes.append(f"{label}: accuracy {rows[label]['accuracy']:.2%} is more than 2 points below the other classes'")
    for label, row in rows.items():
        if not row["shows_claim"]:
            more = row["more_images_needed"]
            notes.append(
                f"{label}: the claim is not shown for this class alone (lower bound {row['ci95'][0]:.2%}; "
                + (
                    "not at its observed accuracy)"
                    if more is None
                    else f"{more} more answered fields at this accuracy would)"
                )
            )
    if doc["samples"] and doc["samples"]["weak"]:
        notes.append(
            f"samples whose verdict was wrong or passed min_confidence by less than {WEAK_MARGIN}: "
            f"{', '.join(doc['samples']['weak'])}"
        )
    unjudged = [r for r in (doc["samples"] or {}).get("rows", []) if r["unjudged"]]
    if unjudged:
        notes.append(f"{len(unjudged)} sample(s) had too few readings for a slide-level check, e.g. "
                     f"{_name(unjudged[0]['class'], unjudged[0]['sample'])}: {unjudged[0]['unjudged'][0]}")
    return notes


def judge(acc: Acceptance, claim: Claim) -> dict[str, Any]:
    """The whole validation document (validation.json)."""
    doc: dict[str, Any] = {
        "model": acc.model,
        "data": acc.data,
        "labels": list(acc.labels),
        "samples_from": acc.groups,
        "claim": {
            "accuracy": claim.accuracy,
            "min_answered": claim.min_answered,
            "interval": f"exact (Clopper-Pearson), {1 - ALPHA:.0%} two-sided",
        },
        "overall": figures(acc.fields, claim),
        "per_class": {label: figures([f for f in acc.fields if f.truth == label], claim) for label in acc.labels},
        "confusion": confusion(acc.fields, acc.labels),
        "samples": _samples(acc) if acc.per_sample else None,
        "fields": [f.__dict__ for f in acc.fields],
    }
    reasons = _reasons(doc, claim)
    doc["result"] = "FAIL" if reasons else "PASS"
    doc["reasons"] = reasons
    doc["notes"] = _notes(doc, claim)
    doc["note"] = (
        "research use only: not a diagnosis. A PASS verifies this model on these images of this site, no more."
    )
    return doc
