"""edgeleuk run: classify frames from a camera, a video or images on the device (no TensorFlow).

Research use only: the output is not a diagnosis.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeleuk run", description=__doc__)
    src = p.add_argument_group("source (one of)")
    src.add_argument("--camera", help="camera number (USB/UVC, V4L2) or 'picamera2' for a Raspberry Pi CSI camera")
    src.add_argument(
        "--source",
        help="video file, image, folder or glob of images; a folder or glob is one sample (one verdict "
        "for all its images): run each slide's folder on its own",
    )
    p.add_argument("--model", help=".tflite/.onnx file or conversion folder (default: the packaged int8 model)")
    p.add_argument("--variant", help="variant of the model folder (default: tflite-int8)")
    p.add_argument(
        "--backend", help="litert (default for .tflite), tflite-runtime, onnxruntime, or tf-lite (host only)"
    )
    p.add_argument("--threads", type=int, help="inference threads (default: all cores)")
    p.add_argument("--config", help="device configuration file (TOML, see device/edgeleuk.toml); flags override it")
    p.add_argument("--roi", help="region of interest x,y,w,h (default: centred square crop)")
    p.add_argument("--width", type=int, help="camera capture width")
    p.add_argument("--height", type=int, help="camera capture height")
    _sample_args(p)
    _saving_args(p)
    _output_args(p)
    return p


def _sample_args(p: argparse.ArgumentParser) -> None:
    """The sample: when it ends, what it takes to answer and to refer."""
    p.add_argument("--frames", type=int, help="stop after N accepted frames and print the sample's verdict")
    p.add_argument(
        "--min-confidence", type=float, help="below this the verdict is 'refer to a specialist' (default 0.8)"
    )
    p.add_argument("--min-focus", type=float, help="quality gate: least variance of the Laplacian (default 4.2)")
    p.add_argument(
        "--scale",
        type=float,
        help="frame pixels per training-image pixel, so the model sees the field a training "
        "image showed (edgeleuk calibrate-scale measures it; default: the whole centre square)",
    )
    p.add_argument(
        "--max-ood-fraction",
        type=float,
        help="above this share of out-of-distribution usable frames the sample is 'out of distribution: refer' "
             "(default: the model's, 0.25)",
    )


def _saving_args(p: argparse.ArgumentParser) -> None:
    """The log and the frames kept."""
    p.add_argument("--log", help="JSONL log file, one line per frame, flushed per line")
    p.add_argument(
        "--save-frames",
        metavar="DIR",
        help="keep frames: with --label, every usable one in DIR/<class>/<sample>/ with a sidecar JSON (the layout "
        "train and validate read; the live view's 'Save this field as' buttons write there too); without, "
        "the ones worth a second look (refused, out of distribution, low confidence)",
    )
    p.add_argument(
        "--label", metavar="CLASS", help="--save-frames: the class of the slide being scanned (its diagnosis, known)"
    )
    p.add_argument(
        "--sample",
        metavar="NAME",
        help="--save-frames: the sample's folder name, e.g. a patient or slide number (default: the start time; "
        "a new sample adds -2, -3, …)",
    )
    p.add_argument(
        "--realtime", action="store_true",
        help="play a video at its recorded frame rate, keeping only the newest frame (as a live camera does)"
    )


def _output_args(p: argparse.ArgumentParser) -> None:
    """Where results go: the window, the broker, the browser."""
    p.add_argument("--display", action="store_true", help="show a window (needs a GUI build of OpenCV)")
    p.add_argument(
        "--publish",
        metavar="mqtt://HOST[:PORT]/PREFIX",
        help="send each sample's verdict to an MQTT broker through a durable local queue (needs edgeleuk[publish]); "
        "credentials and TLS in the config's [publish]",
    )
    p.add_argument("--device-id", help="this device's name in the published topics (default: the host name)")
    p.add_argument("--publish-frames", action="store_true", help="--publish: every frame's record too")
    p.add_argument(
        "--serve",
        metavar="[HOST:]PORT",
        help="serve the live view to a browser (default host 127.0.0.1; any other host needs the printed token); "
        "needs edgeleuk[serve]",
    )
    p.add_argument("--quiet", action="store_true", help="no per-frame output, only the summary")
    p.add_argument("--exit-at-end", action="store_true",
                   help="with --serve: exit when the source ends (default: keep serving its result until Ctrl-C)")


def _flags(args) -> list:
    """The flags given, each over the config key it overrides."""
    from edgeleuk.runtime.settings import Flag, camera_flags, parse_roi

    given = [
        ("model.path", "--model", args.model),
        ("model.variant", "--variant", args.variant),
        ("model.backend", "--backend", args.backend),
        ("model.threads", "--threads", args.threads),
        ("camera.width", "--width", args.width),
        ("camera.height", "--height", args.height),
        ("camera.scale", "--scale", args.scale),
        ("camera.roi", "--roi", parse_roi(args.roi) if args.roi else None),
        ("sample.frames", "--frames", args.frames),
        ("sample.min_confidence", "--min-confidence", args.min_confidence),
        ("sample.max_ood_fraction", "--max-ood-fraction", args.max_ood_fraction),
        ("quality.min_focus", "--min-focus", args.min_focus),
        ("log.save_frames", "--save-frames", args.save_frames),
        ("publish.url", "--publish", args.publish),
        ("publish.device_id", "--device-id", args.device_id),
        ("publish.frames", "--publish-frames", True if args.publish_frames else None),
        ("serve.address", "--serve", args.serve),
    ]
    return camera_flags(args.camera, args.source) + [Flag(*g) for g in given if g[2] is not None]


def _settings(args):
    from edgeleuk.runtime.config import read_config
    from edgeleuk.runtime.settings import device_settings

    return device_settings(read_config(args.config) if args.config else {}, _flags(args))


def _log_path(args, settings) -> Path | None:
    """--log, else a new file per start in the config's log folder; said aloud and checked before the run."""
    from edgeleuk.files import writable_file

    log = args.log
    if log is None and settings.log.folder:
        from datetime import datetime

        log = str(Path(settings.log.folder) / f"edgeleuk-{datetime.now():%Y%m%d-%H%M%S}.jsonl")
    if log:
        _say_where_the_log_goes(Path(log))
        writable_file(log, "--log")
    return Path(log) if log else None


def _options(args, settings):
    from edgeleuk.files import writable_folder
    from edgeleuk.runtime.records import RunOptions

    log = _log_path(args, settings)
    save_frames = settings.log.save_frames
    label = _site_label(args, save_frames)
    if save_frames:
        writable_folder(save_frames, "--save-frames")
    sample, camera = settings.sample, settings.camera
    return RunOptions(
        frames=sample.frames, min_confidence=sample.min_confidence if sample.min_confidence is not None else 0.8,
        roi=tuple(camera.roi) if camera.roi else None, log=log,
        save_frames=Path(save_frames) if save_frames else None, label=label, display=args.display,
        status="off" if args.quiet else "auto", scale=camera.scale,
        max_scale_error=settings.quality.max_scale_error or 1.5, max_ood_fraction=sample.max_ood_fraction
    )


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from edgeleuk.runtime.sources import open_source

    settings = _settings(args)
    options = _options(args, settings)
    cam = settings.camera
    source = open_source(
        cam.source, None if cam.device is None else str(cam.device), cam.width, cam.height, realtime=args.realtime
    )
    try:  # the source is closed on every way out: a capture thread left inside OpenCV aborts the process at exit
        summary, verdict = _run(args, settings, options, source)
    finally:
        source.close()
    _report(summary, verdict, options)
    return 0


def _run(args, settings, options, source):
    """Load the model, compose the live view and the publisher from the settings, and run."""
    from dataclasses import replace

    from edgeleuk.cli import sigterm_as_interrupt
    from edgeleuk.manifest import QualityLimits
    from edgeleuk.runtime import load
    from edgeleuk.runtime.records import Control
    from edgeleuk.runtime.saving import SiteSet
    from edgeleuk.runtime.session import run
    from edgeleuk.runtime.sinks import Outlets, compose

    m = settings.model
    classifier = load(m.path or None, variant=m.variant, backend=m.backend, threads=m.threads)
    # the model's, then the config's, then the flag
    overrides = {k: v for k, v in settings.given("quality").items() if k != "max_scale_error"}
    options.limits = replace(classifier.quality or QualityLimits(), **overrides)
    sigterm_as_interrupt()  # systemd stop: same clean ending as Ctrl-C
    print(f"model: {classifier.name} ({classifier.path.name}, {classifier.backend.name} {classifier.backend.version}, "
          f"{classifier.backend.threads} threads); research use only, not a diagnosis", flush=True)
    control, model = Control(), _model_info(classifier)
    if options.save_frames:
        options.site = SiteSet(options.save_frames, model, options.scale, args.sample)
        _say_where_frames_go(options, classifier.labels)
    outlets = Outlets(settings.serve if settings.serve.address else None,
                      settings.publish if settings.publish.url else None, model)
    everyone = compose(classifier.labels, options, control, outlets=outlets)
    view = None
    if settings.serve.address:  # its handle, to linger on it and shut it down
        from edgeleuk.runtime.live import LiveView

        view = next(s for s in everyone if isinstance(s, LiveView))
    try:
        summary, verdict = run(classifier, source, options, control=control, composed=everyone)
        if view is not None and not args.exit_at_end:
            _linger(view, control, summary.stopped_by)
        return summary, verdict
    finally:
        if view is not None:
            view.shutdown()


def _report(summary, verdict, options) -> None:
    """The run's ending on the terminal; none of its frames readable is an error."""
    from edgeleuk.errors import UserError

    s = summary.as_dict(verdict)
    refused = ", ".join(f"{k}: {v}" for k, v in summary.refused.items()) or "none"
    print(f"frames: {s['frames_seen']} seen, {s['frames_accepted']} answered, refused ({refused}), "
          f"{s['frames_out_of_distribution']} out of distribution, "
          f"{s['frames_unreadable']} unreadable; {s['fps']} frames/s; latency p50 {s['latency_ms_p50']} ms "
          f"(inference {s['inference_ms_p50']} ms); stopped: {summary.stopped_by}")
    print(verdict.describe())
    for note in summary.unjudged():
        print(f"note: {note}")
    if options.log:
        print(f"log: {options.log}")
    if summary.seen and summary.errors == summary.seen:
        raise UserError(f"none of the {summary.seen} frames could be read (see the lines above" +
                        (f" and {options.log})" if options.log else ")"))


def _say_where_the_log_goes(log: Path) -> None:
    """A new folder and an old log are both said, never done in silence."""
    if not log.parent.exists():
        print(f"log: creating the folder {log.parent}", flush=True)
    elif log.is_file() and log.stat().st_size > 0:
        with open(log, "rb") as fh:
            lines = sum(1 for _ in fh)
        print(
            f"log: appending to {log}, which already holds {lines} lines (an earlier run's); each run ends with its "
            "own summary line",
            flush=True,
        )


def _linger(view, control, stopped_by: str | None) -> None:
    """A source that ended (a folder, a clip, --frames) leaves the live view up with its result
    until Ctrl-C or the page's Stop, so the printed address is not dead when opened."""
    if stopped_by not in ("end of source",) and not (stopped_by or "").endswith("accepted frames"):
        return
    print(f"the source ended ({stopped_by}); the live view stays at {view.url} with this sample's result until Ctrl-C "
          "or its Stop button (--exit-at-end: exit at once)", flush=True)
    try:
        while not control.wait_stop(0.5):
            pass
    except KeyboardInterrupt:
        pass


def _site_label(args, save_frames: str | None) -> str | None:
    """--label checked as a folder name; --label and --sample need somewhere to save."""
    from edgeleuk.errors import UsageError
    from edgeleuk.runtime.saving import folder_name

    if (args.label or args.sample) and not save_frames:
        raise UsageError("--label and --sample name what --save-frames keeps: add --save-frames DIR")
    if args.sample:
        folder_name(args.sample, "--sample")
    return folder_name(args.label, "--label") if args.label else None


def _say_where_frames_go(options, labels: tuple[str, ...]) -> None:
    folder, label = options.save_frames, options.label
    if label is None:
        print(
            f"saving: the frames worth a second look to {folder}; the live view's buttons save a field as its class "
            "into "
            f"{folder}/<class>/",
            flush=True,
        )
        return
    new = "" if label in labels else f" (not one of the model's classes, {', '.join(labels)}: a new class for train)"
    print(f"saving: every usable frame as {label}{new} to {folder / label / options.site.sample_name(1)}/", flush=True)


def _model_info(classifier) -> dict:
    from edgeleuk import __version__
    from edgeleuk.manifest import sha256_file

    sha = classifier.variant.sha256 if classifier.variant else sha256_file(classifier.path)
    return {"name": classifier.name, "file": classifier.path.name, "sha256": sha, "edgeleuk": __version__}
