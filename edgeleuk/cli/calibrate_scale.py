"""edgeleuk calibrate-scale: match this microscope's field of view to the training images'.

Red blood cells are about 7-8 µm on every smear, so their size in pixels is a ruler: a few frames of
any smear give the cells' diameter in this camera's pixels, and the model's manifest holds their
diameter in the training images. Their ratio is the scale (frame pixels per training-image pixel)
that `edgeleuk run --scale` (or `camera.scale` in the device config) uses to crop the field a
training image showed. With --write it goes into the config file.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeleuk calibrate-scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("source (one of)")
    src.add_argument("--camera", help="camera number or 'picamera2'")
    src.add_argument("--source", help="video file, image, folder or glob of images of a smear")
    p.add_argument(
        "--model", help="model file or folder whose training images set the ruler (default: the packaged model)"
    )
    p.add_argument("--frames", type=int, default=30, help="frames to measure (default 30)")
    p.add_argument("--roi", help="region of interest x,y,w,h, as for run")
    p.add_argument("--width", type=int, help="camera capture width")
    p.add_argument("--height", type=int, help="camera capture height")
    p.add_argument(
        "--config", help="device config (TOML) to read the camera from and, with --write, to write camera.scale into"
    )
    p.add_argument("--write", action="store_true", help="write the measured scale into --config")
    return p


def measure(source, roi, frames: int) -> tuple[float | None, int, int]:
    """Median cell diameter (frame pixels) over the frames' model regions; frames seen and measured."""
    from edgeleuk.preprocess import model_region, to_rgb8
    from edgeleuk.runtime.scale import measure_cells

    readings, seen = [], 0
    for frame in source.frames():
        seen += 1
        if frame.image is not None:
            x0, y0, x1, y1 = model_region(frame.image.shape[0], frame.image.shape[1], None, roi)
            reading = measure_cells(to_rgb8(frame.image[y0:y1, x0:x1], frame.color_order))
            if reading.diameter_px is not None:
                readings.append(reading.diameter_px)
        if seen >= frames:
            break
    return (float(np.median(readings)) if len(readings) >= 3 else None), seen, len(readings)


def write_scale(path: Path, scale: float) -> None:
    """Set camera.scale in a TOML file, keeping every other line and comment as it was."""
    from edgeleuk.files import atomic_write_text

    lines = path.read_text().splitlines(keepends=True)
    section, camera_at, done = None, None, False
    for i, line in enumerate(lines):
        header = re.match(r"\s*\[([^\]]+)\]", line)
        if header:
            section = header.group(1).strip()
            camera_at = i if section == "camera" else camera_at
        elif section == "camera" and re.match(r"\s*#?\s*scale\s*=", line):
            lines[i] = (
                f"scale = {scale:.4f}                           # edgeleuk calibrate-scale: frame pixels per "
                "training-image pixel\n"
            )
            done = True
            break
    if not done:
        entry = (f"scale = {scale:.4f}                           # edgeleuk calibrate-scale: frame pixels per "
                 "training-image pixel\n")
        if camera_at is None:
            lines += ["\n[camera]\n", entry]
        else:
            lines.insert(camera_at + 1, entry)
    atomic_write_text(path, "".join(lines))


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from edgeleuk.errors import UsageError, UserError
    from edgeleuk.runtime import load
    from edgeleuk.runtime.config import read_config
    from edgeleuk.runtime.settings import Flag, camera_flags, device_settings, parse_roi
    from edgeleuk.runtime.sources import open_source

    if args.write and not args.config:
        raise UserError("--write needs --config FILE (the device config to write camera.scale into)")
    if args.frames < 3:
        raise UsageError(f"Received: --frames {args.frames}; expected at least 3")
    given = [
        ("model.path", "--model", args.model),
        ("camera.width", "--width", args.width),
        ("camera.height", "--height", args.height),
        ("camera.roi", "--roi", parse_roi(args.roi) if args.roi else None),
    ]
    flags = camera_flags(args.camera, args.source) + [Flag(*g) for g in given if g[2] is not None]
    settings = device_settings(read_config(args.config) if args.config else {}, flags)
    classifier = load(settings.model.path or None)
    if not classifier.cell_diameter_px:
        raise UserError(
            f"{classifier.path}: the model carries no red-cell ruler (cell_diameter_px); convert it with this "
            "edgeleuk and --data"
        )
    cam = settings.camera
    source = open_source(cam.source, None if cam.device is None else str(cam.device), cam.width, cam.height)
    roi = tuple(cam.roi) if cam.roi else None
    try:
        diameter, seen, measured = measure(source, roi, args.frames)
    finally:
        source.close()
    if diameter is None:
        raise UserError(
            f"too few red cells found ({measured} of {seen} frames gave a reading): point the camera at a thin, "
            "focused part of a smear and try again"
        )
    scale = diameter / classifier.cell_diameter_px
    print(f"red cells: {diameter:.1f} px in this camera's frames ({measured} of {seen} frames measured); "
          f"{classifier.cell_diameter_px:.1f} px in the training images")
    print(
        f"scale: {scale:.4f} frame pixels per training-image pixel (the model will see a "
        f"{round(classifier.spec.size * scale)} px square)"
    )
    if args.write:
        write_scale(Path(args.config), scale)
        read_config(args.config)  # still valid
        print(f"wrote camera.scale = {scale:.4f} into {args.config}")
    return 0
