"""Timing loops shared by the benchmark workers: run a call until enough samples, then percentiles."""

from __future__ import annotations

import time

import numpy as np


def time_calls(fn, warmup: int, min_runs: int, min_seconds: float, max_runs: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def stats(times: list[float], batch: int) -> dict:
    a = np.array(times)
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "runs": len(times),
        "throughput_ips": float(batch * 1000.0 / a.mean()),
    }
