"""device/: the install script into a fresh folder, the configuration file, the service unit."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from conftest import smear
from edgeleuk.errors import UserError
from edgeleuk.runtime.config import read_config

ROOT = Path(__file__).resolve().parents[1]
DEVICE = ROOT / "device"


def test_shipped_config_is_valid_and_strict(tmp_path):
    conf = read_config(DEVICE / "edgeleuk.toml")
    assert conf["camera"]["device"] == 0 and conf["sample"]["min_confidence"] == 0.8
    bad = tmp_path / "bad.toml"
    bad.write_text("[camera]\ndevise = 0\n")
    with pytest.raises(UserError, match="camera.devise"):
        read_config(bad)
    bad.write_text("[sample]\nmin_confidence = 3\n")
    with pytest.raises(UserError, match="sample.min_confidence"):
        read_config(bad)
    bad.write_text("[quality]\nmin_focus = 'sharp'\n")
    with pytest.raises(UserError, match="quality.min_focus"):
        read_config(bad)
    bad.write_text("[gpu]\nx = 1\n")
    with pytest.raises(UserError, match=r"\[gpu\]"):
        read_config(bad)


def test_service_unit_runs_the_config_unprivileged():
    unit = (DEVICE / "edgeleuk.service").read_text()
    assert "ExecStart=/opt/edgeleuk/venv/bin/edgeleuk run --config /etc/edgeleuk/edgeleuk.toml" in unit
    assert "User=edgeleuk" in unit and "Restart=on-failure" in unit and "StandardOutput=journal" in unit
    assert "copytruncate" in (DEVICE / "edgeleuk.logrotate").read_text()


def test_install_script_refuses_32_bit_arm(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "uname").write_text("#!/bin/sh\necho armv7l\n")
    (fake / "uname").chmod(0o755)
    proc = subprocess.run(["bash", str(DEVICE / "install.sh"), "--prefix", str(tmp_path / "p")], capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"})
    assert proc.returncode == 1 and "32-bit ARM" in proc.stderr


@pytest.mark.install
def test_install_into_a_fresh_folder_then_doctor_and_run(tmp_path):
    """The real install.sh: a new venv with edgeleuk[runtime] from PyPI wheels, doctor, then run on a clip."""
    prefix = tmp_path / "device"
    proc = subprocess.run(["bash", str(DEVICE / "install.sh"), "--prefix", str(prefix)], capture_output=True, text=True,
                          timeout=1200, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "verdict: ready" in proc.stdout
    size_mb = int(proc.stdout.split("MB")[0].split(",")[-1].strip())
    assert size_mb < 400, f"runtime environment is {size_mb} MB"
    py = prefix / "venv" / "bin" / "python"
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert not names & {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx"}
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(6):
        writer.write(cv2.resize(smear("Pro", i), (320, 240)))
    writer.release()
    run = subprocess.run([str(prefix / "venv" / "bin" / "edgeleuk"), "run", "--source", str(clip), "--min-focus", "0"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "verdict:" in run.stdout and "6 seen" in run.stdout
    # idempotent: a second run reuses the environment
    again = subprocess.run(["bash", str(DEVICE / "install.sh"), "--prefix", str(prefix), "--no-doctor"], capture_output=True,
                           text=True, timeout=1200, env={**os.environ, "PYTHON": sys.executable})
    assert again.returncode == 0 and "reusing" in again.stdout
