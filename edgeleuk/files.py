"""Reading and writing files safely: the one helper for atomic writes, the checks of output paths
and the one reader of the text files a user names.

Stdlib only (the device imports it). Every file edgeleuk writes goes through `atomic_path`: a
temporary name beside the target, renamed onto it only when the write finished, so a killed or
failed command never leaves a half-written file; output folders and files are checked before any
work starts, so a wrong path is one clear error instead of a traceback at the end. `read_text`
turns a missing file, a folder, unreadable or non-UTF-8 bytes into one clear error each.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator

from edgeleuk.errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix, so writers that infer the format from it work);
    renamed onto `path` when the block ends normally, removed when it raises."""
    path = Path(path)
    if path.is_symlink():  # the link's target is rewritten and the link stays, as a shell's `>` does
        path = Path(os.path.realpath(path))
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _take_over(tmp, path)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _take_over(tmp: Path, path: Path) -> None:
    """The new file gets the mode, owner and group of the one it replaces (a config kept 640 for the
    group `edgeleuk` stays so); a new file gets the umask's mode. Where the owner or group cannot be
    kept (another user's file), the mode loses the bits that would show it to others."""
    try:
        old = os.stat(path)
    except FileNotFoundError:
        os.chmod(tmp, 0o666 & ~umask())
        return
    mode = stat.S_IMODE(old.st_mode)
    try:
        os.chown(tmp, old.st_uid, old.st_gid)
    except PermissionError:
        try:
            os.chown(tmp, -1, old.st_gid)
            mode &= 0o770
        except PermissionError:
            mode &= 0o700
    os.chmod(tmp, mode)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_text(path: str | os.PathLike, what: str, kind: str = "text") -> str:
    """The UTF-8 text of the file at `path`; UserError naming `what` (e.g. "config file") when it is
    missing, a folder, unreadable or not UTF-8 (`kind`: what the text should be, for that message)."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a folder, not a file") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text ({kind} is UTF-8)") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path} ({exc.strerror or exc})") from None


def writable_folder(path: str | os.PathLike, what: str) -> Path:
    """Create the folder if needed and prove a file can be made in it; UserError naming `what` otherwise."""
    path = Path(path)
    try:  # exists() itself raises on a name the system refuses (too long)
        if path.exists() and not path.is_dir():
            raise UserError(f"{what} {path} is a file, not a folder")
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".edgeleuk-probe-"):
            pass
    except OSError as exc:
        raise UserError(f"cannot write into {what} {path} ({exc.strerror or exc})") from None
    return path


def writable_file(path: str | os.PathLike, what: str) -> Path:
    """A file we may append to (its folder made if missing; the file itself is not created here, so a
    command refused later leaves none); UserError naming `what` otherwise."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder, not a file")
    writable_folder(path.parent, f"the folder of {what}")
    if path.exists():
        try:
            with open(path, "a"):
                pass
        except OSError as exc:
            raise UserError(f"cannot write {what} {path} ({exc.strerror or exc})") from None
    return path


def umask() -> int:
    """This process's umask (reading it means setting it: set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
