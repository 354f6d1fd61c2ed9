"""Site acceptance, the report: validation.json, validation.md, and on the host one self-contained
validation.html with the plots (inline SVG; it opens in any browser, offline)."""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

from edgeleuk.files import atomic_write_text

Table = tuple[list[str], list[list[str]]]


def _pct(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v * 100:.{digits}f}%"


def _class_row(name: str, r: dict[str, Any]) -> list[str]:
    refused = ", ".join(f"{k} {v}" for k, v in r["refused"].items()) or "—"
    ci = "—" if r["ci95"] is None else f"{_pct(r['ci95'][0])}–{_pct(r['ci95'][1])}"
    more = (
        "—"
        if r["answered"] == 0
        else ("never at this accuracy" if r["more_images_needed"] is None else str(r["more_images_needed"]))
    )
    return [
        name,
        str(r["n"]),
        _pct(r["answered_share"]),
        refused,
        _pct(r["accuracy"], 2),
        ci,
        "yes" if r["shows_claim"] else "no",
        more,
        "—" if r["ece"] is None else f"{r['ece']:.3f}",
        _pct(r["flagged_raw_accuracy"]),
    ]


def tables(doc: dict[str, Any]) -> dict[str, Table]:
    """The report's tables, rendered alike in Markdown and HTML."""
    head = ["class", "n", "answered", "not answered (reason: fields)", "accuracy (answered)", "exact 95% interval",
            f"shows {doc['claim']['accuracy']:.0%}", "more fields needed", "ECE", "raw class right on flagged fields"]
    rows = [_class_row(k, v) for k, v in doc["per_class"].items()] + [_class_row("all", doc["overall"])]
    labels = doc["labels"]
    out = {
        "Per class": (head, rows),
        "Confusion (answered fields; rows: true class, columns: answer)": (
            ["", *labels],
            [[a, *map(str, r)] for a, r in zip(labels, doc["confusion"])],
        ),
    }
    if doc["samples"]:
        out["Samples (the verdict `run` gives, pooling the sample's fields)"] = (
            ["sample", "class", "verdict", "confidence", "fields answered", "flagged", "margin over min_confidence"],
            [
                [
                    r["sample"],
                    r["class"],
                    r["decision"] + (" ✗" if r["wrong"] else ""),
                    _pct(r["confidence"]),
                    str(r["frames"]),
                    str(r["frames_out_of_distribution"]),
                    "—" if r["margin"] is None else f"{r['margin']:.3f}",
                ]
                for r in doc["samples"]["rows"]
            ],
        )
    return out


def _summary_lines(doc: dict[str, Any]) -> list[str]:
    claim = doc["claim"]
    lines = [
        f"model: {doc['model']}",
        f"data: {doc['data']} ({doc['overall']['n']} fields; samples: {doc['samples_from']})",
        f"claim: accuracy ≥ {claim['accuracy']:.0%} shown by the lower bound of the {claim['interval']} interval; "
        f"at least {claim['min_answered']:.0%} of fields answered",
    ]
    s = doc["samples"]
    if s:
        low = "—" if s["lowest_margin"] is None else f"{s['lowest_margin']:.3f}"
        lines.append(f"samples: {s['right']} of {s['n']} verdicts right, {s['wrong']} wrong, {s['referred']} referred; "
                     f"lowest margin of a right verdict {low}")
    lines.append(f"result: {doc['result']}")
    lines += [f"  - {r}" for r in doc["reasons"]] or ["  - every check passed"]
    lines += [f"note: {n}" for n in doc["notes"]]
    return lines


def to_markdown(doc: dict[str, Any]) -> str:
    parts = [
        f"# Site acceptance: {doc['result']}",
        "",
        *[f"- {line}" if not line.startswith("  ") else line for line in _summary_lines(doc)],
    ]
    for title, (head, rows) in tables(doc).items():
        parts += ["", f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        parts += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(parts + ["", f"_{doc['note']}_", ""])


def _svg_plots(doc: dict[str, Any]) -> list[str]:
    """Per-class accuracy with its exact interval against the claim, and the confusion matrix, as SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [k for k, v in doc["per_class"].items() if v["ci95"]]
    fig, (ax, cm) = plt.subplots(1, 2, figsize=(10, 3.8))
    acc = [doc["per_class"][k]["accuracy"] for k in labels]
    err = [
        [a - doc["per_class"][k]["ci95"][0] for a, k in zip(acc, labels)],
        [doc["per_class"][k]["ci95"][1] - a for a, k in zip(acc, labels)],
    ]
    ax.errorbar(range(len(labels)), acc, yerr=err, fmt="o", capsize=5, color="#1f5fa8")
    ax.axhline(doc["claim"]["accuracy"], color="#c0392b", ls="--", label=f"claim {doc['claim']['accuracy']:.0%}")
    ax.set_xticks(range(len(labels)), labels, rotation=20)
    ax.set_ylim(
        max(0.0, min([doc["claim"]["accuracy"], *[doc["per_class"][k]["ci95"][0] for k in labels]]) - 0.05), 1.005
    )
    ax.set_title("accuracy on answered fields, exact 95% interval")
    ax.legend(loc="lower left")
    cm.imshow(doc["confusion"], cmap="Blues")
    for i, row in enumerate(doc["confusion"]):
        for j, v in enumerate(row):
            cm.text(j, i, str(v), ha="center", va="center")
    cm.set_xticks(range(len(doc["labels"])), doc["labels"], rotation=20)
    cm.set_yticks(range(len(doc["labels"])), doc["labels"])
    cm.set_xlabel("answer")
    cm.set_ylabel("true class")
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    text = buffer.getvalue()
    return [text[text.index("<svg"):]]


def to_html(doc: dict[str, Any]) -> str:
    colour = "#1e8449" if doc["result"] == "PASS" else "#c0392b"
    body = [f"<h1>Site acceptance: <span style='color:{colour}'>{doc['result']}</span></h1><ul>"]
    body += [f"<li>{html.escape(line.strip().removeprefix('- '))}</li>" for line in _summary_lines(doc)] + ["</ul>"]
    body += _svg_plots(doc)
    for title, (head, rows) in tables(doc).items():
        body.append(
            f"<h2>{html.escape(title)}</h2><table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
        )
        body += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
        body.append("</table>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em "
        "auto;color:#222}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px "
        "8px;text-align:right}th{background:#f2f2f2}svg{max-width:100%;height:auto}"
    )
    return (
        f"<!doctype html><html lang='en'><meta charset='utf-8'><title>edgeleuk site acceptance: {doc['result']}</title>"
        f"<style>{style}</style><body>{''.join(body)}<p><em>{html.escape(doc['note'])}</em></p></body></html>\n"
    )


def write_report(doc: dict[str, Any], out: Path) -> list[Path]:
    """validation.json and validation.md; validation.html where matplotlib is installed (the host)."""
    written = [out / "validation.json", out / "validation.md"]
    atomic_write_text(written[0], json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(written[1], to_markdown(doc))
    try:
        page = to_html(doc)
    except ImportError:  # the device: no matplotlib, no page
        return written
    atomic_write_text(out / "validation.html", page)
    return written + [out / "validation.html"]


def terminal(doc: dict[str, Any]) -> str:
    head, rows = tables(doc)["Per class"]
    keep = [0, 1, 2, 4, 5, 6, 7]
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in keep]
    lines = ["  ".join(head[i].ljust(w) for i, w in zip(keep, widths))]
    lines += ["  ".join(r[i].ljust(w) for i, w in zip(keep, widths)) for r in rows]
    return "\n".join(lines + _summary_lines(doc))
