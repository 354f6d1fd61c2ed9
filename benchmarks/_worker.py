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


def _pin(threads: int) -> None:
    """Pin to the first `threads` CPUs the process may use: fewer migrations, steadier figures."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cpus[: max(1, threads)])
    except (AttributeError, OSError):
        pass


def _time(fn, warmup: int, min_runs: int, min_seconds: float, max_runs: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def _stats(times: list[float], batch: int) -> dict:
    a = np.array(times)
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "runs": len(times), "throughput_ips": float(batch * 1000.0 / a.mean())}


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
    timing = dict(warmup=job["warmup"], min_runs=job["min_runs"], min_seconds=job["min_seconds"], max_runs=job["max_runs"])
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
        out.update(_accuracy(job, clf.spec, lambda images: np.concatenate([clf.predict(images[i:i + 32]) for i in range(0, len(images), 32)])))
    return out


def _accuracy(job: dict, spec, predict) -> dict:
    from pathlib import Path

    from edgeleuk.evaluation import split_images
    from edgeleuk.metrics import classification_metrics

    images, labels, note = split_images(job["data"], spec, job.get("split"), "test", Path(job["model"]))
    m = classification_metrics(labels, predict(images))
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
    timing = dict(warmup=job["warmup"], min_runs=job["min_runs"], min_seconds=job["min_seconds"], max_runs=job["max_runs"])
    out = {"load_ms": load_ms, "first_ms": first_ms, "backend_version": tf.__version__, "size_bytes": os.path.getsize(job["file"])}
    out.update(_stats(_time(lambda: call(x).numpy(), **timing), job["batch"]))
    if job.get("data"):
        from edgeleuk.manifest import read_manifest

        spec = read_manifest(job["model"]).preprocess
        out.update(_accuracy(job, spec, lambda images: model.predict(images, batch_size=32, verbose=0)))
    return out


def gpu_job(job: dict) -> dict:
    """The float model on a GPU: onnxruntime CUDA, else PyTorch + onnx2torch (eager and CUDA graph).

    Inputs wait on the GPU, as a GPU service keeps them; `host_b1` adds the copies in and out. Each
    backend's outputs are checked against onnxruntime on the CPU, so the time is of a model that is right.
    """
    onnx_file = job["file"]
    batches = (1, job["throughput_batch"])
    inputs = {b: _smears(b) for b in batches}
    oracle = _cpu_outputs(onnx_file, inputs)
    try:
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            return _ort_cuda(onnx_file, inputs, oracle)
    except ImportError:
        pass
    try:
        import torch
    except ImportError:
        return {"skipped": "no GPU backend: neither onnxruntime-gpu nor PyTorch is installed"}
    if not torch.cuda.is_available():
        return {"skipped": "no GPU: PyTorch sees no CUDA device"}
    try:
        import onnx
        from onnx2torch import convert
    except ImportError:
        return {"skipped": "GPU present but onnx2torch is not installed (pip install onnx2torch)"}
    return _torch_cuda(_static_constants(convert(onnx.load(onnx_file))), inputs, oracle)


def _static_constants(net):
    """onnx2torch keeps Pad's pads and Squeeze's axes as tensors that every call reads back to the host:
    a GPU→CPU sync that a CUDA graph cannot capture. Read these constants once, here, instead."""
    import functools

    import torch
    from onnx2torch.node_converters.pad import OnnxPadDynamic, OnnxPadStatic
    from onnx2torch.node_converters.squeeze import OnnxSqueezeDynamicAxes

    class Squeeze(torch.nn.Module):
        def __init__(self, dims: tuple[int, ...]):
            super().__init__()
            self.dims = dims

        def forward(self, x):
            return torch.squeeze(x, dim=self.dims)

    for node in net.graph.nodes:
        if node.op != "call_module" or len(node.args) != 2:
            continue
        module, const = net.get_submodule(node.target), node.args[1]
        if not (isinstance(const, torch.fx.Node) and const.op == "get_attr"):
            continue
        value = functools.reduce(getattr, const.target.split("."), net).tolist()
        if isinstance(module, OnnxPadDynamic) and module.mode == "constant":
            static = OnnxPadStatic.create_from_onnx_params(onnx_pads=value, onnx_mode="constant")
        elif isinstance(module, OnnxSqueezeDynamicAxes) and value:
            static = Squeeze(tuple(int(v) for v in value))
        else:
            continue
        net.delete_submodule(node.target)
        net.add_submodule(node.target, static)
        node.args = node.args[:1]
    net.graph.eliminate_dead_code()
    net.recompile()
    return net


def _smears(batch: int) -> np.ndarray:
    """Smear-like 224×224 images (pale background, violet cells): unlike noise they leave the softmax
    unsaturated, so the parity check compares real numbers, not ones and zeros."""
    import cv2

    rng = np.random.default_rng(batch)
    images = []
    for _ in range(batch):
        image = cv2.GaussianBlur(rng.integers(170, 250, (224, 224, 3), dtype=np.uint8), (0, 0), 2)
        for _ in range(rng.integers(1, 4)):
            center = tuple(int(v) for v in rng.integers(40, 184, 2))
            cv2.circle(image, center, int(rng.integers(15, 50)), tuple(int(v) for v in rng.integers(60, 180, 3)), -1)
        images.append(image)
    return np.stack(images).astype(np.float32)


def _cpu_outputs(onnx_file: str, inputs: dict) -> dict:
    try:
        import onnxruntime as ort
    except ImportError:
        return {}
    sess = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    return {b: sess.run(None, {sess.get_inputs()[0].name: x})[0] for b, x in inputs.items()}


def _parity(out: np.ndarray, oracle: dict, batch: int) -> dict:
    if batch not in oracle:
        return {}
    ref = oracle[batch]
    return {"max_abs_diff_vs_cpu": float(np.abs(out - ref).max()), "top1_agreement_vs_cpu": float((out.argmax(1) == ref.argmax(1)).mean())}


GPU_TIMING = dict(warmup=20, min_runs=200, min_seconds=2.0, max_runs=5000)


def _ort_cuda(onnx_file: str, inputs: dict, oracle: dict) -> dict:
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_file, providers=["CUDAExecutionProvider"])
    if "CUDAExecutionProvider" not in sess.get_providers():
        return {"skipped": "onnxruntime lists CUDA but the session fell back to the CPU (CUDA/cuDNN libraries missing?)"}
    name = sess.get_inputs()[0].name
    results = {"gpu": "onnxruntime CUDA", "backend": "onnxruntime CUDA", "backend_version": ort.__version__,
               "precision": "fp32", "input": "copied from the host in every call"}
    for batch, x in inputs.items():
        results[f"host_b{batch}"] = {**_stats(_time(lambda: sess.run(None, {name: x}), **GPU_TIMING), batch),
                                     **_parity(sess.run(None, {name: x})[0], oracle, batch)}
    results["eager_b1"] = results["host_b1"]
    return results


def _torch_cuda(net, inputs: dict, oracle: dict) -> dict:
    import torch

    torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once
    torch.backends.cudnn.allow_tf32 = False  # a true fp32 reference, as on the CPU
    torch.backends.cuda.matmul.allow_tf32 = False
    net = net.cuda().eval()
    results = {"gpu": torch.cuda.get_device_name(0), "backend": "PyTorch + onnx2torch",
               "backend_version": f"torch {torch.__version__}", "precision": "fp32 (TF32 off)",
               "input": "on the GPU already (eager_*, graph_*); host_b1 adds the copies in and out"}
    for batch, host in inputs.items():
        x = torch.from_numpy(host).cuda()

        def eager():
            with torch.inference_mode():
                net(x)
            torch.cuda.synchronize()

        with torch.inference_mode():
            out = net(x).cpu().numpy()
        results[f"eager_b{batch}"] = {**_stats(_time(eager, **GPU_TIMING), batch), **_parity(out, oracle, batch)}
        results[f"graph_b{batch}"] = _torch_graph(net, x, oracle, batch)
    frame = inputs[1].astype(np.uint8)

    def host_round_trip():
        with torch.inference_mode():
            net(torch.from_numpy(frame).cuda().float()).cpu()

    results["host_b1"] = _stats(_time(host_round_trip, **GPU_TIMING), 1)
    results["gpu_memory_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return results


def _torch_graph(net, x, oracle: dict, batch: int) -> dict:
    """Capture one forward pass as a CUDA graph and time its replay (no Python or launch overhead)."""
    import torch

    try:
        static = x.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):
                net(static)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            static_out = net(static)

        def replay():
            graph.replay()
            torch.cuda.synchronize()

        replay()
        return {**_stats(_time(replay, **GPU_TIMING), batch), **_parity(static_out.cpu().numpy(), oracle, batch)}
    except Exception as exc:  # capture can fail for some ops
        return {"skipped": f"CUDA graph capture failed: {exc.__class__.__name__}: {exc}"}


def main() -> None:
    job = json.loads(sys.argv[1])
    _pin(job.get("threads", 1))
    try:
        kind = job["kind"]
        result = runtime_job(job) if kind == "runtime" else keras_job(job) if kind == "keras" else gpu_job(job)
    except Exception as exc:  # reported as a row that says why, never a crash of the whole benchmark
        result = {"skipped": f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(result))


if __name__ == "__main__":
    main()
