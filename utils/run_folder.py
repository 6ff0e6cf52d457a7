"""A training run's checkpoint folder: one run at a time, and a last.pt and best.pt that are never lost.

`claimed(path)` gives the folder to one run: a lock (an flock on `.lock`, which records the
process) refuses a second train.py into the same folder while the first runs, and a killed run's
lock is free at once, since an flock ends with its process. Claiming it also deletes the temporary
files that a save killed mid-way left behind. Then:
- a new run refuses to start where another run's checkpoints are (`check_new_run`), unless asked to
  replace them, and even then the old best.pt goes only when the new run saves its first checkpoint;
- best.pt is always the model of the best epoch recorded in last.pt, of the same run (`run_id`):
  a resumed run checks that and rewrites best.pt from last.pt when a kill landed between the two
  writes at the end of an epoch (`repair_best`);
- `written` lists what this run really wrote, for its closing line.
"""

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from utils import checkpoints, cli, files

try:
    import fcntl
except ImportError:  # Windows: no flock, so the folder is not locked
    fcntl = None

LOCK_NAME = ".lock"
TRAINING_STATE = ("optimizer", "scheduler", "position")  # what last.pt holds beyond best.pt's contents


class RunFolder:
    """The checkpoint folder of this run (see the module docstring); `active` False (the processes
    of rank > 0 under torchrun) makes a folder that neither locks, checks nor writes anything."""

    def __init__(self, path: str | Path, active: bool = True):
        self.path, self.active = Path(path), active
        self.last, self.best = self.path / "last.pt", self.path / "best.pt"
        self.written: list[Path] = []
        self.replaces_best = False  # an earlier run's best.pt is deleted when this run first saves

    def check_new_run(self, overwrite: bool) -> None:
        """UserError if the folder holds checkpoints of an earlier run and overwrite is False; with
        overwrite they are replaced by this run's, as it saves them."""
        existing = [path.name for path in (self.last, self.best) if path.exists()]
        if not self.active or not existing:
            return
        if not overwrite:
            raise cli.UserError(
                f"{self.path} holds {' and '.join(existing)} of an earlier run; continue that run with --resume, "
                f"or start a new one with --checkpoint_dir=ANOTHER_FOLDER, or replace it with --overwrite"
            )
        self.replaces_best = True

    def repair_best(self, last: dict) -> str:
        """Make best.pt the model of last.pt's best epoch, rewriting it from last.pt where last.pt
        holds that model (it was saved at the end of that epoch); returns a line saying what was
        done or could not be, "" when best.pt was right."""
        epoch = last["best_epoch"]  # None before the first epoch ends
        if not self.active or epoch is None:
            return ""
        try:
            best = checkpoints.read_checkpoint(self.best)
            if best.get("run_id") == last.get("run_id") and best.get("epoch") == epoch:
                return ""
            found = f"holds epoch {best.get('epoch')}"
        except checkpoints.CheckpointError:
            found = "is missing or unreadable"
        if last["epoch"] == epoch and "position" not in last:
            self.write_best({**{key: value for key, value in last.items() if key not in TRAINING_STATE},
                             "chosen_on": last["best_split"]})
            return f"rewrote {self.best} from {self.last} (epoch {epoch}, the best so far): it {found}"
        return (f"warning: {self.best} {found}, not the best epoch {epoch}, and {self.last} does not hold that model; "
                f"best.pt is written again when an epoch beats {last['best_accuracy']:.2f}% on {last['best_split']}")

    def save_last(self, model, **metadata) -> None:
        """Write last.pt: the model (a model.GapNet) and metadata (utils.checkpoints.checkpoint_of)."""
        if self.replaces_best:
            self.best.unlink(missing_ok=True)
            self.replaces_best = False
        checkpoints.write_checkpoint(self.last, checkpoints.checkpoint_of(model, **metadata))
        self.note(self.last)

    def save_best(self, model, **metadata) -> None:
        self.write_best(checkpoints.checkpoint_of(model, **metadata))

    def write_best(self, checkpoint: dict) -> None:
        checkpoints.write_checkpoint(self.best, checkpoint)
        self.note(self.best)

    def note(self, path: Path) -> None:
        if path not in self.written:
            self.written.append(path)


@contextlib.contextmanager
def claimed(path: str | Path, active: bool = True) -> Iterator[RunFolder]:
    """The RunFolder of path, made if missing and checked to be writable, locked for this process
    while within (UserError naming the holder if another run has it), its stale temporary files
    deleted. With active False: a RunFolder that does nothing, and no lock."""
    if not active:
        yield RunFolder(path, active=False)
        return
    folder = RunFolder(files.writable_folder(path, "checkpoint_dir"))
    descriptor = lock(folder.path)
    try:
        files.remove_temporary_files(folder.path)
        yield folder
    finally:
        if descriptor is not None:
            (folder.path / LOCK_NAME).unlink(missing_ok=True)
            os.close(descriptor)


def lock(folder: Path) -> int | None:
    """An open descriptor of folder/.lock, flock-ed for this process, with this process written in
    it; UserError naming the holder if another process holds it. None where flock does not exist."""
    if fcntl is None:
        return None
    path = folder / LOCK_NAME
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(descriptor, 500).decode(errors="replace").strip() or "another process"
            os.close(descriptor)
            raise cli.UserError(f"{folder} is in use by another training run ({holder}); wait for it to end, "
                                f"or choose another --checkpoint_dir") from None
        try:
            if os.stat(path).st_ino == os.fstat(descriptor).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(descriptor)  # the holder deleted the file as we opened it: lock the new one
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"process {os.getpid()} on {socket.gethostname()}, since {time.strftime('%F %T')}".encode())
    return descriptor
