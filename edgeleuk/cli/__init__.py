"""`edgeleuk` command line: a table of subcommands, each imported only when it runs.

Exit codes: 0 ok, 1 user error (a message, no traceback), 2 usage, 3 validate's FAIL, 130 interrupted.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.abc
import importlib.machinery
import os
import sys

from edgeleuk import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("edgeleuk.cli.train", "train the classifier on an image folder (host: TensorFlow)"),
    "evaluate": ("edgeleuk.cli.evaluate", "accuracy, per-class metrics, calibration of a model on a split part"),
    "convert": ("edgeleuk.cli.convert", "export quantized TFLite and ONNX variants, each checked (host)"),
    "run": ("edgeleuk.cli.run", "classify frames from a camera, video or images (device: no TensorFlow)"),
    "validate": (
        "edgeleuk.cli.validate",
        "site acceptance on your own labelled images: exact intervals, PASS or FAIL (device)",
    ),
    "calibrate-scale": (
        "edgeleuk.cli.calibrate_scale",
        "measure this microscope's scale with red cells as the ruler (device)",
    ),
    "doctor": ("edgeleuk.cli.doctor", "check backends, CPU features, cameras and the default model"),
    "collect": ("edgeleuk.cli.collect", "store every device's MQTT messages once in a database (fleet)"),
    "fleet": ("edgeleuk.cli.fleet", "per-device report from the collected database: last seen, model, verdicts, drift"),
}


def sigterm_as_interrupt() -> None:
    """SIGTERM (systemd stop, `kill`) ends a command like Ctrl-C: its clean-up and summary run."""
    import signal

    def _raise(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)


def usage() -> str:
    lines = [
        f"usage: edgeleuk <command> [options]   (edgeleuk {__version__}; research use only, not a diagnosis)",
        "",
        "commands:",
    ]
    lines += [f"  {name:<17}{summary}" for name, (_, summary) in COMMANDS.items()]
    lines += [
        "",
        "Run 'edgeleuk <command> --help' for a command's options; --verbose keeps the libraries' own logging.",
    ]
    return "\n".join(lines)


class _SilentImport(importlib.abc.MetaPathFinder):
    """Imports TensorFlow with the process's stderr closed: its C++ libraries print absl and oneDNN
    notices at load time, before any logging setting can reach them."""

    NAMES = ("tensorflow",)

    def find_spec(self, name, path, target=None):
        if name not in self.NAMES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            from edgeleuk.redirect import redirected

            with redirected():
                run(module)

        spec.loader.exec_module = exec_module
        return spec


def _quiet_native_logs() -> None:
    """The user sees edgeleuk's messages, not the libraries' start-up notices (--verbose keeps them)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ["EDGELEUK_QUIET"] = "1"  # read by the runtime where a native library prints at start
    if not any(isinstance(f, _SilentImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _SilentImport())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv  # anywhere: the libraries' own start-up logging too
    argv = [a for a in argv if a != "--verbose"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"edgeleuk {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        hint = difflib.get_close_matches(name, COMMANDS, n=1)
        print(f"edgeleuk: unknown command {name!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""), file=sys.stderr)
        print(usage(), file=sys.stderr)
        return 2
    if not verbose:
        _quiet_native_logs()
    from edgeleuk.errors import UsageError, UserError

    try:
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.main(argv[1:]) or 0)
    except UserError as exc:
        print(f"edgeleuk {name}: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except KeyboardInterrupt:
        print(f"\nedgeleuk {name}: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        extra = (
            "runtime"
            if name in ("run", "doctor", "calibrate-scale", "validate")
            else ("convert" if name == "convert" else "train")
        )
        from edgeleuk.errors import missing_package

        print(f"edgeleuk {name}: error: {missing_package(exc.name, extra)}", file=sys.stderr)
        return 1
