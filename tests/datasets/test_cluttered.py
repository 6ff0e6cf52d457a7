"""The cluttered Fashion-MNIST: items pasted whole among clutter, with exact boxes and masks, cached per setting."""

import numpy as np
import pytest
import torch
from helpers import write_mnist_like

import data
from datasets import cluttered


def fashion_items(count: int, seed: int = 0) -> np.ndarray:
    """uint8 (count, 28, 28): blocks of random ink on a black border, like Fashion-MNIST items."""
    rng = np.random.default_rng(seed)
    items = np.zeros((count, 28, 28), dtype=np.uint8)
    for item in items:
        top, left = rng.integers(0, 8, size=2)
        height, width = rng.integers(8, 20, size=2)
        item[top:top + height, left:left + width] = rng.integers(1, 256, size=(height, width))
    return items


def test_cluttered_item_is_pasted_whole_inside_its_box_and_mask():
    items = fashion_items(50)
    made = cluttered.make_cluttered(items, size=64, clutter=0, seed=3)
    for item, image, box, mask in zip(items, made["images"], made["boxes"], made["masks"]):
        x0, y0, x1, y1 = box
        ink_rows, ink_cols = np.nonzero(item)
        assert (x1 - x0, y1 - y0) == (np.ptp(ink_cols) + 1, np.ptp(ink_rows) + 1)  # the tight box of the ink
        assert np.array_equal(image[y0:y1, x0:x1], item[ink_rows.min():ink_rows.max() + 1,
                                                          ink_cols.min():ink_cols.max() + 1])
        assert np.array_equal(mask, image > 0) and image.sum() == item.sum()  # no clutter: the item alone


def test_cluttered_masks_and_boxes_survive_the_clutter():
    items = fashion_items(200)
    plain = cluttered.make_cluttered(items, clutter=0, seed=5)
    crowded = cluttered.make_cluttered(items, clutter=6, clutter_size=10, seed=5)
    assert np.array_equal(plain["masks"], crowded["masks"]) and np.array_equal(plain["boxes"], crowded["boxes"])
    for image, box, mask, bare in zip(crowded["images"], crowded["boxes"], crowded["masks"], plain["images"]):
        rows, cols = np.nonzero(mask)
        assert list(box) == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
        assert (image[mask] >= bare[mask]).all()  # the item is kept where clutter overlaps it (brighter wins)
    outside = ~crowded["masks"]
    assert (crowded["images"][outside] > 0).mean() > 0.02  # there is clutter beside the items


def test_cluttered_is_deterministic_from_its_seed():
    items = fashion_items(30)
    first, again = cluttered.make_cluttered(items, seed=1), cluttered.make_cluttered(items, seed=1)
    other = cluttered.make_cluttered(items, seed=2)
    assert all(np.array_equal(first[key], again[key]) for key in first)
    assert not np.array_equal(first["images"], other["images"])
    assert not np.array_equal(first["boxes"], other["boxes"])


def test_cluttered_dataset_from_the_fashion_mnist_files(tmp_path):
    arrays = write_mnist_like(tmp_path / "fashion-mnist", train_size=40, test_size=20)
    loaded = data.load_dataset("fashion-mnist-cluttered", tmp_path, download=False, image_size=48,
                               options={"clutter": 3})
    assert (len(loaded.train), len(loaded.test)) == (40, 20)
    assert loaded.info.image_size == 48 and loaded.info.channels == 1 and loaded.info.classes[0] == "T-shirt/top"
    assert loaded.info.options == {"clutter": 3, "clutter_size": 10, "clutter_seed": 0}
    test = loaded.test
    truth = data.ground_truth(test, 0, 20)
    boxes, masks = truth.boxes, truth.masks
    assert masks.shape == (20, 48, 48) and boxes.shape == (20, 1, 4) and boxes.dtype == np.int64
    assert torch.equal(test.boxes, torch.from_numpy(boxes[:, 0])) and truth.ignore is None and not truth.inclusive
    assert data.ground_truth(loaded.train, 0, 40).masks.shape == (40, 48, 48)
    assert test.targets.tolist() == arrays["t10k"][1].tolist()
    assert loaded.train.targets.tolist() == arrays["train"][1].tolist()
    image, label = test[7]
    assert image.shape == (1, 48, 48) and label == arrays["t10k"][1][7]
    expected = (test.images[7].float() / 255 - loaded.info.mean[0]) / loaded.info.std[0]
    assert torch.allclose(image[0], expected, atol=1e-5)  # no test-time augmentation
    cached = sorted(path.name for path in (tmp_path / "fashion-mnist-cluttered").iterdir())
    assert cached == ["test-v3-size48-clutter3x10-seed0.pt", "train-v3-size48-clutter3x10-seed0.pt"]
    again = data.load_dataset("fashion-mnist-cluttered", tmp_path, download=False, image_size=48,
                              options={"clutter": 3}).test
    assert torch.equal(again.images, test.images) and np.array_equal(data.ground_truth(again, 0, 20).masks, masks)


def test_ground_truth_of_a_held_out_split_is_that_of_its_training_canvases(tmp_path):
    """The validation split of hold_out() reads the boxes and masks of the last training canvases,
    and each mask is the item's ink, whose tight box is the box."""
    write_mnist_like(tmp_path / "fashion-mnist", train_size=40, test_size=10)
    loaded = data.load_dataset("fashion-mnist-cluttered", tmp_path, download=False, image_size=48,
                               options={"clutter": 3})
    held = loaded.hold_out(15)
    truth, whole = data.ground_truth(held.validation, 5, 15), data.ground_truth(loaded.train, 30, 40)
    boxes, masks = truth.boxes[:, 0], truth.masks
    assert np.array_equal(truth.boxes, whole.boxes) and np.array_equal(masks, whole.masks)
    for box, mask in zip(boxes, masks):
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1] == box.tolist()
    assert data.ground_truth(held.validation, 0, 20).boxes.shape == (15, 1, 4)  # clipped to the split
    mnist_like = data.load_dataset("fashion-mnist", tmp_path, download=False)
    assert data.ground_truth(mnist_like.test, 0, 5) is None


def test_cluttered_settings_are_checked(tmp_path):
    write_mnist_like(tmp_path / "fashion-mnist", train_size=10, test_size=10)
    with pytest.raises(data.DatasetError, match="has no setting colour"):
        data.load_dataset("fashion-mnist-cluttered", tmp_path, download=False, options={"colour": 1})
    with pytest.raises(data.DatasetError, match="a canvas of 20 px cannot hold 28x28 items"):
        data.load_dataset("fashion-mnist-cluttered", tmp_path, download=False, image_size=20)
