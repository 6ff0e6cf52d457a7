"""utils/checkpoints.py: checkpoint files are read with weights_only=True and checked before use
(the model-side checks, weights that do not fit their model: tests/test_model.py)."""

import os
import zipfile

import pytest
import torch

from utils import checkpoints


class RunsCodeWhenUnpickled:
    """Unpickling this calls os.system: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_load_checkpoint_refuses_pickled_code(tmp_path):
    path, marker = tmp_path / "evil.pt", tmp_path / "code-ran"
    torch.save({"format": checkpoints.CHECKPOINT_FORMAT, "payload": RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(checkpoints.CheckpointError, match=r"evil.pt holds pickled code \(\S+\), "
                       "so it was not loaded") as refused:
        checkpoints.read_checkpoint(path)
    assert not marker.exists() and "weights_only" not in str(refused.value)  # never the unsafe advice


@pytest.mark.parametrize("content", [b"", b"neither a zip nor a pickle", "garbage zip", "empty zip"])
def test_a_file_that_is_no_checkpoint_is_one_line_without_torchs_advice(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content in ("garbage zip", "empty zip"):
        with zipfile.ZipFile(path, "w") as archive:
            if content == "garbage zip":
                archive.writestr("a", "garbage")
    else:
        path.write_bytes(content)
    with pytest.raises(checkpoints.CheckpointError) as refused:
        checkpoints.read_checkpoint(path)
    message = str(refused.value)
    assert "is not a readable checkpoint (not a file that torch.save wrote whole" in message
    assert "weights_only" not in message and "\n" not in message


def test_load_checkpoint_refuses_incomplete_checkpoint(tmp_path):
    path = tmp_path / "incomplete.pt"
    torch.save({"format": checkpoints.CHECKPOINT_FORMAT, "state_dict": {}}, path)
    with pytest.raises(checkpoints.CheckpointError, match="is incomplete"):
        checkpoints.read_checkpoint(path)


def test_a_checkpoint_written_is_read_back_whole(tmp_path):
    checkpoint = {"format": checkpoints.CHECKPOINT_FORMAT, "arch": {"name": "cnn", "num_classes": 2, "in_channels": 1,
                  "options": {}}, "state_dict": {"w": torch.ones(2)}, "epoch": 4}
    checkpoints.write_checkpoint(tmp_path / "a.pt", checkpoint)
    read = checkpoints.read_checkpoint(tmp_path / "a.pt")
    assert read["epoch"] == 4 and torch.equal(read["state_dict"]["w"], torch.ones(2))
    with pytest.raises(checkpoints.CheckpointError, match="lacks its hyperparameters description"):
        checkpoints.read_checkpoint(tmp_path / "a.pt", needs=("hyperparameters",))
