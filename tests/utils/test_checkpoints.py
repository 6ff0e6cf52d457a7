"""utils/checkpoints.py: checkpoint files are read with weights_only=True and checked before use
(the model-side checks, weights that do not fit their model: tests/test_model.py)."""

import os
import zipfile

import pytest
import torch

import model as models
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


DAMAGED = {  # what is changed in a good checkpoint: the message
    "dataset empty": (lambda c: c.update(dataset={}), "its dataset description lacks or mistypes name, classes"),
    "no data_dir": (lambda c: c["hyperparameters"].pop("data_dir"), "its hyperparameters lack the data_dir"),
    "fewer classes": (lambda c: c["dataset"].update(classes=["a", "b"]),
                      "its dataset has 2 classes and 1 channels, and its model 4 outputs"),
    "options a list": (lambda c: c["arch"].update(options=[1, 2]), "arch.options a dict"),
    "negative width": (lambda c: c["arch"]["options"].update(width=-4), "its stated model 'cnn' with options"),
    "classes a word": (lambda c: c["arch"].update(num_classes="ten"), "must be whole numbers >= 1"),
    "std zero": (lambda c: c["dataset"].update(std=[0.0]), "each std above 0"),
    "mean NaN": (lambda c: c["dataset"].update(mean=[float("nan")]), "one finite number per channel"),
    "std infinite": (lambda c: c["dataset"].update(std=[float("inf")]), "one finite number per channel"),
    "three channels": (lambda c: c["dataset"].update(channels=3), "4 classes and 3 channels, and its model 4 outputs"),
}


@pytest.mark.parametrize("case", DAMAGED)
def test_a_damaged_checkpoint_description_is_one_line_naming_it(tmp_path, case):
    """A checkpoint's metadata is checked as its tensors are: each damage is a CheckpointError naming
    what is wrong, never a traceback in the script that reads it."""
    change, message = DAMAGED[case]
    info = {"name": "mnist", "classes": list("abcd"), "channels": 1, "image_size": 28, "mean": [0.5], "std": [0.5]}
    models.save_checkpoint(tmp_path / "good.pt", models.build_model("cnn", 4, 1, width=4), dataset=info,
                           hyperparameters={"data_dir": str(tmp_path)})
    checkpoint = torch.load(tmp_path / "good.pt", weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, tmp_path / "bad.pt")
    with pytest.raises(checkpoints.CheckpointError, match=message):
        models.load_checkpoint(tmp_path / "bad.pt", needs=checkpoints.TRAINING_METADATA)
