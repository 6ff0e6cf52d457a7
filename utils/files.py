"""Whole-file writes and writable folders: what is written is the old file or the whole new one.

`atomic_output` writes beside the target and renames over it; `remove_temporary_files` deletes
what a writer killed mid-way left behind; `writable_folder` checks a folder before any work.
"""

import contextlib
import errno
import os
import re
import tempfile
from pathlib import Path

from utils.cli import UserError


def writable_folder(path: str | Path, option: str) -> Path:
    """path, made if missing and checked to take new files; UserError naming --option if not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise UserError(f"cannot write to folder {path} ({reason}); choose another --{option}") from None
    return path


TEMPORARY_NAME = re.compile(r"^\.(.+\.\d+\.tmp(\.[^.]*)?|write-check-.*)$")  # atomic_output's and writable_folder's


@contextlib.contextmanager
def atomic_output(path: str | Path):
    """Yield a temporary path beside `path` to write; on success it is renamed over `path`, so
    readers see the old file or the whole new one, never a half-written file. On error the
    temporary file is removed and `path` is left as it was; a full disk raises UserError.
    A process killed while writing leaves its temporary file (`.NAME.PID.tmp.EXT`, matching
    TEMPORARY_NAME) behind, for `remove_temporary_files` to clean up."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield temporary
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise UserError(
            f"no space left on the disk of {path.parent} to write {path.name} ({error.strerror}); "
            f"free some space or write elsewhere (the previous {path.name}, if any, is kept)"
        ) from None
    finally:
        temporary.unlink(missing_ok=True)


def remove_temporary_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files that killed writers left in folder (see atomic_output); only safe
    while no other process writes there. Returns the deleted paths."""
    removed = []
    for path in Path(folder).iterdir():
        if TEMPORARY_NAME.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
