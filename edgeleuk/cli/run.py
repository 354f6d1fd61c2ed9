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
    src.add_argument("--source", help="video file, image, folder or glob of images; a folder or glob is one sample (one verdict "
                     "for all its images): run each slide's folder on its own")
    p.add_argument("--model", help=".tflite/.onnx file or conversion folder (default: the packaged int8 model)")
    p.add_argument("--variant", help="variant of the model folder (default: tflite-int8)")
    p.add_argument("--backend", help="litert (default for .tflite), tflite-runtime, onnxruntime, or tf-lite (host only)")
    p.add_argument("--threads", type=int, help="inference threads (default: all cores)")
    p.add_argument("--config", help="device configuration file (TOML, see device/edgeleuk.toml); flags override it")
    p.add_argument("--roi", help="region of interest x,y,w,h (default: centred square crop)")
    p.add_argument("--width", type=int, help="camera capture width")
    p.add_argument("--height", type=int, help="camera capture height")
    p.add_argument("--frames", type=int, help="stop after N accepted frames and print the sample's verdict")
    p.add_argument("--min-confidence", type=float, help="below this the verdict is 'refer to a specialist' (default 0.8)")
    p.add_argument("--min-focus", type=float, help="quality gate: least variance of the Laplacian (default 4.2)")
    p.add_argument("--scale", type=float, help="frame pixels per training-image pixel, so the model sees the field a training "
                   "image showed (edgeleuk calibrate-scale measures it; default: the whole centre square)")
    p.add_argument("--max-ood-fraction", type=float,
                   help="above this share of out-of-distribution usable frames the sample is 'out of distribution: refer' (default: the model's, 0.25)")
    p.add_argument("--log", help="JSONL log file, one line per frame, flushed per line")
    p.add_argument("--save-frames", metavar="DIR",
                   help="keep frames: with --label, every usable one in DIR/<class>/<sample>/ with a sidecar JSON (the layout "
                        "train and validate read; the live view's 'Save this field as' buttons write there too); without, "
                        "the flagged ones (unusable, out of distribution, low confidence)")
    p.add_argument("--label", metavar="CLASS", help="--save-frames: the class of the slide being scanned (its diagnosis, known)")
    p.add_argument("--sample", metavar="NAME",
                   help="--save-frames: the sample's folder name, e.g. a patient or slide number (default: the start time; "
                        "a new sample adds -2, -3, …)")
    p.add_argument("--realtime", action="store_true",
                   help="play a video at its recorded frame rate, keeping only the newest frame (as a live camera does)")
    p.add_argument("--display", action="store_true", help="show a window (needs a GUI build of OpenCV)")
    p.add_argument("--publish", metavar="mqtt://HOST[:PORT]/PREFIX",
                   help="send each sample's verdict to an MQTT broker through a durable local queue (needs edgeleuk[publish]); "
                   "credentials and TLS in the config's [publish]")
    p.add_argument("--device-id", help="this device's name in the published topics (default: the host name)")
    p.add_argument("--publish-frames", action="store_true", help="--publish: every frame's record too")
    p.add_argument("--serve", metavar="[HOST:]PORT",
                   help="serve the live view to a browser (default host 127.0.0.1; any other host needs the printed token); "
                   "needs edgeleuk[serve]")
    p.add_argument("--quiet", action="store_true", help="no per-frame output, only the summary")
    p.add_argument("--exit-at-end", action="store_true",
                   help="with --serve: exit when the source ends (default: keep serving its result until Ctrl-C)")
    return p


def _roi(text: str | None):
    from edgeleuk.errors import UsageError

    if not text:
        return None
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or min(values) < 0 or values[2] == 0 or values[3] == 0:
        raise UsageError(f"Received: --roi {text}; expected x,y,w,h (non-negative integers, w and h > 0)")
    return values


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from dataclasses import replace

    from edgeleuk.cli import sigterm_as_interrupt
    from edgeleuk.errors import UsageError, UserError
    from edgeleuk.runtime import load
    from edgeleuk.runtime.config import read_config
    from edgeleuk.runtime.quality import QualityThresholds
    from edgeleuk.runtime.saving import SiteSet
    from edgeleuk.runtime.session import Control, RunOptions, run
    from edgeleuk.runtime.sources import open_source

    conf = read_config(args.config) if args.config else {}
    model_c, cam_c, sample_c, log_c, serve_c, pub_c = (conf.get(k, {}) for k in ("model", "camera", "sample", "log", "serve", "publish"))
    quality_c = dict(conf.get("quality", {}))
    max_scale_error = quality_c.pop("max_scale_error", 1.5)
    if args.min_focus is not None:
        quality_c["min_focus"] = args.min_focus  # the model's limits, then the config's, then the flag
    camera = args.camera if args.camera is not None else (None if args.source else cam_c.get("device"))
    source_path = args.source or (None if args.camera is not None else cam_c.get("source"))
    if args.camera is not None and args.source:
        raise UsageError("pass either --camera or --source, not both")
    for name, value in (("min-confidence", args.min_confidence), ("max-ood-fraction", args.max_ood_fraction)):
        if value is not None and not 0 <= value <= 1:
            raise UsageError(f"Received: --{name} {value}; expected 0 … 1")
    if args.scale is not None and not 0.05 <= args.scale <= 50:
        raise UsageError(f"Received: --scale {args.scale}; expected 0.05 … 50 (frame pixels per training-image pixel)")
    import math

    if args.min_focus is not None and not (math.isfinite(args.min_focus) and args.min_focus >= 0):
        raise UsageError(f"Received: --min-focus {args.min_focus}; expected a number ≥ 0")
    if args.threads is not None and args.threads > 256:
        raise UsageError(f"Received: --threads {args.threads}; expected 1 … 256")
    for name in ("frames", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"Received: --{name} {value}; expected at least 1")
    log = args.log
    if log is None and log_c.get("folder"):
        from datetime import datetime

        log = str(Path(log_c["folder"]) / f"edgeleuk-{datetime.now():%Y%m%d-%H%M%S}.jsonl")
    roi = _roi(args.roi) if args.roi else (tuple(cam_c["roi"]) if cam_c.get("roi") else None)
    from edgeleuk.files import writable_file, writable_folder

    if log:
        _say_where_the_log_goes(Path(log))
        writable_file(log, "--log")
    save_frames = args.save_frames or log_c.get("save_frames")
    label = _site_label(args, save_frames)
    if save_frames:
        writable_folder(save_frames, "--save-frames")
    options = RunOptions(frames=args.frames or sample_c.get("frames"),
                         min_confidence=args.min_confidence if args.min_confidence is not None else sample_c.get("min_confidence", 0.8),
                         roi=roi, log=Path(log) if log else None,
                         save_frames=Path(save_frames) if save_frames else None, label=label,
                         display=args.display, status="off" if args.quiet else "auto",
                         scale=args.scale if args.scale is not None else cam_c.get("scale"), max_scale_error=max_scale_error,
                         max_ood_fraction=args.max_ood_fraction if args.max_ood_fraction is not None else sample_c.get("max_ood_fraction"))
    source = open_source(source_path, None if camera is None else str(camera),
                         args.width or cam_c.get("width"), args.height or cam_c.get("height"), realtime=args.realtime)
    view = None
    try:  # the source is closed on every way out: a capture thread left inside OpenCV aborts the process at exit
        classifier = load(args.model or model_c.get("path") or None, variant=args.variant or model_c.get("variant"),
                          backend=args.backend or model_c.get("backend"), threads=args.threads or model_c.get("threads"))
        options.thresholds = replace(classifier.quality or QualityThresholds(), **quality_c)
        sigterm_as_interrupt()  # systemd stop: same clean ending as Ctrl-C
        print(f"model: {classifier.name} ({classifier.path.name}, {classifier.backend.name} {classifier.backend.version}, "
              f"{classifier.backend.threads} threads); research use only, not a diagnosis", flush=True)
        control = Control()
        model = _model_info(classifier)
        if options.save_frames:
            options.site = SiteSet(options.save_frames, model, options.scale, args.sample)
            _say_where_frames_go(options, classifier.labels)
        address = args.serve or serve_c.get("address")
        if address:
            view = _live_view(str(address), serve_c, control, classifier, options, model)
        sinks = [view] if view else []
        url = args.publish or pub_c.get("url")
        if url:
            sinks.append(_publisher(url, args, pub_c, model, log))
        summary, verdict = run(classifier, source, options, sinks=sinks, control=control)
        if view is not None and not args.exit_at_end:
            _linger(view, control, summary.stopped_by)
    finally:
        source.close()
        if view is not None:
            view.shutdown()
    s = summary.as_dict(verdict)
    rejected = ", ".join(f"{k}: {v}" for k, v in summary.rejected.items()) or "none"
    print(f"frames: {s['frames_seen']} seen, {s['frames_accepted']} accepted, rejected ({rejected}), "
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
    return 0


def _say_where_the_log_goes(log: Path) -> None:
    """A new folder and an old log are both said, never done in silence."""
    if not log.parent.exists():
        print(f"log: creating the folder {log.parent}", flush=True)
    elif log.is_file() and log.stat().st_size > 0:
        with open(log, "rb") as fh:
            lines = sum(1 for _ in fh)
        print(f"log: appending to {log}, which already holds {lines} lines (an earlier run's); each run ends with its own summary line",
              flush=True)


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


def _publisher(url: str, args, conf: dict, model: dict, log):
    import socket
    import sys

    from edgeleuk.runtime.publish import Publisher

    queue = conf.get("queue") or str((Path(log).parent if log else Path.home() / ".local" / "state" / "edgeleuk") / "outbox.sqlite")
    publisher = Publisher(url, Path(queue), args.device_id or conf.get("device_id") or socket.gethostname(),
                          {"name": model["name"], "sha256": model["sha256"]}, frames=args.publish_frames or conf.get("frames", False),
                          username=conf.get("username"), password=conf.get("password"), ca_file=conf.get("ca_file"),
                          certfile=conf.get("certfile"), keyfile=conf.get("keyfile"),
                          resend_window=float(conf.get("resend_window", 300.0)), warn=lambda text: print(text, file=sys.stderr, flush=True))
    print(f"publishing to {publisher.address.host}:{publisher.address.port} as {publisher.topic_base}/… "
          f"(queue {queue}; {publisher.outbox.count()} waiting from before)", flush=True)
    return publisher


def _site_label(args, save_frames: str | None) -> str | None:
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
        print(f"saving: flagged frames to {folder}; the live view's buttons save a field as its class into {folder}/<class>/",
              flush=True)
        return
    new = "" if label in labels else f" (not one of the model's classes, {', '.join(labels)}: a new class for train)"
    print(f"saving: every usable frame as {label}{new} to {folder / label / options.site.sample_name(1)}/", flush=True)


def _model_info(classifier) -> dict:
    from edgeleuk import __version__
    from edgeleuk.manifest import sha256_file

    sha = classifier.variant.sha256 if classifier.variant else sha256_file(classifier.path)
    return {"name": classifier.name, "file": classifier.path.name, "sha256": sha, "edgeleuk": __version__}


def _live_view(address: str, conf: dict, control, classifier, options, model: dict):
    from edgeleuk.runtime.access import ServeSettings
    from edgeleuk.runtime.live import LiveView

    settings = ServeSettings(address, conf.get("token"), tuple(str(h) for h in conf.get("hosts") or ()))
    view = LiveView(settings, control, classifier.labels, options.log, model, site=options.site)
    where = "loopback only" if view.token is None else "token required: keep this address private"
    print(f"live view: {view.url} ({where})", flush=True)
    return view
