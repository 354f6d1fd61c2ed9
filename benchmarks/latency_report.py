"""The latency benchmark's tables and chart: results.md and the terminal (`table`, `gpu_line`),
latency.png (`chart`) and the columns of results.csv (`FIELDS`)."""

from __future__ import annotations

from pathlib import Path

from edgeleuk.files import atomic_path


def _fmt(v, spec: str = ".2f", unit: str = "") -> str:
    return "—" if v is None else f"{v:{spec}}{unit}"


def table(rows: list[dict], gpu: dict) -> str:
    eager = (gpu.get("eager_b1") or {}).get("p50_ms")
    graph = (gpu.get("graph_b1") or {}).get("p50_ms")
    head = ("| variant | backend | thr | batch | size MB | accuracy | p50 ms | p90 ms | p99 ms | bare invoke ms | "
            "720p e2e ms | FPS | RSS MB | load ms | first ms | ×GPU eager | ×GPU graph |")
    out = [head, "|" + "---|" * 17]
    for r in rows:
        if "skipped" in r:
            out.append(
                f"| {r['variant']} | {r['backend']} | {r['threads']} | {r['batch']} | — | — | skipped: {r['skipped']} |"
                + " |" * 10
            )
            continue
        per_image = r["p50_ms"] / r["batch"]
        out.append(
            "| "
            + " | ".join(
                [
                    r["variant"],
                    r["backend"],
                    str(r["threads"]),
                    str(r["batch"]),
                    _fmt(r.get("size_bytes", 0) / 1e6),
                    _fmt(r.get("accuracy") and r["accuracy"] * 100, ".2f", "%"),
                    _fmt(r["p50_ms"]),
                    _fmt(r["p90_ms"]),
                    _fmt(r["p99_ms"]),
                    _fmt(r.get("bare_p50_ms")),
                    _fmt(r.get("e2e_p50_ms")),
                    _fmt(r["throughput_ips"], ".0f"),
                    _fmt(r.get("peak_rss_mb"), ".0f"),
                    _fmt(r.get("load_ms"), ".0f"),
                    _fmt(r.get("first_ms"), ".1f"),
                    _fmt(per_image / eager if eager and r["batch"] == 1 else None, ".2f", "×"),
                    _fmt(per_image / graph if graph and r["batch"] == 1 else None, ".2f", "×"),
                ]
            )
            + " |"
        )
    return "\n".join(out)


def gpu_line(gpu: dict) -> str:
    if "skipped" in gpu:
        return f"GPU reference: skipped: {gpu['skipped']}"
    parts = [f"{k}: p50 {v['p50_ms']:.3f} ms" for k, v in gpu.items() if isinstance(v, dict) and "p50_ms" in v]
    return f"GPU reference ({gpu.get('gpu')}, {gpu.get('backend_version')}, {gpu.get('source')}): " + "; ".join(parts)


def chart(rows: list[dict], gpu: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if "skipped" not in r and r["batch"] == 1]
    if not done:
        return
    labels = [f"{r['variant']}\n{r['backend']} ×{r['threads']}" for r in done]
    p50 = [r["p50_ms"] for r in done]
    p99 = [r["p99_ms"] - r["p50_ms"] for r in done]
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.45 * len(done)))
    ax.barh(range(len(done)), p50, xerr=[[0] * len(done), p99], color="#4c72b0", capsize=3)
    ax.set_yticks(range(len(done)), labels, fontsize=7)
    for key, style in (("eager_b1", "--"), ("graph_b1", ":")):
        if isinstance(gpu.get(key), dict) and "p50_ms" in gpu[key]:
            where = gpu.get("gpu") if gpu.get("source") == "measured here" else f"{gpu.get('gpu')}, recorded"
            ax.axvline(
                gpu[key]["p50_ms"], color="#c44e52", linestyle=style, label=f"GPU fp32 {key.split('_')[0]} ({where})"
            )
    ax.set_xscale("log")
    ax.set_xlabel("batch-1 latency, ms (bar: p50, whisker: p99)")
    ax.legend(fontsize=7, loc="lower right") if ax.get_legend_handles_labels()[0] else None
    ax.invert_yaxis()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)


FIELDS = (
    "variant",
    "backend",
    "threads",
    "batch",
    "size_bytes",
    "accuracy",
    "macro_f1",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "rounds_used",
    "runs",
    "throughput_ips",
    "bare_p50_ms",
    "e2e_p50_ms",
    "peak_rss_mb",
    "load_ms",
    "first_ms",
    "backend_version",
    "skipped",
)
