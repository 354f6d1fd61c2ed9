"""The same answers on every CPU: the int8 kernel families, the probe, the ONNX quantization that no
x86 kernel can saturate (run under QEMU's emulated CPUs), and what doctor and run say of an
ONNX int8 file that was never checked for this CPU."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import cli
from edgeleuk.cpu import ARM64, SATURATING, X86_AVX2, X86_SSE, X86_VNNI, covered, read_cpu
from edgeleuk.errors import UserError
from edgeleuk.manifest import read_manifest

ZEN3 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7B13\n" \
       "flags\t\t: fpu sse4_1 sse4_2 avx fma avx2 bmi2 sha_ni vaes\n"
ZEN4 = ZEN3.replace("avx2", "avx2 avx512f avx512bw avx512_vnni").replace(
    "cpu family\t: 25\nmodel\t\t: 1", "cpu family\t: 25\nmodel\t\t: 17"
)
NEHALEM = "model name\t: Intel Core i7 920\nflags\t\t: fpu sse4_1 sse4_2\n"
PI5 = (
    "arch\t: aarch64\nprocessor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 asimdhp cpuid asimdrdm lrcpc dcpop "
    "asimddp\n"
    "CPU implementer\t: 0x41\nCPU part\t: 0xd0b\n"
)
EMULATION_MISSING = "no qemu-x86_64 ≥ 7.2 on this x86-64 machine: tests/system-packages.sh installs Debian's qemu-user"


def _cpuinfo(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, family", [(ZEN3, X86_AVX2), (ZEN4, X86_VNNI), (NEHALEM, X86_SSE), (PI5, ARM64)])
def test_the_int8_kernel_family_follows_the_instruction_sets(tmp_path, text, family):
    cpu = read_cpu(str(_cpuinfo(tmp_path, text)))
    assert cpu.int8_family == family
    line = cpu.summary()
    assert f"int8 kernels: {family}" in line
    if family == X86_AVX2:
        assert "AVX2 yes" in line and "AVX512-VNNI no" in line and "AVX-VNNI no" in line and "cpu_family 25" in line
    if family == ARM64:
        assert "dot product yes" in line and "NEON yes" in line


def test_one_exact_family_stands_for_the_others_the_saturating_one_for_none():
    assert (
        covered(X86_VNNI, (X86_SSE,))
        and covered(ARM64, (X86_AVX2, X86_SSE))
        and covered(X86_AVX2, (X86_VNNI, X86_AVX2))
    )
    assert (
        not covered(X86_AVX2, (X86_VNNI, X86_SSE)) and not covered(X86_VNNI, (X86_AVX2,)) and not covered(X86_AVX2, ())
    )


@pytest.mark.host
def test_the_shipped_probe_is_the_one_the_builder_makes():
    from edgeleuk.export.kernel_check import build_probe
    from edgeleuk.runtime.int8_probe import PROBE

    assert PROBE.read_bytes() == build_probe()


def test_the_probe_answers_for_this_cpu():
    from edgeleuk.runtime.int8_probe import EXACT, SATURATED, probe_output

    assert probe_output() == (SATURATED if read_cpu().int8_family in SATURATING else EXACT)


def _emulator_or_skip() -> None:
    from edgeleuk.export.kernel_check import emulator

    if not read_cpu().x86:
        pytest.skip("QEMU's user mode emulates x86 CPUs on x86-64 machines only")
    assert emulator() is not None, EMULATION_MISSING


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    """The probe under both emulated families: the emulator must reproduce each before any test trusts it."""
    from edgeleuk.export.kernel_check import probe_under
    from edgeleuk.runtime.int8_probe import EXACT, SATURATED

    _emulator_or_skip()
    work = tmp_path_factory.mktemp("probe")
    answers = {family: probe_under(family, work) for family in (X86_AVX2, X86_SSE)}
    assert answers == {X86_AVX2: SATURATED, X86_SSE: EXACT}, answers
    return answers


def _tiny_quantized(folder: Path, reduce_range: bool) -> Path:
    """Softmax(x @ W) over 64 inputs, quantized like edgeleuk's ONNX int8 variant with or without 7-bit
    weights. Column 0's weights are all equal (127 at 8 bits: two products of 255 × 127 overflow int16),
    column 1's alternate with zeros (never overflow); exact logits differ by 2, saturated ones by ~0.03."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeleuk.export.onnx_export import quantize_onnx
    from edgeleuk.export.recipes import load_recipes

    c = 2 / (32 * 255)
    w = np.zeros((64, 2), np.float32)
    w[:, 0], w[::2, 1] = c, c
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["image", "w"], ["logits"]), helper.make_node("Softmax", ["logits"], ["probs"])],
        "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [None, 2])], [numpy_helper.from_array(w, "w")]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    fp32, out = folder / "fp32.onnx", folder / f"int8_{'7bit' if reduce_range else '8bit'}.onnx"
    onnx.save(model, str(fp32))
    calibration = np.random.default_rng(0).integers(0, 256, (32, 64)).astype(np.uint8)
    calibration[0] = 255  # the activations' range: 0-255, scale 1
    recipe = replace(load_recipes().variants["onnx-int8"], reduce_range=reduce_range)
    quantize_onnx(fp32, out, lambda: iter(calibration), recipe)
    return out


def _bright_inputs() -> np.ndarray:
    return np.concatenate(
        [np.full((4, 64), 255, np.uint8), np.random.default_rng(1).integers(200, 256, (12, 64)).astype(np.uint8)]
    )


@pytest.mark.host
def test_full_range_weights_saturate_under_avx2_and_seven_bit_weights_do_not(emulated, tmp_path):
    from edgeleuk.export.kernel_check import run_emulated

    images = _bright_inputs()
    np.save(tmp_path / "x.npy", images)
    exact = np.exp(2) / (1 + np.exp(2))  # column 0's probability on the all-255 rows
    for reduce_range, saturated in ((False, True), (True, False)):
        model = _tiny_quantized(tmp_path, reduce_range)
        run_emulated(X86_AVX2, [str(model), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")], timeout=300)
        p = np.load(tmp_path / "y.npy")[:4, 0]
        assert (abs(p - exact).max() > 0.2) == saturated, (reduce_range, p)


@pytest.mark.host
def test_the_kernel_check_refuses_full_range_weights_and_passes_seven_bit_ones(emulated, tmp_path):
    from edgeleuk.export.kernel_check import check_file, other_family

    native = read_cpu().int8_family
    old = check_file(_tiny_quantized(tmp_path, reduce_range=False), _bright_inputs())
    assert not old.passed and old.failed == other_family(native) and old.max_prob_diff > 0.2
    new = check_file(_tiny_quantized(tmp_path, reduce_range=True), _bright_inputs())
    assert new.passed and set(new.checked) == {native, other_family(native)} and new.max_prob_diff < 0.05


def test_convert_checked_the_onnx_int8_file_under_both_kernel_families(converted):
    from edgeleuk.export.kernel_check import emulator, other_family

    native = read_cpu().int8_family
    onnx_int8 = read_manifest(converted).variant("onnx-int8")
    if emulator() is None and read_cpu().x86:
        pytest.fail(EMULATION_MISSING)
    want = {native, other_family(native)} if read_cpu().x86 else {native}
    assert set(onnx_int8.kernels_checked) == want and onnx_int8.metrics.get("kernel_agreement", 1.0) >= 0.99
    # XNNPACK's kernels are exact everywhere
    assert read_manifest(converted).variant("tflite-int8").kernels_checked == ()


@pytest.mark.host
def test_every_weight_of_the_onnx_int8_file_fits_seven_bits(converted):
    """|w| ≤ 64 everywhere, depthwise convolutions included: a tiny model's depthwise layers with 8-bit
    weights gave other answers under the AVX2 kernels than under the exact ones."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(converted / "model_int8.onnx")).graph
    weights = [
        numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2
    ]
    assert len(weights) >= 10 and max(int(np.abs(w.astype(int)).max()) for w in weights) == 64


def _unchecked_copy(converted: Path, tmp_path: Path) -> Path:
    """The converted folder with the ONNX int8 variant's kernel record removed, as an older edgeleuk wrote it."""
    folder = tmp_path / "older"
    shutil.copytree(converted, folder)
    data = json.loads((folder / "manifest.json").read_text())
    for v in data["variants"]:
        v.pop("kernels_checked", None)
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder


def test_doctor_names_the_cpu_and_warns_of_an_unchecked_onnx_file_on_a_saturating_cpu(converted, tmp_path):
    folder = _unchecked_copy(converted, tmp_path)
    avx2 = cli("doctor", "--model", str(folder), env={"EDGELEUK_CPUINFO": str(_cpuinfo(tmp_path, ZEN3))})
    assert "AMD EPYC 7B13 (x86_64, cpu_family 25, model 1): AVX2 yes, AVX-512 no, AVX512-VNNI no" in avx2.stdout
    assert "int8 kernels: x86-avx2" in avx2.stdout and "onnxruntime int8 probe:" in avx2.stdout
    assert "warning: model_int8.onnx was not checked under this CPU's int8 kernels (x86-avx2" in avx2.stdout, (
        avx2.stdout
    )
    assert "int8 speed here" in avx2.stdout or "model_int8.onnx" in avx2.stdout
    vnni = cli("doctor", "--model", str(folder), env={"EDGELEUK_CPUINFO": str(_cpuinfo(tmp_path, ZEN4))})
    assert "int8 kernels: x86-vnni" in vnni.stdout and "warning: model_int8.onnx" not in vnni.stdout
    fastest = [line for line in vnni.stdout.splitlines() if "int8 speed here" in line]
    assert (
        fastest
        and "tflite-int8 (litert)" in fastest[0]
        and "onnx-int8 (onnxruntime)" in fastest[0]
        and "fastest:" in fastest[0]
    )


def test_run_refuses_an_unchecked_onnx_int8_file_on_a_saturating_cpu_only(converted, tmp_path, monkeypatch):
    from edgeleuk.runtime import load

    folder = _unchecked_copy(converted, tmp_path)
    monkeypatch.setenv("EDGELEUK_CPUINFO", str(_cpuinfo(tmp_path, ZEN3)))
    with pytest.raises(UserError, match=r"model_int8.onnx was not checked under this CPU's int8 kernels \(x86-avx2"):
        load(folder, variant="onnx-int8")
    assert load(folder).variant.name == "tflite-int8"  # the default is unaffected
    assert load(converted, variant="onnx-int8").variant.name == "onnx-int8"  # a checked file runs
    monkeypatch.setenv("EDGELEUK_CPUINFO", str(_cpuinfo(tmp_path, ZEN4)))
    assert load(folder, variant="onnx-int8").variant.name == "onnx-int8"
