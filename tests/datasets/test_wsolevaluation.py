"""wsolevaluation's benchmarks (cub, ilsvrc, openimages) read from its metadata layout, and export_wsol.py."""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import write_cub, write_metadata, write_openimages
from PIL import Image

import data
import evaluate_cam
import model as models
import train
from utils import cli


def nearest_224(mask: np.ndarray) -> np.ndarray:
    """OpenCV's INTER_NEAREST to 224 x 224, written out: destination pixel d takes source floor(d * src / 224)."""
    height, width = mask.shape
    rows = np.minimum(np.floor(np.arange(224) * (height / 224)).astype(int), height - 1)
    cols = np.minimum(np.floor(np.arange(224) * (width / 224)).astype(int), width - 1)
    return mask[rows][:, cols]


def test_cub_loads_its_three_splits_with_wsolevaluation_transforms(tmp_path):
    written = write_cub(tmp_path)
    loaded = data.load_dataset("cub", tmp_path, download=False)
    assert loaded.info.classes == ("Black_footed_Albatross", "Laysan_Albatross")
    assert loaded.info.image_size == 224 and loaded.info.mean == data.IMAGENET_MEAN
    assert [len(loaded.train), len(loaded.validation), len(loaded.test)] == [6, 3, 3]
    assert list(loaded.validation.targets) == [row[1] for row in written["splits"]["val"]]
    image, label = loaded.train[0]
    assert image.shape == (3, 224, 224) and label == 0
    images, labels = next(iter(loaded.loader("validation", 3, torch.device("cpu"))))
    assert images.shape == (3, 3, 224, 224) and labels.tolist() == [row[1] for row in written["splits"]["val"]]
    # evaluation squashes the photo to 224 x 224 (Resize((224, 224))), no center crop, ImageNet normalization
    image_id = written["splits"]["test"][1][0]
    photo = Image.open(tmp_path / "CUB" / image_id).convert("RGB").resize((224, 224), Image.BILINEAR)
    expected = (torch.from_numpy(np.array(photo)).permute(2, 0, 1).float() / 255
                - torch.tensor(data.IMAGENET_MEAN)[:, None, None]) / torch.tensor(data.IMAGENET_STD)[:, None, None]
    assert torch.allclose(loaded.test[1][0], expected, atol=0.05)
    train_transforms = [type(step).__name__ for step in loaded.train.transform.transforms]
    assert train_transforms[:3] == ["Resize", "RandomCrop", "RandomHorizontalFlip"]
    assert loaded.train.transform.transforms[0].size == (256, 256)
    assert loaded.train.boxes is None  # train: image labels only


def test_boxes_are_rescaled_to_224_as_wsolevaluation_does(tmp_path):
    written = write_cub(tmp_path)
    loaded = data.load_dataset("cub", tmp_path, download=False)
    truth = data.ground_truth(loaded.validation, 0, 3)
    assert truth.inclusive and truth.masks is None and truth.ignore is None
    assert truth.boxes.shape == (3, 2, 4) and truth.boxes.dtype == np.int64
    # image 1: 500 x 333, box (50, 41, 399, 332) -> int(v * 224 / side): by hand
    assert written["boxes"][written["splits"]["val"][1][0]][0] == (50, 41, 399, 332)
    assert truth.boxes[1, 0].tolist() == [22, 27, 178, 223]  # 50*224/500=22.4, 41*224/333=27.6, 178.75, 223.3
    assert truth.boxes[1, 1].tolist() == [0, 0, 4, 12]  # the second box (0, 0, 9, 19): 4.03, 12.78
    assert (truth.boxes[[0, 2], 1] == -1).all()  # one box: the second row is padding
    for row, (image_id, _, (width, height)) in enumerate(written["splits"]["val"]):
        for column, box in enumerate(written["boxes"][image_id]):
            scale = np.array([224 / width, 224 / height] * 2)
            assert truth.boxes[row, column].tolist() == [int(v) for v in np.array(box) * scale]


def test_openimages_masks_are_the_union_and_the_ignore_region(tmp_path):
    written = write_openimages(tmp_path)
    loaded = data.load_dataset("openimages", tmp_path, download=False)
    assert loaded.info.classes == ("01226z", "0by6g")
    truth = loaded.validation.ground_truth(np.arange(2))
    assert truth.boxes.shape == (2, 0, 4) and truth.masks.shape == truth.ignore.shape == (2, 224, 224)
    for row, (image_id, _, _) in enumerate(written["splits"]["val"]):
        first, second, ignore = written["masks"][image_id]
        union = nearest_224(first > 127) | nearest_224(second > 127)
        assert np.array_equal(truth.masks[row], union)
        assert np.array_equal(truth.ignore[row], nearest_224(ignore > 127) & ~union)
        assert truth.ignore[row].any() and not (truth.ignore[row] & truth.masks[row]).any()
    assert np.array_equal(loaded.test.ground_truth(slice(0, 1)).masks[0],
                          loaded.test.ground_truth([0]).masks[0])


def error_of(function) -> str:
    with pytest.raises(cli.DatasetError) as caught:
        function()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_missing_image_is_named_with_its_root(tmp_path):
    written = write_cub(tmp_path)
    missing = written["splits"]["test"][1][0]
    (tmp_path / "CUB" / missing).unlink()
    loaded = data.load_dataset("cub", tmp_path, download=False)
    message = error_of(lambda: next(iter(loaded.loader("test", 2, torch.device("cpu")))))
    assert missing in message and str(tmp_path / "CUB") in message
    (tmp_path / "CUB" / written["splits"]["train"][0][0]).unlink()  # the first: found at load time
    assert "not found under" in error_of(lambda: data.load_dataset("cub", tmp_path, download=False))


def test_another_datasets_metadata_is_refused(tmp_path):
    write_cub(tmp_path)
    write_openimages(tmp_path)
    cub_metadata = tmp_path / "metadata" / "CUB"
    message = error_of(lambda: data.load_dataset("ilsvrc", tmp_path, False,
                                                 options={"metadata_dir": str(cub_metadata)}))
    assert "another dataset's metadata" in message and "ILSVRC" in message
    open_metadata = tmp_path / "metadata" / "OpenImages"
    message = error_of(lambda: data.load_dataset("ilsvrc", tmp_path, False,
                                                 options={"metadata_dir": str(open_metadata)}))
    assert "another dataset's metadata" in message
    message = error_of(lambda: data.load_dataset("cub", tmp_path, False, options={"metadata_dir": str(open_metadata)}))
    assert "another dataset's metadata" in message
    # the whole metadata/ folder works too: its CUB/ is found
    whole = data.load_dataset("cub", tmp_path, False, options={"metadata_dir": str(tmp_path / "metadata")})
    assert len(whole.test) == 3


@pytest.mark.parametrize("split", ["val", "test"])
@pytest.mark.parametrize("how", ["missing", "empty"])
def test_a_split_without_boxes_is_refused(tmp_path, split, how):
    written = write_cub(tmp_path)
    path = written["metadata"] / split / "localization.txt"
    path.unlink() if how == "missing" else path.write_text("")
    message = error_of(lambda: data.load_dataset("cub", tmp_path, download=False))
    assert str(path) in message and how in message and "boxes" in message


def test_boxes_metadata_for_a_masks_dataset_is_refused(tmp_path):
    written = write_openimages(tmp_path)
    (written["metadata"] / "val" / "localization.txt").write_text(f"{written['splits']['val'][0][0]},1,2,3,4\n")
    assert "fields" in error_of(lambda: data.load_dataset("openimages", tmp_path, download=False))


def test_a_mask_of_another_size_is_refused(tmp_path):
    written = write_openimages(tmp_path)
    image_id = written["splits"]["test"][0][0]
    mask_path = tmp_path / "OpenImages" / f"{image_id[:-4]}_m01226z_00000001.png"
    Image.fromarray(np.zeros((10, 12), dtype=np.uint8)).save(mask_path)
    loaded = data.load_dataset("openimages", tmp_path, download=False)
    message = error_of(lambda: loaded.test.ground_truth([0]))
    assert str(mask_path) in message and "12x10" in message


def test_a_16_bit_mask_is_refused(tmp_path):
    """wsolevaluation reads masks with cv2.imread(IMREAD_GRAYSCALE), which keeps a 16-bit pixel's high byte: a
    16-bit mask of 0/1 read as empty, with no word. It is refused, named, with the fix."""
    written = write_openimages(tmp_path)
    image_id = written["splits"]["test"][0][0]
    mask_path = tmp_path / "OpenImages" / f"{image_id[:-4]}_m01226z_00000001.png"
    Image.fromarray(written["masks"][image_id][1].astype(np.uint16) // 255).save(mask_path)  # 0/1, 16-bit
    assert Image.open(mask_path).mode == "I;16"
    loaded = data.load_dataset("openimages", tmp_path, download=False)
    message = error_of(lambda: loaded.test.ground_truth([0]))
    assert message == (f"mask {mask_path} has uint16 pixels, and wsolevaluation reads masks as 8-bit (a 16-bit mask "
                       "of 0/1 reads as empty there); save it as an 8-bit PNG of 0 and 255")


def test_an_image_in_two_splits_is_refused(tmp_path):
    written = write_cub(tmp_path)
    shared = written["splits"]["train"][2]
    write_metadata(written["metadata"], "test", written["splits"]["test"] + [shared],
                   [f"{row[0]},1,1,5,5" for row in written["splits"]["test"] + [shared]])
    message = error_of(lambda: data.load_dataset("cub", tmp_path, download=False))
    assert shared[0] in message and "train" in message and "test" in message


@pytest.mark.slow  # 100,000 metadata lines
def test_a_large_metadata_folder_loads_without_opening_images(tmp_path, monkeypatch):
    """100,000 ILSVRC-style training ids: only the metadata is read, no image is opened (only the
    first of each split is looked for), quickly."""
    count = 100_000
    metadata = tmp_path / "metadata" / "ILSVRC"
    train = [(f"train/n{label:08d}/n{label:08d}_{number}.JPEG", label, (500, 375))
             for number, label in enumerate(np.arange(count) % 1000)]
    val = [(f"val2/{label}/{label}.jpeg", label, (400, 300)) for label in range(3)]
    test = [(f"val/ILSVRC2012_val_{number:08d}.JPEG", number, (640, 480)) for number in range(1, 4)]
    write_metadata(metadata, "train", train, [])
    for split, rows in (("val", val), ("test", test)):
        write_metadata(metadata, split, rows, [f"{row[0]},1,2,30,40" for row in rows])
    for rows in (train, val, test):
        (tmp_path / "ILSVRC" / rows[0][0]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "ILSVRC" / rows[0][0]).write_bytes(b"")  # looked for, never opened

    def refuse(*args, **kwargs):
        raise AssertionError("an image was opened")

    monkeypatch.setattr(Image, "open", refuse)
    started = time.perf_counter()
    loaded = data.load_dataset("ilsvrc", tmp_path, download=False)
    elapsed = time.perf_counter() - started
    assert len(loaded.train) == count and len(loaded.info.classes) == 1000
    assert loaded.info.classes[7] == "n00000007"
    assert isinstance(loaded.train.ids, np.ndarray) and loaded.train.ids.nbytes < 5_000_000
    assert loaded.split_labels(loaded.train)[:3].tolist() == [0, 1, 2]
    assert data.ground_truth(loaded.test, 0, 3).boxes.shape == (3, 1, 4)
    assert elapsed < 10, elapsed


@pytest.mark.slow
def test_train_py_trains_on_cub_and_chooses_best_pt_on_its_own_val_split(tmp_path):
    write_cub(tmp_path / "data")
    args = [f"--data_dir={tmp_path / 'data'}", "--dataset=cub", "--width=4", "--head=0", "--pools=2",
            "--epochs=1", "--batch_size=4", "--download=false", "--precision=fp32",
            f"--checkpoint_dir={tmp_path / 'checkpoints'}", f"--output_dir={tmp_path / 'outputs'}"]
    row = train.train(cli.parse_hyperparameters(train, args))
    assert {"validation_accuracy", "test_accuracy"} <= set(row)
    _, best = models.load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["chosen_on"] == "validation"
    with pytest.raises(cli.UserError, match="cub has its own validation split"):
        train.main([*args, "--validation=2", "--overwrite"])
    with pytest.raises(cli.UserError, match="cub's boxes and masks are scored at 224 x 224, as wsolevaluation"):
        train.main([*args, "--image_size=32", "--overwrite"])
    # the report, its thresholds chosen on the val split, and a heat map per test image named by its id
    heatmaps = tmp_path / "heatmaps"
    evaluate_cam.main([f"--checkpoint={tmp_path / 'checkpoints' / 'last.pt'}", "--groups=localization",
                                f"--output_dir={tmp_path / 'report'}", f"--save_heatmaps={heatmaps}"])
    cam = json.loads((tmp_path / "report" / "localization.json").read_text())
    assert cam["thresholds_chosen_on"] == "validation"
    saved = sorted(str(path.relative_to(heatmaps)) for path in heatmaps.rglob("*.npy"))
    assert saved == sorted(f"{image_id}.npy" for image_id, _, _ in written_test_ids(tmp_path))
    for image_id, _, _ in written_test_ids(tmp_path):  # where wsolevaluation's evaluate_wsol looks
        assert os.path.isfile(os.path.join(heatmaps, image_id + ".npy"))
    heat = np.load(next(heatmaps.rglob("*.npy")))
    assert heat.shape == (224, 224) and 0 <= heat.min() and heat.max() <= 1


def written_test_ids(root: Path) -> list[tuple]:
    """The test split's (id, label, size) rows as write_cub wrote them."""
    rows = (root / "data" / "metadata" / "CUB" / "test" / "image_ids.txt").read_text().split()
    return [(row, None, None) for row in rows]


def edit_first_line(path: Path, new: str) -> str:
    """Replace the first line of a metadata file; returns the line it replaced."""
    lines = path.read_text().splitlines()
    old, lines[0] = lines[0], new
    path.write_text("\n".join(lines) + "\n")
    return old


@pytest.mark.parametrize("file, field, message", [
    ("class_labels.txt", "{id},x", "'x' is not a whole number"),
    ("image_sizes.txt", "{id},wide,10", "'wide' is not a whole number"),
    ("image_sizes.txt", "{id},0,10", "a size not above 0"),
    ("image_sizes.txt", "{id},-5,10", "a size not above 0"),
    ("localization.txt", "{id},abc,1,2,3", "'abc' is not a whole number"),
    ("localization.txt", "{id},24.5,1,30,40", "'24.5' is not a whole number"),
    ("localization.txt", "{id},30,1,20,40", "a box whose end comes before its start"),
    ("localization.txt", "{id},-1,-1,-1,-1", "a box with a negative coordinate"),
    ("localization.txt", "{id},0,0,9000,10", "a box that reaches beyond its image's size"),
])
def test_an_ill_formed_metadata_line_is_an_error_naming_the_file_and_line(tmp_path, file, field, message):
    """Every field is checked against wsolevaluation's layout; an ill-formed line is one line naming
    the file and the line, never a miss scored silently or a suggestion to download the dataset."""
    written = write_cub(tmp_path)
    path = written["metadata"] / "test" / file
    image_id = edit_first_line(path, "").split(",")[0]
    edit_first_line(path, field.format(id=image_id))
    error = error_of(lambda: data.load_dataset("cub", tmp_path, download=False))
    assert message in error and str(path) in error and "line 1" in error and "download" not in error


@pytest.mark.parametrize("bad_id, message", [
    ("../../../outside_dir/trav.png", "climbs out of the data folder"),
    ("/abs/victim.png", "is an absolute path"),
])
def test_an_image_id_outside_the_data_folder_is_refused(tmp_path, bad_id, message):
    written = write_cub(tmp_path)
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        path = written["metadata"] / "test" / name
        old = edit_first_line(path, "")
        edit_first_line(path, old.replace(old.split(",")[0], bad_id, 1))
    error = error_of(lambda: data.load_dataset("cub", tmp_path, download=False))
    assert message in error and "image_ids.txt line 1" in error


def test_an_image_whose_size_disagrees_with_image_sizes_txt_is_refused(tmp_path):
    written = write_cub(tmp_path)
    path = written["metadata"] / "test" / "image_sizes.txt"
    image_id = edit_first_line(path, "").split(",")[0]
    edit_first_line(path, f"{image_id},7000,7000")
    loaded = data.load_dataset("cub", tmp_path, download=False)
    error = error_of(lambda: loaded.test[0])
    assert "image_sizes.txt says" in error and "7000x7000" in error and image_id in error
