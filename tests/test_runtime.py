"""Device runtime: no TensorFlow, sources, quality gate, verdict, logs, faults."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import cli, smear
from edgeleuk.dataset import load_arrays
from edgeleuk.errors import UserError
from edgeleuk.runtime import load
from edgeleuk.runtime.quality import assess
from edgeleuk.runtime.verdict import REFER, Verdict


def default_sigint() -> None:
    """A child started from a background job inherits an ignored SIGINT; Ctrl-C tests need it back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _no_tf(code: str) -> dict:
    """Run code in a fresh interpreter; report which heavy modules it imported."""
    probe = (
        code
        + "\nimport sys, json; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', "
          "'keras', 'tf2onnx', 'onnx'))))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    for i, label in enumerate(["Benign", "Early", "Pre", "Pro"] * 2):
        cv2.imwrite(str(folder / f"f{i:02d}.png"), smear(label, 100 + i, size=(160, 120)))
    return folder


def test_run_and_doctor_import_no_tensorflow(converted, frames_dir):
    code = ("from edgeleuk.cli import main\n"
            f"assert main(['run', '--model', r'{converted}', '--source', r'{frames_dir}', '--quiet']) == 0\n"
            f"main(['doctor', '--model', r'{converted}'])\n"
            "import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(['run', '--help'])\n    except SystemExit:\n        pass")
    assert _no_tf(code) == []


def test_run_on_a_folder_matches_direct_predictions(converted, frames_dir, tmp_path):
    log = tmp_path / "run.jsonl"
    proc = cli(
        "run", "--model", str(converted), "--source", str(frames_dir), "--log", str(log), "--min-focus", "0", check_rc=0
    )
    assert "research use only" in proc.stdout and "verdict:" in proc.stdout
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    frames = [x for x in lines if "frame" in x and "class" in x]
    clf = load(converted)
    images, _ = load_arrays(
        [type("S", (), {"path": p, "class_index": 0})() for p in sorted(frames_dir.iterdir())], clf.spec, progress=False
    )
    expected = [clf.labels[i] for i in clf.predict(images).argmax(1)]
    assert [f["class"] for f in frames] == expected
    assert lines[-1]["event"] == "summary" and lines[-1]["frames_seen"] == 8
    assert {"time", "source", "frame", "quality", "probabilities", "latency_ms"} <= set(frames[0])


def test_recorded_video_and_frame_limit(converted, tmp_path):
    video = tmp_path / "slide.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(12):
        writer.write(cv2.resize(smear("Pre", i), (320, 240)))
    writer.release()
    log = tmp_path / "new" / "v.jsonl"
    proc = cli(
        "run", "--model", str(converted), "--source", str(video), "--frames", "5", "--min-focus", "0", "--log",
        str(log), check_rc=0
    )
    summary = json.loads(log.read_text().splitlines()[-1])
    assert summary["frames_accepted"] == 5 and summary["stopped_by"] == "5 accepted frames"
    assert "verdict:" in proc.stdout and f"log: creating the folder {log.parent}" in proc.stdout
    lines = len(log.read_text().splitlines())
    again = cli(
        "run", "--model", str(converted), "--source", str(video), "--frames", "2", "--min-focus", "0", "--log",
        str(log), check_rc=0
    )
    assert (
        f"log: appending to {log}, which already holds {lines} lines" in again.stdout and "creating" not in again.stdout
    )
    assert len(log.read_text().splitlines()) > lines


def test_source_that_ends_early_and_corrupt_images(converted, frames_dir, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in list(frames_dir.iterdir())[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "zz-corrupt.jpg").write_bytes(b"\xff\xd8garbage")
    log = tmp_path / "m.jsonl"
    cli(
        "run", "--model", str(converted), "--source", str(folder), "--frames", "50", "--min-focus", "0", "--log",
        str(log), check_rc=0
    )
    summary = json.loads(log.read_text().splitlines()[-1])
    assert (
        summary["frames_unreadable"] == 1
        and summary["frames_accepted"] == 3
        and summary["stopped_by"] == "end of source"
    )


def test_a_source_of_only_unreadable_images_exits_1(converted, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    for i in range(3):
        (folder / f"b{i}.jpg").write_bytes(b"\xff\xd8garbage")
    log = tmp_path / "b.jsonl"
    proc = cli("run", "--model", str(converted), "--source", str(folder), "--log", str(log))
    assert (
        proc.returncode == 1 and "none of the 3 frames could be read" in proc.stderr and "Traceback" not in proc.stderr
    )
    assert json.loads(log.read_text().splitlines()[-1])["frames_unreadable"] == 3  # the log is still complete


def test_missing_camera_says_which_exist(converted):
    proc = cli("run", "--model", str(converted), "--camera", "57")
    assert proc.returncode == 1 and "camera 57 could not be opened; cameras present" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--source", "/nonexistent/x.avi"], "does not exist"),
        (["--source", "EMPTY"], "no images found"),
        (["--source", "X", "--roi", "1,2,3"], "--roi"),
        (["--source", "X", "--frames", "0"], "--frames"),
        (["--source", "X", "--roi", "100,100,100000,100000"], "reaches beyond the 160×120 frame"),
        (["--source", "X", "--scale", "9"], "needs a 576×576 px region"),
        (["--source", "X", "--scale", "0"], "--scale 0.0; expected 0.05"),
        (["--source", "X", "--max-ood-fraction", "1.5"], "--max-ood-fraction 1.5; expected 0"),
        (["--source", "X", "--threads", "1000"], "--threads 1000; expected 1 … 256"),
        (["--source", "X", "--min-focus", "-5"], "--min-focus -5.0; expected a number ≥ 0"),
        (["--source", "X", "--config", "DIR"], "is a folder"),
        (["--source", "X", "--config", "LATIN1"], "not UTF-8 text"),
        (["--source", "X", "--config", "THREADS"], "model.threads = 100000000000000000000"),
        (["--source", "X", "--config", "NAN"], "quality.min_focus = nan; out of range"),
        (
            ["--source", "X", "--config", "SCALE"],
            "camera.scale = 'big' has the wrong type; expected a number (or leave the key out)",
        ),
    ],
)
def test_bad_run_input(converted, frames_dir, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "latin1.toml").write_bytes("[sample]\n# caf\xe9\n".encode("latin-1"))
    (tmp_path / "threads.toml").write_text("[model]\nthreads = 100000000000000000000\n")
    (tmp_path / "nan.toml").write_text("[quality]\nmin_focus = nan\n")
    (tmp_path / "scale.toml").write_text('[camera]\nscale = "big"\n')
    files = {"EMPTY": tmp_path / "empty", "X": frames_dir, "DIR": tmp_path, "LATIN1": tmp_path / "latin1.toml",
             "THREADS": tmp_path / "threads.toml", "NAN": tmp_path / "nan.toml", "SCALE": tmp_path / "scale.toml"}
    args = [str(files[a]) if a in files else a for a in args]
    proc = cli("run", "--model", str(converted), *args)
    # a flag's value: bad usage (2); a file or a frame: bad input (1)
    usage = message.startswith("--") and "--config" not in args
    assert proc.returncode == (2 if usage else 1) and message in proc.stderr and "Traceback" not in proc.stderr


def test_hash_mismatch_and_unreadable_model(converted, tmp_path):
    import shutil

    copy = tmp_path / "conv"
    shutil.copytree(converted, copy)
    with open(copy / "model_int8.tflite", "ab") as fh:
        fh.write(b"tampered")
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), smear("Pre", 1))
    proc = cli("run", "--model", str(copy), "--source", str(image))
    assert proc.returncode == 1 and "does not match the manifest" in proc.stderr
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer")
    with pytest.raises(UserError, match="cannot load"):
        load(junk)


@pytest.mark.parametrize(
    "sig,attempt",
    [(signal.SIGINT, 0), (signal.SIGTERM, 0), (signal.SIGTERM, 1), (signal.SIGTERM, 2), (signal.SIGTERM, 3)]
)
def test_ctrl_c_leaves_summary_and_exit_0(converted, tmp_path, sig, attempt):
    video = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 120))
    frame = cv2.resize(smear("Early", 1), (160, 120))
    for _ in range(3000):
        writer.write(frame)
    writer.release()
    log = tmp_path / "c.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "edgeleuk", "run", "--model", str(converted), "--source", str(video),
                             "--min-focus", "0", "--log", str(log), "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.time() + 60
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 5 + 7 * attempt):
        time.sleep(0.01)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    lines = log.read_text().splitlines()
    summary = json.loads(lines[-1])
    assert summary["interrupted"] is True and summary["frames_seen"] < 3000
    records = [json.loads(x) for x in lines]  # every line complete
    assert summary["frames_seen"] == sum("frame" in r for r in records[:-1])  # the summary counts what the log holds
    assert "verdict:" in stdout


def test_quality_gate_rejects_blur_and_bad_exposure():
    sharp = cv2.resize(smear("Pro", 3), (224, 224))
    sharp = cv2.cvtColor(sharp, cv2.COLOR_BGR2RGB)
    rng = np.random.default_rng(0)
    sharp = np.clip(sharp + rng.normal(0, 20, sharp.shape), 0, 255).astype(np.uint8)
    assert assess(sharp).usable
    assert assess(cv2.GaussianBlur(sharp, (0, 0), 4)).reason == "out of focus"
    assert assess((sharp * 0.3).astype(np.uint8)).reason == "underexposed"
    assert assess(np.full_like(sharp, 255)).reason == "overexposed"


def test_verdict_refers_when_unsure():
    v = Verdict(("Benign", "Early", "Pre", "Pro"), min_confidence=0.8)
    assert v.decision == "no usable frame"
    v.add(np.array([0.6, 0.4, 0, 0]))
    v.add(np.array([0.5, 0.5, 0, 0]))
    assert v.decision == REFER and v.label == "Benign"
    v2 = Verdict(("Benign", "Early", "Pre", "Pro"), min_confidence=0.5)
    v2.add(np.array([0.1, 0.9, 0, 0]))
    assert v2.decision == "Early" and "not a diagnosis" in v2.describe()


def test_threads_reach_the_interpreter(converted):
    assert load(converted, threads=1).backend.threads == 1
    assert load(converted, variant="onnx-int8", threads=1).backend.threads == 1


def test_backend_override(converted):
    with pytest.raises(UserError, match="expected litert"):
        load(converted, variant="tflite-int8", backend="onnxruntime")
    with pytest.raises(UserError, match="backend"):
        load(converted, variant="tflite-int8", backend="cuda")


def test_camera_unplugged_mid_run_retries_then_stops_cleanly(monkeypatch):
    """A camera that delivers frames, then fails every read: reconnects with back-off, then a clear error."""
    import edgeleuk.runtime.cameras as cameras

    opened = []

    class FakeCapture:
        def __init__(self, index):
            opened.append(index)
            self.reads = 0

        def isOpened(self):
            return True

        def set(self, *args):
            return True

        def read(self):
            self.reads += 1
            if len(opened) == 1 and self.reads <= 3:
                return True, np.full((120, 160, 3), 200, np.uint8)
            return False, None

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    monkeypatch.setattr(cameras.time, "sleep", lambda s: None)
    camera = cameras.CameraSource(0, retries=3)
    seen = []
    with pytest.raises(UserError, match="stopped delivering frames"):
        for frame in camera.frames():
            seen.append(frame.index)
    assert seen and len(opened) == 4  # the first open plus three reconnect attempts


@pytest.mark.parametrize("variant", ["onnx-int8", "tflite-int8"])
def test_run_writes_nothing_outside_its_log_and_save_folders(converted, frames_dir, tmp_path, variant):
    """ONNX Runtime 1.32 writes a device id under ~/.cache and $TMPDIR/.ses unless told not to:
    the child gets none of this process's ORT_* settings, so edgeleuk itself must switch it off."""
    home, tmp, out = tmp_path / "home", tmp_path / "tmp", tmp_path / "out"
    for d in (home, tmp, out):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORT_", "XDG_"))}
    env.update(HOME=str(home), TMPDIR=str(tmp), TF_CPP_MIN_LOG_LEVEL="3")
    exe = Path(sys.executable).with_name("edgeleuk")
    proc = subprocess.run(
        [
            str(exe), "run", "--model", str(converted), "--variant", variant, "--source", str(frames_dir), "--log",
            str(out / "run.jsonl"), "--save-frames", str(out / "flagged"), "--quiet", "--min-confidence", "1"
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(home.rglob("*")) == [] and list(tmp.rglob("*")) == []
    assert (out / "run.jsonl").is_file() and any((out / "flagged").iterdir())


def test_errors_come_without_the_libraries_start_up_noise(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli("run", "--camera", "7", check_rc=1)
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "camera 7 could not be opened" in proc.stderr
    assert "WARN" not in proc.stderr
    verbose = cli("run", "--camera", "7", "--verbose", check_rc=1)
    assert "camera 7 could not be opened" in verbose.stderr


@pytest.mark.host
def test_a_host_command_error_is_the_only_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli("convert", "--data", str(empty), "--out", str(tmp_path / "out"), check_rc=1)
    assert proc.stderr.strip().splitlines() == [
        f"edgeleuk convert: error: {empty} holds no class folders; expected one sub-folder per class (or "
        "Original/<class>)"
    ]


def test_an_image_with_too_many_pixels_is_one_unreadable_frame(converted, frames_dir, tmp_path):
    from conftest import huge_png

    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in sorted(frames_dir.iterdir())[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    huge_png(folder / "f01b-huge.png")
    log = tmp_path / "run.jsonl"
    cli("run", "--model", str(converted), "--source", str(folder), "--log", str(log), "--quiet", check_rc=0)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["error"] for x in lines if "error" in x] == [
        f"{folder / 'f01b-huge.png'}: too many pixels to decode (over 134 megapixels)"
    ]
    assert (
        lines[-1]["frames_seen"] == 4
        and lines[-1]["frames_unreadable"] == 1
        and lines[-1]["stopped_by"] == "end of source"
    )


@pytest.mark.parametrize("flag,where,message", [
    ("--log", "file/x.jsonl", "the folder of --log {d}/file is a file, not a folder"),
    ("--log", ".", "--log {d} is a folder, not a file"),
    ("--log", "/dev/full", "cannot write the log /dev/full any more (No space left on device)"),
    ("--save-frames", "file/frames", "cannot write into --save-frames {d}/file/frames (Not a directory)"),
    ("--save-frames", "file", "--save-frames {d}/file is a file, not a folder"),
])
def test_unwritable_outputs_are_one_clear_error(converted, frames_dir, tmp_path, flag, where, message):
    (tmp_path / "file").write_text("x")
    target = where if where.startswith("/") else str(tmp_path / where) if where != "." else str(tmp_path)
    proc = cli(
        "run", "--model", str(converted), "--source", str(frames_dir), "--quiet", "--min-confidence", "1", flag,
        target, check_rc=1
    )
    assert proc.stderr.strip() == "edgeleuk run: error: " + message.format(d=tmp_path) + (
        "; it ends before this frame" if "/dev/full" in message else "")


def test_a_disk_that_fills_under_the_log_leaves_only_whole_records(converted, frames_dir, tmp_path):
    """The log's file may grow to 3,000 bytes (RLIMIT_FSIZE, as a full disk: the write that crosses
    it is cut short): the run stops with the reason, and every line the log keeps is a whole record."""
    import resource

    log = tmp_path / "run.jsonl"
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (3000, resource.RLIM_INFINITY))  # noqa: E731
    proc = cli(
        "run", "--model", str(converted), "--source", str(frames_dir), "--quiet", "--log", str(log), preexec=limit,
        check_rc=1
    )
    assert f"cannot write the log {log} any more (File too large); it ends before this frame" in proc.stderr
    assert "Traceback" not in proc.stderr
    text = log.read_text()
    assert 0 < len(text) < 3000 and text.endswith("\n") and all(json.loads(x)["frame"] >= 0 for x in text.splitlines())


def test_a_frame_that_cannot_be_saved_stops_the_run_with_a_reason(tmp_path):
    from edgeleuk.errors import UserError
    from edgeleuk.runtime.saving import write_frame
    from edgeleuk.runtime.sources import Frame

    gone = tmp_path / "gone"
    with pytest.raises(UserError, match=f"cannot save frame 3 to {gone}"):
        write_frame(gone / "cam.jpg", Frame(3, np.zeros((8, 8, 3), np.uint8), "cam"))


def _onnx_model(path: Path, inputs: list[int], outputs: int) -> Path:
    """A one-layer ONNX model: a float input of shape `inputs`, flattened, times a matrix into `outputs` values."""
    onnx = pytest.importorskip("onnx", reason="builds its models with onnx (host)")
    from onnx import TensorProto, helper, numpy_helper

    n = int(np.prod(inputs[1:]))
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, inputs)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [inputs[0], outputs])],
                              [numpy_helper.from_array(np.full((n, outputs), 1e-6, np.float32), "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.host
@pytest.mark.parametrize("inputs,outputs,message", [
    ([1, 10], 4, r"input of shape \[1, 10\]; the preprocessing gives \[batch, 224, 224, 3\]"),
    ([1, 64, 64, 3], 4, r"input of shape \[1, 64, 64, 3\]; the preprocessing gives \[batch, 224, 224, 3\]"),
    ([1, 224, 224, 3], 1000, r"outputs of sizes \[1000\]; expected exactly one of size 4"),
])
def test_a_model_that_disagrees_with_its_preprocessing_or_labels_is_refused_at_load(
    tmp_path, frames_dir, inputs, outputs, message
):
    model = _onnx_model(tmp_path / "m.onnx", inputs, outputs)
    proc = cli("run", "--model", str(model), "--source", str(frames_dir), "--quiet", check_rc=1)
    assert re.search(message, proc.stderr) and "Traceback" not in proc.stderr
    doctor = cli("doctor", "--model", str(model))
    assert doctor.returncode == 1 and "verdict: NOT READY" in doctor.stdout and re.search(message, doctor.stdout)


def test_three_labels_for_four_outputs_is_refused_and_doctor_says_not_ready(converted, tmp_path):
    import dataclasses
    import shutil

    from edgeleuk.manifest import read_manifest, write_manifest

    folder = tmp_path / "m"
    shutil.copytree(converted, folder)
    manifest = read_manifest(folder)
    write_manifest(folder, dataclasses.replace(manifest, labels=("Benign", "Early", "Pre")))
    doctor = cli("doctor", "--model", str(folder))
    assert doctor.returncode == 1 and "verdict: NOT READY" in doctor.stdout
    assert "expected exactly one of size 3 (the labels' count)" in doctor.stdout


def test_packaged_models_are_chosen_by_name(frames_dir):
    from edgeleuk.runtime.classifier import packaged_model, packaged_models

    assert "default" in packaged_models() and packaged_model("default").name == "default"
    assert packaged_model("../default") is None and packaged_model(".") is None
    proc = cli("run", "--model", "no-such-model", "--source", str(frames_dir), "--quiet", check_rc=1)
    assert "model no-such-model does not exist (packaged models, by name: " in proc.stderr and "default" in proc.stderr


def test_a_model_file_with_broken_embedded_information_is_a_clear_error(converted, frames_dir, tmp_path):
    import zipfile

    lone = tmp_path / "alone.tflite"
    lone.write_bytes((converted / "model_int8.tflite").read_bytes())
    with zipfile.ZipFile(lone) as archive:
        names = archive.namelist()
    # rewrite the appended archive's entry with text that is not JSON (the flatbuffer before it is untouched)
    data = lone.read_bytes()
    start = data.rfind(b"PK\x03\x04", 0, data.rfind(b"PK\x01\x02"))
    lone.write_bytes(data[:start])
    with zipfile.ZipFile(lone, "a") as archive:
        archive.writestr(names[0], "{not json")
    proc = cli("run", "--model", str(lone), "--source", str(frames_dir), "--quiet", check_rc=1)
    assert f"{lone}: its embedded edgeleuk.json is not valid JSON" in proc.stderr and "Traceback" not in proc.stderr


def test_an_endless_sample_keeps_a_bounded_latency_window():
    from edgeleuk.runtime.records import LATENCY_WINDOW, Summary
    from edgeleuk.runtime.verdict import Verdict

    summary = Summary()
    for i in range(3 * LATENCY_WINDOW):  # an hour-long sample; its first frames were slow (a cold start)
        summary.latency_ms.append(100.0 if i < 2 * LATENCY_WINDOW else 2.0)
        summary.inference_ms.append(1.0)
    assert len(summary.latency_ms) == LATENCY_WINDOW
    assert summary.as_dict(Verdict(("a", "b"), 0.8))["latency_ms_p50"] == 2.0  # the recent frames'


def test_a_pipe_and_a_huge_sparse_file_among_the_images_are_skipped_not_read(converted, tmp_path):
    import os

    folder = tmp_path / "g"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_field.jpg"), cv2.resize(smear("Pre", 1), (224, 224)))
    os.mkfifo(folder / "b_pipe.jpg")  # opening it to read would wait forever for a writer
    with open(folder / "c_huge.jpg", "wb") as fh:
        fh.truncate(64 << 30)  # 64 GB, sparse: reading it whole ran out of memory
    log = tmp_path / "run.jsonl"
    for source in (str(folder / "*.jpg"), str(folder)):
        proc = cli(
            "run", "--model", str(converted), "--source", source, "--min-focus", "0", "--log", str(log), timeout=120
        )
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    records = [json.loads(line) for line in log.read_text().splitlines() if '"frame"' in line]
    errors = {r["source"]: r.get("error") for r in records if r.get("error")}
    assert "not a regular file" in errors.get("b_pipe.jpg", "") or "b_pipe.jpg" not in {r["source"] for r in records}
    assert "larger than any image edgeleuk decodes" in errors["c_huge.jpg"]
    assert sum(r["source"] == "a_field.jpg" and "class" in r for r in records) == 2


def test_a_model_file_whose_embedded_info_is_damaged_is_refused_not_run_blind(converted, frames_dir, tmp_path):
    intact = (converted / "model_int8.tflite").read_bytes()
    at = intact.index(b"edgeleuk.json") + 60  # inside the appended entry's compressed bytes
    flipped = intact[:at] + bytes([intact[at] ^ 0x55]) + intact[at + 1:]
    onnx = (converted / "model_int8.onnx").read_bytes()
    text = onnx.index(b'"labels"')
    bad_text = onnx[:text] + b"\xff" + onnx[text + 1:]  # one byte of the metadata JSON no longer UTF-8
    for name, data in (("cut.tflite", intact[:-10]), ("flipped.tflite", flipped), ("bad.onnx", bad_text)):
        (tmp_path / name).write_bytes(data)
        proc = cli("run", "--model", str(tmp_path / name), "--source", str(frames_dir), "--min-focus", "0")
        assert proc.returncode == 1 and "the file is damaged" in proc.stderr and "Traceback" not in proc.stderr, (
            name,
            proc.stderr[-1500:],
        )


def test_every_log_line_carries_its_schema_version_and_its_records_keys(converted, frames_dir, tmp_path):
    from edgeleuk.runtime.records import RECORD_SCHEMA

    log = tmp_path / "run.jsonl"
    cli("run", "--model", str(converted), "--source", str(frames_dir), "--log", str(log), "--quiet", check_rc=0)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) > 1 and all(line["schema_version"] == RECORD_SCHEMA for line in lines)
    assert {"time", "source", "frame", "sample", "quality"} <= set(lines[0])
    summary = lines[-1]
    assert summary["event"] == "summary" and summary["frames_seen"] == len(lines) - 1
    assert {"frames_rejected", "verdict", "checks", "stopped_by"} <= set(summary)
