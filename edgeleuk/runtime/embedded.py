"""Labels and preprocessing embedded in the model files themselves, so a file that travels alone
is still usable: a zip `edgeleuk.json` appended to a TFLite flatbuffer (as TFLite's associated
files are packed), and ONNX `metadata_props`. Stdlib only."""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

EMBEDDED_NAME = "edgeleuk.json"


def embed_tflite(path: str | os.PathLike, info: dict[str, Any]) -> None:
    """Append the info as a zip entry; interpreters ignore bytes after the flatbuffer."""
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:  # the OOD matrices: 200 kB of text
        archive.writestr(EMBEDDED_NAME, json.dumps(info, separators=(",", ":")))


def read_tflite_info(path: str | os.PathLike) -> dict[str, Any] | None:
    """The appended info; None when the file has none. A file that names the entry but cannot give
    it back whole (cut short, a flipped byte: the zip's CRC) is damaged, never "without info": its
    labels, out-of-distribution statistics and gate limits would silently be gone."""
    try:
        with zipfile.ZipFile(path) as archive:
            text = archive.read(EMBEDDED_NAME)
    except KeyError:
        return None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        if EMBEDDED_NAME.encode() in Path(path).read_bytes():
            from edgeleuk.errors import UserError

            raise UserError(f"{path}: its embedded {EMBEDDED_NAME} cannot be read ({exc}); the file is damaged: "
                            "convert it again or copy it anew") from None
        return None
    return _parse(text, path)


def _parse(text: str | bytes, path) -> dict[str, Any]:
    from edgeleuk.errors import UserError

    try:
        info = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(
            f"{path}: its embedded {EMBEDDED_NAME} is not valid JSON ({exc}); the file is damaged"
        ) from None
    if not isinstance(info, dict):
        raise UserError(f"{path}: its embedded {EMBEDDED_NAME} is not an object; the file is damaged")
    return info


def read_embedded(path: str | os.PathLike, session: Any = None) -> dict[str, Any] | None:
    """The embedded info of a .tflite or .onnx file (None when the file carries none)."""
    path = Path(path)
    if path.suffix == ".tflite":
        return read_tflite_info(path)
    if path.suffix == ".onnx" and session is not None:
        try:
            props = session.get_modelmeta().custom_metadata_map
        except UnicodeDecodeError as exc:  # a damaged byte in the metadata: onnxruntime cannot turn it into text
            from edgeleuk.errors import UserError

            raise UserError(f"{path}: its metadata is not valid text ({exc.reason} at byte {exc.start}); the file is "
                            "damaged: convert it again or copy it anew") from None
        if EMBEDDED_NAME in props:
            return _parse(props[EMBEDDED_NAME], path)
    return None
