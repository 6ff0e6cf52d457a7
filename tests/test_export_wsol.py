"""export_wsol.py: the cluttered set written in wsolevaluation's CUB and OpenImages layouts, read back
by --dataset=cub and --dataset=openimages, and scored there as the built-in set is."""

import cv2
import numpy as np
import pytest
from helpers import run_training, write_mnist_like
from PIL import Image

import data
import evaluate_cam
import export_wsol
from datasets.cluttered import CLUTTER_DEFAULTS
from evaluation import localization
from utils import cli


def test_export_wsol_writes_the_cluttered_set_that_cub_loads_back(tmp_path):
    write_mnist_like(tmp_path / "data" / "fashion-mnist", train_size=40, test_size=20)
    output = tmp_path / "wsol"
    args = [f"--data_dir={tmp_path / 'data'}", f"--output_dir={output}", "--download=false", "--image_size=48",
            "--clutter=2", "--validation=8"]
    export_wsol.main(args)
    source = data.load_dataset("fashion-mnist-cluttered", tmp_path / "data", False, 48, {"clutter": 2}).hold_out(8)
    loaded = data.load_dataset("cub", output, download=False)
    assert [len(loaded.train), len(loaded.validation), len(loaded.test)] == [32, 8, 20]
    assert loaded.info.classes[0] == "T_shirt_top" and len(loaded.info.classes) == 10
    for split in ("train", "validation", "test"):
        images, labels, truth = export_wsol.cluttered_split(source, split)
        exported = getattr(loaded, split)
        assert exported.targets.tolist() == labels.tolist()
        for number in (0, len(labels) - 1):
            path = output / "CUB" / exported.image_id(number)
            assert np.array_equal(np.asarray(Image.open(path)), images[number])
        if split == "train":
            continue
        canvases, index, _ = data.unwrap(getattr(source, split))
        exclusive = (canvases.boxes if index is None else canvases.boxes[index]).numpy()
        assert np.array_equal(exported.boxes[:, 0], exclusive - [0, 0, 1, 1])  # inclusive: x1 - 1, y1 - 1
        truth = data.ground_truth(exported, 0, len(exported))
        assert np.array_equal(truth.boxes[:, 0], np.trunc((exclusive - [0, 0, 1, 1]) * 224 / 48).astype(np.int64))
    with pytest.raises(cli.UserError, match="--overwrite"):
        export_wsol.main(args)
    export_wsol.main(args + ["--overwrite"])


def test_export_wsol_help_lists_its_hyperparameters(capsys):
    with pytest.raises(SystemExit):
        export_wsol.main(["--help"])
    assert "--validation" in capsys.readouterr().out


def test_export_wsol_writes_masks_in_the_openimages_layout(tmp_path):
    write_mnist_like(tmp_path / "data" / "fashion-mnist", train_size=40, test_size=20)
    output = tmp_path / "wsol"
    export_wsol.main([f"--data_dir={tmp_path / 'data'}", f"--output_dir={output}", "--download=false",
                      "--image_size=48", "--clutter=2", "--validation=8", "--layout=openimages", "--limit=10"])
    source = data.load_dataset("fashion-mnist-cluttered", tmp_path / "data", False, 48, {"clutter": 2}).hold_out(8)
    loaded = data.load_dataset("openimages", output, download=False)
    # --limit: the first 10 of each split
    assert [len(loaded.train), len(loaded.validation), len(loaded.test)] == [10, 8, 10]
    assert loaded.test.image_id(0).startswith("test/0") and loaded.test.image_id(0).endswith("/test_000000.png")
    line = (output / "metadata" / "OpenImages" / "test" / "localization.txt").read_text().splitlines()[0]
    image_id, mask, ignore = line.split(",")
    assert mask == image_id[:-4] + f"_m{image_id.split('/')[1]}_0.png" and ignore == image_id[:-4] + "_ignore.png"
    truth = data.ground_truth(loaded.test, 0, 5)  # at 224, as wsolevaluation scores
    expected = data.ground_truth(source.test, 0, 5).masks
    assert np.array_equal(np.asarray(Image.open(output / "OpenImages" / mask)), np.uint8(expected[0]) * 255)
    resized = cv2.resize(np.uint8(expected[0]), (224, 224), interpolation=cv2.INTER_NEAREST) > 0  # wsolevaluation's
    assert np.array_equal(truth.masks[0], resized)
    assert not truth.ignore.any()


def test_the_clutter_defaults_are_the_sets_own():
    """export_wsol.py's literal clutter defaults are cluttered.CLUTTER_DEFAULTS (the set's settings where none are
    given), so they cannot drift apart."""
    assert (export_wsol.clutter, export_wsol.clutter_size) == (CLUTTER_DEFAULTS["clutter"],
                                                               CLUTTER_DEFAULTS["clutter_size"])


def test_help_lists_the_layouts(capsys):
    with pytest.raises(SystemExit):
        export_wsol.main(["--help"])
    assert "--layout" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--layout=voc"], "--layout='voc' is unknown; choose one of: cub, openimages"),
    (["--validation=0"], "--validation must be at least 1"),
    (["--limit=-1"], "--limit must be >= 0"),
])
def test_bad_values_are_refused(tmp_path, args, message):
    with pytest.raises(cli.UserError, match=message.replace("[", r"\[")):
        export_wsol.main([f"--output_dir={tmp_path}", *args])


@pytest.mark.slow
def test_a_cluttered_checkpoint_scores_the_same_through_the_exported_cub_and_openimages(tmp_path):
    """The round trip: the same checkpoint, scored on the built-in set (in wsolevaluation's inclusive
    box convention) and on its export read through --dataset=cub (boxes) and --dataset=openimages
    (masks), gives the same MaxBoxAccV2, top-1 and GT-known loc at the same validation threshold, and PxAP."""
    write_mnist_like(tmp_path / "data" / "fashion-mnist", train_size=200, test_size=60)
    made = ["--image_size=40", "--clutter=3", "--validation=40"]
    run_training(tmp_path / "data", tmp_path, "--dataset=fashion-mnist-cluttered", *made, "--width=8", "--epochs=10",
                 "--lr=0.05", "--batch_size=16")  # 67% on test: some images localized, some not
    for layout in export_wsol.LAYOUTS:
        export_wsol.main([f"--data_dir={tmp_path / 'data'}", f"--output_dir={tmp_path / 'wsol'}", "--download=false",
                          f"--layout={layout}", *made])

    def report(*args: str):
        return evaluate_cam.evaluate(cli.parse_hyperparameters(evaluate_cam, [
            f"--checkpoint={tmp_path / 'checkpoints' / 'last.pt'}", "--groups=localization", "--examples=0",
            "--batch_size=16", "--download=false", f"--output_dir={tmp_path / 'report'}", *args]))

    built_in = report("--inclusive_boxes")
    through_cub = report("--dataset=cub", f"--data_dir={tmp_path / 'wsol'}")
    through_openimages = report("--dataset=openimages", f"--data_dir={tmp_path / 'wsol'}")
    assert through_cub.dataset["name"] == "cub"
    assert through_cub.localization.images == built_in.localization.images == 60
    measured = [key for key, result in built_in.methods.items() if result.localization is not None]
    assert measured == ["cam", "cam_read", "grad_cam", "center"]
    for key in measured:
        expected, boxes = built_in.methods[key].localization, through_cub.methods[key].localization
        for name in ("max_box_acc", "max_box_acc_v2", "top1_loc", "gt_known_loc"):
            assert getattr(boxes, name) == getattr(expected, name), (key, name)
        assert boxes.box_convention == expected.box_convention == localization.BOX_CONVENTIONS[True]
        assert boxes.operating.threshold == expected.operating.threshold  # chosen on the same val canvases
        masks_only = through_openimages.methods[key].localization
        assert masks_only.pxap == pytest.approx(expected.pxap, abs=1e-9), key
        assert masks_only.max_box_acc_v2 is None and masks_only.operating is None  # no boxes: no box metric
    assert built_in.methods["cam"].localization.top1_loc > 0  # a model that localizes some of them
    table = (tmp_path / "report" / "localization.md").read_text()  # the openimages report, written last
    assert "| — | — | — | — | — | — |" in table and "PxAP" in table


def test_a_limit_that_leaves_a_class_out_of_train_is_refused_and_keeps_the_earlier_export(tmp_path):
    write_mnist_like(tmp_path / "data" / "fashion-mnist", train_size=40, test_size=20)
    args = [f"--data_dir={tmp_path / 'data'}", f"--output_dir={tmp_path / 'wsol'}", "--download=false",
            "--image_size=32", "--validation=8"]
    export_wsol.main(args)
    with pytest.raises(cli.UserError, match="--limit=5 leaves class 006.Sandal out of the train split"):
        export_wsol.main([*args, "--limit=5", "--overwrite"])
    assert len(data.load_dataset("cub", tmp_path / "wsol", download=False).test) == 20  # the earlier export stays


def test_an_interrupted_overwrite_keeps_the_earlier_export_whole(tmp_path, monkeypatch):
    """The new export is written beside the old one and swapped in at the end: a Ctrl-C while it is
    written leaves the earlier export as it was, and nothing half-written."""
    write_mnist_like(tmp_path / "data" / "fashion-mnist", train_size=40, test_size=20)
    args = [f"--data_dir={tmp_path / 'data'}", f"--output_dir={tmp_path / 'wsol'}", "--download=false",
            "--image_size=32", "--validation=8"]
    export_wsol.main(args)
    before = sorted((path.relative_to(tmp_path), path.read_bytes()) for path in (tmp_path / "wsol").rglob("*")
                    if path.is_file())
    written = []

    def interrupted(root, layout, split, *rest):
        written.append(split)
        if len(written) == 2:
            raise KeyboardInterrupt  # in the middle of the val split
        return real(root, layout, split, *rest)

    real = export_wsol.write_split
    monkeypatch.setattr(export_wsol, "write_split", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_wsol.main([*args, "--overwrite", "--clutter=2"])
    after = sorted((path.relative_to(tmp_path), path.read_bytes()) for path in (tmp_path / "wsol").rglob("*")
                   if path.is_file())
    assert after == before and sorted(path.name for path in (tmp_path / "wsol").iterdir()) == ["CUB", "metadata"]
    monkeypatch.setattr(export_wsol, "write_split", real)
    export_wsol.main([*args, "--overwrite", "--clutter=2"])  # and a whole one replaces it
    assert len(data.load_dataset("cub", tmp_path / "wsol", download=False).test) == 20


def test_overwrite_never_deletes_a_folder_it_did_not_write(tmp_path):
    photo = tmp_path / "wsol" / "CUB" / "001.Mine" / "photo.jpg"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(b"mine")
    with pytest.raises(cli.UserError, match="CUB is not an export of export_wsol.py .* will not delete it"):
        export_wsol.main([f"--output_dir={tmp_path / 'wsol'}", "--overwrite", "--download=false"])
    assert photo.read_bytes() == b"mine"
