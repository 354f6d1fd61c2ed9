"""The one loader of .keras files (convert, evaluate, a distillation teacher): host side, Keras
imported only when called. A clear error for what is not a Keras model, never Keras's own wording."""

from __future__ import annotations

import zipfile
from pathlib import Path

from edgeleuk.errors import UserError


def load_keras(path: str | Path, what: str = "model"):
    """The model in a .keras file, uncompiled; UserError naming `what` when it is missing or not one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    if path.suffix != ".keras":
        raise UserError(f"{what} {path} is not a Keras model file (.keras): edgeleuk train writes model.keras")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{what} {path} is not a Keras model: a .keras file is a zip archive, and this one "
                        f"({path.stat().st_size} bytes) is not")
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise UserError(
            f"{what} {path} could not be loaded as a Keras model ({str(exc).splitlines()[0][:200]})"
        ) from None
