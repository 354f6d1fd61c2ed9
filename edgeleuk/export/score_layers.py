"""The out-of-distribution score as layers of the exported TFLite and ONNX files, so the runtime computes
it with the features, in the interpreter, instead of many small numpy calls that run with caches cold
after inference (the saving: benchmarks/README.md, what the score costs).

Float layers are appended after the file's own (quantized) feature outputs, which stay as they are:
dequantize, each space's whitening, concatenate, the squared differences to every class centre, one
matrix summing each space's share over its dims × threshold², then the min over classes, the max
over spaces and a square root: `OODScorer.score`'s arithmetic, its block-diagonal whitening as one
product per block. The output's name
carries the statistics' fingerprint (`ood.score_output_name`), so a runtime whose manifest holds
other statistics scores with numpy instead. Uses the flatbuffer schema that ships with ai-edge-litert
(no TensorFlow), which `strip_tflite` also needs on a device; ONNX files are edited with `onnx`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeleuk.errors import UserError
from edgeleuk.ood import SCORE_OUTPUT, OODScorer, score_output_name
from edgeleuk.ood_stats import OODStats
from edgeleuk.runtime.backends import output_roles

PREFIX = "ood/"  # the appended tensors' names


def tflite_schema():
    try:
        import flatbuffers
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise UserError(
            "the score layers need ai-edge-litert's flatbuffer schema: pip install ai-edge-litert"
        ) from None
    return flatbuffers, schema


def read_tflite(data: bytes):
    _, schema = tflite_schema()
    return schema.ModelT.InitFromPackedBuf(bytearray(data), 0)


def write_tflite(model) -> bytes:
    flatbuffers, _ = tflite_schema()
    builder = flatbuffers.Builder(len(model.buffers) * 64 + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


class GraphEditor:
    """Appends tensors, constants and operators to a model's first subgraph."""

    def __init__(self, model, schema):
        self.model, self.schema, self.graph = model, schema, model.subgraphs[0]

    def tensor(self, name: str, shape: list[int], constant: np.ndarray | None = None, batch: bool = True) -> int:
        s = self.schema
        t = s.TensorT()
        t.name, t.type = (PREFIX + name).encode(), s.TensorType.FLOAT32
        if constant is not None:
            constant = constant if constant.dtype == np.int32 else constant.astype(np.float32)
            t.type = s.TensorType.INT32 if constant.dtype == np.int32 else s.TensorType.FLOAT32
        t.shape = np.array(shape, np.int32)
        if batch and constant is None:
            t.shapeSignature = np.array([-1, *shape[1:]], np.int32)  # any batch, as the input allows
        buffer = s.BufferT()
        if constant is not None:
            buffer.data = np.frombuffer(np.ascontiguousarray(constant).tobytes(), np.uint8)
        self.model.buffers.append(buffer)
        t.buffer = len(self.model.buffers) - 1
        self.graph.tensors.append(t)
        return len(self.graph.tensors) - 1

    def op(self, code: int, inputs: list[int], outputs: list[int], options_type: int = 0, options=None) -> None:
        s = self.schema
        opcode = s.OperatorCodeT()
        opcode.builtinCode, opcode.deprecatedBuiltinCode, opcode.version = code, min(code, 127), 1
        self.model.operatorCodes.append(opcode)
        op = s.OperatorT()
        op.opcodeIndex = len(self.model.operatorCodes) - 1
        op.inputs, op.outputs = np.array(inputs, np.int32), np.array(outputs, np.int32)
        op.builtinOptionsType, op.builtinOptions = options_type, options
        self.graph.operators.append(op)


def append_tflite(data: bytes, stats: OODStats) -> bytes:
    """The TFLite flatbuffer `data` with the score as one more output, [batch, 1] float32."""
    _, s = tflite_schema()
    model = read_tflite(data)
    g = GraphEditor(model, s)
    outputs = [int(i) for i in g.graph.outputs]
    sizes = [int(g.graph.tensors[i].shape[-1]) for i in outputs]
    _, features = output_roles(sizes, len(stats.components[0].means), stats.dims, "the converted file")
    whitenings, centres, space_sum = OODScorer(stats).matrices
    (classes, total), spaces = centres.shape, space_sum.shape[1]
    B, Opts = s.BuiltinOperator, s.BuiltinOptions
    parts = []
    for k, (i, whitening) in enumerate(zip(features, whitenings)):
        source = outputs[i]
        if g.graph.tensors[source].type != s.TensorType.FLOAT32:  # float variants: the features as they are
            source = g.tensor(f"features{k}", [1, sizes[i]])
            g.op(B.DEQUANTIZE, [outputs[i]], [source], Opts.DequantizeOptions, s.DequantizeOptionsT())
        # each space whitened apart, not by one block-diagonal matrix: half the weights to fetch, which
        # is what the product costs with caches cold after the model
        parts.append(g.tensor(f"whitened{k}", [1, sizes[i]]))
        g.op(
            B.FULLY_CONNECTED, [source, g.tensor(f"whitening{k}", list(whitening.shape), whitening.T.copy()), -1],
            [parts[-1]], Opts.FullyConnectedOptions, s.FullyConnectedOptionsT()
        )  # FULLY_CONNECTED's weights are [out, in]
    whitened = g.tensor("whitened", [1, total])
    concat = s.ConcatenationOptionsT()
    concat.axis = 1
    g.op(B.CONCATENATION, parts, [whitened], Opts.ConcatenationOptions, concat)
    column = g.tensor("whitened_column", [1, 1, total])
    g.op(B.RESHAPE, [whitened, g.tensor("column_shape", [3], np.array([-1, 1, total], np.int32))], [column],
         Opts.ReshapeOptions, s.ReshapeOptionsT())
    squared = g.tensor("squared", [1, classes, total])
    g.op(B.SQUARED_DIFFERENCE, [column, g.tensor("centres", [classes, total], centres)], [squared],
         Opts.SquaredDifferenceOptions, s.SquaredDifferenceOptionsT())
    per_space = g.tensor("per_space", [1, classes, spaces])
    keep = s.FullyConnectedOptionsT()
    keep.keepNumDims = True
    g.op(B.FULLY_CONNECTED, [squared, g.tensor("space_sum", [spaces, total], space_sum.T.copy()), -1], [per_space],
         Opts.FullyConnectedOptions, keep)
    axis = g.tensor("axis", [1], np.array([1], np.int32))
    nearest = g.tensor("nearest", [1, spaces])
    g.op(B.REDUCE_MIN, [per_space, axis], [nearest], Opts.ReducerOptions, s.ReducerOptionsT())
    furthest = g.tensor("furthest", [1, 1])
    reducer = s.ReducerOptionsT()
    reducer.keepDims = True
    g.op(B.REDUCE_MAX, [nearest, axis], [furthest], Opts.ReducerOptions, reducer)
    score = g.tensor("score", [1, 1])
    name = score_output_name(stats).encode()
    g.graph.tensors[score].name = name
    g.op(B.SQRT, [furthest], [score])
    g.graph.outputs = np.append(g.graph.outputs, np.int32(score))
    for signature in model.signatureDefs or []:
        entry = s.TensorMapT()
        entry.name, entry.tensorIndex = name, score
        signature.outputs.append(entry)
    return write_tflite(model)


def strip_tflite(data: bytes) -> bytes:
    """`data` without the score layers (what the file would be without the score): a baseline for
    benchmarks. The embedded manifest after the flatbuffer is not kept."""
    model = read_tflite(data)
    g = model.subgraphs[0]
    appended = {i for i, t in enumerate(g.tensors) if t.name.decode().startswith((PREFIX, SCORE_OUTPUT))}
    g.operators = [op for op in g.operators if not set(int(i) for i in op.outputs) & appended]
    g.outputs = np.array([i for i in g.outputs if int(i) not in appended], np.int32)
    for signature in model.signatureDefs or []:
        signature.outputs = [t for t in signature.outputs if int(t.tensorIndex) not in appended]
    return write_tflite(model)


def append_onnx(source: Path, target: Path, stats: OODStats) -> None:
    """The ONNX file `source` with the score as one more output, [batch, 1] float32, written to
    `target`: the same operations on the file's float feature outputs (an int8 file's are already
    dequantized, and the appended nodes are never quantized: this runs after quantization)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    outputs = list(graph.output)
    sizes = [o.type.tensor_type.shape.dim[-1].dim_value or -1 for o in outputs]
    _, features = output_roles(sizes, len(stats.components[0].means), stats.dims, source.name)
    whitenings, centres, space_sum = OODScorer(stats).matrices
    name = score_output_name(stats)
    constants = {"centres": centres, "space_sum": space_sum, "axis": np.array([1], np.int64),
                 **{f"whitening{k}": w for k, w in enumerate(whitenings)}}
    graph.initializer.extend(numpy_helper.from_array(v, PREFIX + k) for k, v in constants.items())

    def reduce(op: str, source_name: str, out: str, keep: int):
        if opset >= 18:  # axes became an input in opset 18
            return helper.make_node(op, [source_name, PREFIX + "axis"], [out], keepdims=keep, name=out)
        return helper.make_node(op, [source_name], [out], axes=[1], keepdims=keep, name=out)

    p = PREFIX
    graph.node.extend(
        [
            helper.make_node(
                "MatMul", [outputs[i].name, f"{p}whitening{k}"], [f"{p}whitened{k}"], name=f"{p}whitened{k}"
            )
            for k, i in enumerate(features)
        ]
    )  # each space apart, as in the TFLite layers
    graph.node.extend(
        [
            helper.make_node(
                "Concat", [f"{p}whitened{k}" for k in range(len(features))], [p + "whitened"], axis=1,
                name=p + "whitened"
            ),
            helper.make_node(
                "Unsqueeze", [p + "whitened", p + "axis"], [p + "whitened_column"], name=p + "whitened_column"
            ),
            helper.make_node("Sub", [p + "whitened_column", p + "centres"], [p + "difference"], name=p + "difference"),
            helper.make_node("Mul", [p + "difference", p + "difference"], [p + "squared"], name=p + "squared"),
            helper.make_node("MatMul", [p + "squared", p + "space_sum"], [p + "per_space"], name=p + "per_space"),
            reduce("ReduceMin", p + "per_space", p + "nearest", 0),
            reduce("ReduceMax", p + "nearest", p + "furthest", 1),
            helper.make_node("Sqrt", [p + "furthest"], [name], name=name),
        ]
    )
    graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["batch", 1]))
    onnx.checker.check_model(model)
    onnx.save(model, str(target))


def strip_onnx(source: Path, target: Path) -> None:
    """`source` without the score layers, written to `target` (a benchmark's baseline)."""
    try:
        import onnx
    except ImportError:
        raise UserError("removing an ONNX file's score layers needs onnx (pip install 'edgeleuk[convert]'), "
                        "which the device environment does not carry") from None

    model = onnx.load(str(source))
    graph = model.graph
    keep = [n for n in graph.node if not any(o.startswith((PREFIX, SCORE_OUTPUT)) for o in n.output)]
    del graph.node[:]
    graph.node.extend(keep)
    outputs = [o for o in graph.output if not o.name.startswith(SCORE_OUTPUT)]
    del graph.output[:]
    graph.output.extend(outputs)
    initializers = [t for t in graph.initializer if not t.name.startswith(PREFIX)]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    onnx.save(model, str(target))
