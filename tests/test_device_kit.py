"""device/: the install script into a fresh folder, the configuration file, the service unit."""

import json
import os
import re
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
    with pytest.raises(UserError, match=r"unknown key camera\.'devise'"):
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
    bad.write_text("[publish]\nresend_window = -5\n")
    with pytest.raises(UserError, match="publish.resend_window = -5; expected 0"):
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
    proc = subprocess.run(
        ["bash", str(DEVICE / "install.sh"), "--prefix", str(tmp_path / "p")], capture_output=True, text=True,
        env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    )
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
    again = subprocess.run(
        ["bash", str(DEVICE / "install.sh"), "--prefix", str(prefix), "--no-doctor"], capture_output=True, text=True,
        timeout=1200, env={**os.environ, "PYTHON": sys.executable}
    )
    assert again.returncode == 0 and "reusing" in again.stdout


def _wheel_versions(folder: Path) -> dict[str, str]:
    return {w.name.split("-")[0].lower(): w.name.split("-")[1] for w in folder.glob("*.whl")}


@pytest.mark.install
def test_wheelhouse_for_a_pi_then_offline_install(tmp_path):
    """wheelhouse.sh for aarch64 gets the same releases as for this machine; install.sh --wheels needs no index."""
    env = {**os.environ, "PYTHON": sys.executable}
    houses = {}
    for arch in ("aarch64", "x86_64"):
        houses[arch] = tmp_path / f"wheels-{arch}"
        proc = subprocess.run(["bash", str(DEVICE / "wheelhouse.sh"), str(houses[arch]), "--arch", arch],
                              capture_output=True, text=True, timeout=900, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    pi, here = _wheel_versions(houses["aarch64"]), _wheel_versions(houses["x86_64"])
    assert {"edgeleuk", "ai_edge_litert", "onnxruntime", "numpy", "opencv_python_headless"} <= pi.keys()
    assert pi == here, "the Raspberry Pi wheelhouse resolved other releases (a manylinux tag missing?)"
    assert all("x86_64" not in w.name for w in houses["aarch64"].glob("*.whl"))
    if os.uname().machine != "x86_64":
        pytest.skip("the offline install below uses the x86_64 wheelhouse")
    prefix = tmp_path / "offline"
    # an index that cannot answer: the install must not need one
    proc = subprocess.run(
        ["bash", str(DEVICE / "install.sh"), "--prefix", str(prefix), "--wheels", str(houses["x86_64"]), "--no-doctor"],
        capture_output=True, text=True, timeout=900,
        env={**env, "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": ""}
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "(offline)" in proc.stdout
    edgeleuk = prefix / "venv" / "bin" / "edgeleuk"
    doctor = subprocess.run([str(edgeleuk), "doctor"], capture_output=True, text=True, timeout=120)
    assert "verdict: ready" in doctor.stdout, doctor.stdout + doctor.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = subprocess.run(
        ["bash", str(DEVICE / "install.sh"), "--prefix", str(tmp_path / "p3"), "--wheels", str(empty)],
        capture_output=True, text=True, timeout=300, env=env
    )
    assert refused.returncode == 1 and "holds no edgeleuk wheel" in refused.stderr


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.docker
def test_docker_image_builds_then_doctor_and_run_offline(tmp_path):
    """device/Dockerfile from an offline wheelhouse; inside it (no network): doctor, then run on a clip."""
    if not _docker_answers():
        pytest.skip("no Docker engine answers `docker info` (CI machines have none); see device/README.md §6")
    base = os.environ.get("EDGELEUK_DOCKER_BASE", "debian:bookworm-slim")
    if subprocess.run(["docker", "image", "inspect", base], capture_output=True).returncode != 0 and \
            subprocess.run(["docker", "pull", base], capture_output=True, timeout=600).returncode != 0:
        pytest.skip(f"base image {base} is neither here nor pullable: make one with device/docker-base.sh and "
                    "set EDGELEUK_DOCKER_BASE")
    wheels = DEVICE / f"wheels-test-{os.getpid()}"  # inside the build context, as --build-arg WHEELS needs
    tag = f"edgeleuk-runtime:test-{os.getpid()}"
    try:
        made = subprocess.run(["bash", str(DEVICE / "wheelhouse.sh"), str(wheels)], capture_output=True, text=True,
                              timeout=900, env={**os.environ, "PYTHON": sys.executable})
        assert made.returncode == 0, made.stderr[-3000:]
        built = subprocess.run(["docker", "build", "--network", "host", "--build-arg", f"BASE={base}",
                                "--build-arg", f"WHEELS={wheels.relative_to(ROOT)}", "-f", str(DEVICE / "Dockerfile"),
                                "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=1800)
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        doctor = subprocess.run(["docker", "run", "--rm", "--network", "none", tag], capture_output=True, text=True,
                                timeout=300)
        assert doctor.returncode == 0 and "verdict: ready" in doctor.stdout, doctor.stdout + doctor.stderr
        clips = tmp_path / "clips"
        clips.mkdir()
        writer = cv2.VideoWriter(str(clips / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
        for i in range(6):
            writer.write(cv2.resize(smear("Pre", i), (320, 240)))
        writer.release()
        clips.chmod(0o755)  # the image runs as an unprivileged user
        run = subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{clips}:/clips:ro", tag,
                              "run", "--source", "/clips/clip.avi", "--min-focus", "0"],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0 and "6 seen" in run.stdout, run.stdout + run.stderr
        who = subprocess.run(["docker", "run", "--rm", "--entrypoint", "sh", tag, "-c",
                              "id -un; python -c 'import tensorflow' 2>/dev/null && echo has-tensorflow; "
                              "python -c 'import pip' 2>/dev/null && echo has-pip; du -sm /opt/edgeleuk | cut -f1"],
                             capture_output=True, text=True, timeout=300)
        user, *rest = who.stdout.split()
        assert user == "edgeleuk" and "has-tensorflow" not in rest and "has-pip" not in rest, who.stdout
        assert int(rest[-1]) < 400, f"the image's runtime environment is {rest[-1]} MB"
    finally:
        subprocess.run(["rm", "-rf", str(wheels)])
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


@pytest.mark.install
def test_the_device_tests_pass_in_an_environment_without_tensorflow(converted, two_class, tmp_path):
    """A second virtual environment with edgeleuk[runtime,serve,dev] only (no TensorFlow, onnx or
    scikit-learn) runs every test not marked host, on the variants this run built: the device side
    needs nothing from the host side."""
    venv = tmp_path / "device-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    install = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e",
                              f"{ROOT}[runtime,serve,dev]", "-c", str(ROOT / "constraints.txt")],
                             capture_output=True, text=True, timeout=1200)
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert not names & {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "scikit-learn", "matplotlib"}, names
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    env.update(
        EDGELEUK_TEST_CONVERTED=str(converted), EDGELEUK_TEST_TWO_CLASS=str(two_class),
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    )
    run = subprocess.run(
        [
            str(py),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(tmp_path / "inner"),
            "-m",
            "not host and not install and not docker and not slow",
            str(ROOT / "tests"),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=ROOT,
        env=env,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", run.stdout).group(1))
    assert passed >= 150, run.stdout[-2000:]


def _fake_machine(tmp_path: Path, uid: int, apt_rc: int = 0, present: tuple[str, ...] = ()) -> tuple[Path, dict]:
    """A PATH of stand-ins: `id`, an `apt-get` that logs its arguments, and the named commands."""
    import shutil as sh

    fake = tmp_path / f"bin-{uid}-{apt_rc}-{len(present)}"
    fake.mkdir()
    (fake / "ls").symlink_to(sh.which("ls"))
    scripts = {"id": f"echo {uid}", "apt-get": f'echo "$@" >> "{fake}/apt.log"; exit {apt_rc}'}
    scripts.update({name: "exit 0" for name in present})
    for name, body in scripts.items():
        (fake / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake / name).chmod(0o755)
    return fake, {"PATH": str(fake), "EDGELEUK_SYSTEM_ROOT": str(tmp_path / "root")}


def test_system_packages_installs_what_a_fresh_machine_lacks_and_fails_when_apt_does(tmp_path):
    script = ROOT / "tests" / "system-packages.sh"

    def run(fake_env: dict) -> subprocess.CompletedProcess:
        return subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True, env=fake_env, timeout=30)

    fake, env = _fake_machine(tmp_path, uid=0)  # CI: a fresh machine, as root
    proc = run(env)
    assert proc.returncode == 0, proc.stderr
    assert (fake / "apt.log").read_text().splitlines() == [
        "update -qq",
        "install -y -qq chromium chromium-driver mosquitto postgresql openssl",
    ]
    fake, env = _fake_machine(tmp_path, uid=0, apt_rc=100)  # no network: CI fails instead of skipping those tests
    proc = run(env)
    assert proc.returncode == 1 and "apt-get could not install chromium" in proc.stderr
    # without root or sudo: the test command fails rather than skip silently
    fake, env = _fake_machine(tmp_path, uid=1000)
    proc = run(env)
    assert proc.returncode == 1 and "EDGELEUK_SKIP_SYSTEM_TESTS=1" in proc.stderr and not (fake / "apt.log").exists()
    # a developer without root or sudo who asks for it: the tests skip, saying why
    proc = run({**env, "EDGELEUK_SKIP_SYSTEM_TESTS": "1"})
    assert proc.returncode == 0 and "not root, no passwordless sudo" in proc.stdout and not (fake / "apt.log").exists()
    fake, env = _fake_machine(tmp_path, uid=0, present=("chromium", "chromedriver", "mosquitto", "openssl"))
    postgres = tmp_path / "root" / "usr" / "lib" / "postgresql" / "15" / "bin" / "postgres"
    postgres.parent.mkdir(parents=True)
    postgres.write_text("")
    proc = run(env)
    # everything there: nothing to do
    assert proc.returncode == 0 and proc.stdout == "" and not (fake / "apt.log").exists()


def test_the_device_readme_gives_the_packaged_models_own_gate_limits():
    """device/README.md quotes the limits doctor prints for the packaged model; a re-calibrated model must update it."""
    from edgeleuk.manifest import read_manifest
    from edgeleuk.runtime.classifier import DEFAULT_MODEL_DIR

    q = read_manifest(DEFAULT_MODEL_DIR).quality
    text = " ".join((DEVICE / "README.md").read_text().split())
    for quoted in (
        f"`min_focus` ({q.min_focus:.2f} for the packaged model",
        f"mean grey level above {q.max_brightness:.1f}",
        f"more than {q.max_bright_fraction:.1%} of pixels",
        f"darker than {q.min_brightness:.0f} as underexposed",
    ):
        assert quoted in text, quoted
