"""The GPU reference: the float model on a GPU machine (onnxruntime CUDA, else PyTorch + onnx2torch),
each backend's outputs checked against onnxruntime on the CPU. Run by `latency.py --gpu-only` through
_worker.py; nothing here runs on the device."""

from __future__ import annotations

import numpy as np

from timing import stats as _stats
from timing import time_calls as _time


def gpu_job(job: dict) -> dict:
    """The float model on a GPU: onnxruntime CUDA, else PyTorch + onnx2torch (eager and CUDA graph).

    Inputs wait on the GPU, as a GPU service keeps them; `host_b1` adds the copies in and out. Each
    backend's outputs are checked against onnxruntime on the CPU, so the time is of a model that is right.
    """
    onnx_file = job["file"]
    try:
        import onnxruntime as ort

        ort_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    except ImportError:
        ort_cuda = False
    if not ort_cuda:  # say why before any work: no oracle run on the CPU for a GPU that is not there
        try:
            import torch
        except ImportError:
            return {"skipped": "no GPU backend: neither onnxruntime-gpu nor PyTorch is installed"}
        if not torch.cuda.is_available():
            return {"skipped": "no GPU: PyTorch sees no CUDA device"}
    batches = (1, job["throughput_batch"])
    inputs = {b: _smears(b, _input_size(onnx_file)) for b in batches}
    oracle = _cpu_outputs(onnx_file, inputs)
    if ort_cuda:
        return _ort_cuda(onnx_file, inputs, oracle)
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


def _input_size(onnx_file: str) -> int:
    """The model's input side (the file says; 224 when it leaves it open)."""
    try:
        import onnxruntime as ort

        shape = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"]).get_inputs()[0].shape
        return int(shape[1]) if isinstance(shape[1], int) else 224
    except (ImportError, IndexError):
        return 224


def _smears(batch: int, size: int = 224) -> np.ndarray:
    """Smear-like images (pale background, violet cells): unlike noise they leave the softmax
    unsaturated, so the parity check compares real numbers, not ones and zeros."""
    import cv2

    rng = np.random.default_rng(batch)
    images = []
    for _ in range(batch):
        image = cv2.GaussianBlur(rng.integers(170, 250, (224, 224, 3), dtype=np.uint8), (0, 0), 2)
        for _ in range(rng.integers(1, 4)):
            center = tuple(int(v) for v in rng.integers(40, 184, 2))
            cv2.circle(image, center, int(rng.integers(15, 50)), tuple(int(v) for v in rng.integers(60, 180, 3)), -1)
        images.append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA) if size != 224 else image)
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
    return {
        "max_abs_diff_vs_cpu": float(np.abs(out - ref).max()),
        "top1_agreement_vs_cpu": float((out.argmax(1) == ref.argmax(1)).mean()),
    }


GPU_TIMING = dict(warmup=20, min_runs=200, min_seconds=2.0, max_runs=5000)


def _ort_cuda(onnx_file: str, inputs: dict, oracle: dict) -> dict:
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_file, providers=["CUDAExecutionProvider"])
    if "CUDAExecutionProvider" not in sess.get_providers():
        return {
            "skipped": "onnxruntime lists CUDA but the session fell back to the CPU (CUDA/cuDNN libraries missing?)"
        }
    name = sess.get_inputs()[0].name
    results = {"gpu": "onnxruntime CUDA", "backend": "onnxruntime CUDA", "backend_version": ort.__version__,
               "precision": "fp32", "input": "copied from the host in every call"}
    for batch, x in inputs.items():
        results[f"host_b{batch}"] = {**_stats(_time(lambda x=x: sess.run(None, {name: x}), **GPU_TIMING), batch),
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

        def eager(x=x):
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
