"""One timing job in its own process (so peak RSS is its own): `python _worker.py '<json job>'`.

Prints one JSON object on its last line. Device-safe unless the job is the Keras (TensorFlow) row.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import stats as _stats  # noqa: E402
from timing import time_calls as _time


def _pin(threads: int) -> None:
    """Pin to the first `threads` CPUs the process may use: fewer migrations, steadier figures."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cpus[: max(1, threads)])
    except (AttributeError, OSError):
        pass


def _frame_jpeg() -> bytes:
    """A camera-sized (1280×720) smear-like frame, MJPG-compressed as a USB camera sends it."""
    import cv2

    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(150, 255, (720, 1280, 3), dtype=np.uint8), (0, 0), 3)
    cv2.circle(frame, (640, 360), 120, (150, 60, 120), -1)
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def runtime_job(job: dict) -> dict:
    import cv2

    from edgeleuk.preprocess import preprocess
    from edgeleuk.runtime import load

    t0 = time.perf_counter()
    clf = load(job["model"], variant=job["variant"], backend=job.get("backend"), threads=job["threads"])
    load_ms = (time.perf_counter() - t0) * 1000
    size = clf.spec.size
    x = np.random.default_rng(1).integers(0, 256, (job["batch"], size, size, 3), dtype=np.uint8)
    t0 = time.perf_counter()
    clf.predict(x)
    first_ms = (time.perf_counter() - t0) * 1000
    out = {"load_ms": load_ms, "first_ms": first_ms, "backend_version": clf.backend.version, "file": str(clf.path),
           "size_bytes": clf.path.stat().st_size}
    timing = dict(
        warmup=job["warmup"], min_runs=job["min_runs"], min_seconds=job["min_seconds"], max_runs=job["max_runs"]
    )
    out.update(_stats(_time(lambda: clf.predict(x), **timing), job["batch"]))
    if job["batch"] == 1:
        raw = clf.prepare(x)
        b = clf.backend
        if hasattr(b, "interpreter"):
            b.set_input(raw)
            bare = _stats(_time(b.interpreter.invoke, **timing), 1)
        else:
            bare = _stats(_time(lambda: b.invoke(raw), **timing), 1)
        out["bare_p50_ms"] = bare["p50_ms"]
        jpeg = np.frombuffer(_frame_jpeg(), dtype=np.uint8)

        def end_to_end():
            frame = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
            return clf.predict(preprocess(frame, clf.spec))

        e2e = _stats(_time(end_to_end, **timing), 1)
        out["e2e_p50_ms"] = e2e["p50_ms"]
    if job.get("data"):
        out.update(
            _accuracy(
                job, clf.spec,
                lambda images: np.concatenate([clf.predict(images[i : i + 32]) for i in range(0, len(images), 32)])
            )
        )
    return out


def _accuracy(job: dict, spec, predict) -> dict:
    from pathlib import Path

    from edgeleuk.evaluate.report import model_classes, split_images
    from edgeleuk.metrics import classification_metrics

    classes = model_classes(job["model"])
    images, labels, _, _ = split_images(job["data"], spec, job.get("split"), "test", Path(job["model"]), classes)
    m = classification_metrics(labels, predict(images), classes.labels)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "accuracy_n": m["n"]}


def keras_job(job: dict) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(job["threads"])
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    t0 = time.perf_counter()
    model = keras.models.load_model(job["file"], compile=False)
    call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)  # compiled graph, not eager predict
    load_ms = (time.perf_counter() - t0) * 1000
    size = int(model.input_shape[1])
    x = tf.constant(np.random.default_rng(1).integers(0, 256, (job["batch"], size, size, 3)).astype(np.float32))
    t0 = time.perf_counter()
    call(x).numpy()
    first_ms = (time.perf_counter() - t0) * 1000
    timing = dict(
        warmup=job["warmup"], min_runs=job["min_runs"], min_seconds=job["min_seconds"], max_runs=job["max_runs"]
    )
    out = {
        "load_ms": load_ms,
        "first_ms": first_ms,
        "backend_version": tf.__version__,
        "size_bytes": os.path.getsize(job["file"]),
    }
    out.update(_stats(_time(lambda: call(x).numpy(), **timing), job["batch"]))
    if job.get("data"):
        from edgeleuk.manifest import read_manifest

        spec = read_manifest(job["model"]).preprocess
        out.update(_accuracy(job, spec, lambda images: model.predict(images, batch_size=32, verbose=0)))
    return out


def main() -> None:
    job = json.loads(sys.argv[1])
    _pin(job.get("threads", 1))
    try:
        kind = job["kind"]
        if kind == "gpu":
            from gpu_reference import gpu_job

            result = gpu_job(job)
        else:
            result = runtime_job(job) if kind == "runtime" else keras_job(job)
    except Exception as exc:  # reported as a row that says why, never a crash of the whole benchmark
        result = {"skipped": f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(result))


if __name__ == "__main__":
    main()
