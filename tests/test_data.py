import pickle
from urllib.error import URLError

import numpy as np
import pytest
import scipy.io
import torch
from conftest import write_mnist_like
from PIL import Image
from torchvision import datasets

from utils import cli
import data

RNG = np.random.default_rng(0)


def pixels(count, height, width, channels):
    return RNG.integers(0, 256, size=(count, height, width, channels), dtype=np.uint8)


def write_cifar(root, variant):
    """cifar-10-batches-py/ or cifar-100-python/ with the pickled batches torchvision reads."""
    if variant == "cifar10":
        folder, train_files, test_file, label_key, meta_file, names_key = (
            root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "labels",
            "batches.meta", "label_names",
        )
        names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    else:
        folder, train_files, test_file, label_key, meta_file, names_key = (
            root / "cifar-100-python", ["train"], "test", "fine_labels", "meta", "fine_label_names",
        )
        names = [f"class{i}" for i in range(100)]
    folder.mkdir(parents=True)
    for name in train_files + [test_file]:
        images = pixels(4, 32, 32, 3)
        batch = {"data": images.transpose(0, 3, 1, 2).reshape(4, -1), label_key: [0, 1, 2, 3]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / meta_file).write_bytes(pickle.dumps({names_key: names}))
    return len(train_files) * 4, 4, names


def write_svhn(root):
    folder = root / "svhn"
    folder.mkdir(parents=True)
    for split, count in (("train", 6), ("test", 3)):
        images = pixels(count, 32, 32, 3).transpose(1, 2, 3, 0)  # (32, 32, 3, N) as in the .mat files
        labels = (np.arange(count) % 10 + 1).reshape(-1, 1)  # 1..10, where 10 stands for the digit 0
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": images, "y": labels})
    return 6, 3, [str(digit) for digit in range(10)]


def write_stl10(root):
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    for split, count in (("train", 5), ("test", 2)):
        images = pixels(count, 96, 96, 3).transpose(0, 3, 2, 1)  # column-major planes, as in the .bin files
        (folder / f"{split}_X.bin").write_bytes(images.tobytes())
        (folder / f"{split}_y.bin").write_bytes((np.arange(count) % 10 + 1).astype(np.uint8).tobytes())
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    return 5, 2, names


def write_folder(root, classes=("cat", "dog"), test_classes=None):
    for split, class_names in (("train", classes), ("test", test_classes or classes)):
        for name in class_names:
            (root / split / name).mkdir(parents=True)
            for i in range(3 if split == "train" else 1):
                Image.fromarray(pixels(1, 40, 60, 3)[0]).save(root / split / name / f"{i}.png")
    return 3 * len(classes), len(test_classes or classes), list(classes)


@pytest.fixture
def skip_checksums(monkeypatch):
    """torchvision checks the md5 of CIFAR, SVHN and STL-10 files; the small files here cannot match."""
    for dataset_class in (datasets.CIFAR10, datasets.CIFAR100, datasets.SVHN, datasets.STL10):
        monkeypatch.setattr(dataset_class, "_check_integrity", lambda self: True)
    for dataset_class in (datasets.CIFAR10, datasets.CIFAR100):
        monkeypatch.setattr(dataset_class, "meta", {**dataset_class.meta, "md5": None})


@pytest.mark.parametrize("name, writer, channels, size", [
    ("cifar10", lambda root: write_cifar(root, "cifar10"), 3, 32),
    ("cifar100", lambda root: write_cifar(root, "cifar100"), 3, 32),
    ("svhn", write_svhn, 3, 32),
    ("stl10", write_stl10, 3, 96),
    ("folder", write_folder, 3, 128),
])
def test_rgb_datasets_load_from_their_on_disk_format(tmp_path, skip_checksums, name, writer, channels, size):
    train_count, test_count, classes = writer(tmp_path)
    loaded = data.load_dataset(name, tmp_path, download=False)
    assert (len(loaded.train), len(loaded.test)) == (train_count, test_count)
    assert loaded.info.classes == tuple(classes)
    assert (loaded.info.channels, loaded.info.image_size) == (channels, size)
    image, label = loaded.test[0]
    assert image.shape == (channels, size, size) and image.dtype == torch.float32
    assert 0 <= label < len(classes)


def test_svhn_labels_map_ten_to_zero(tmp_path, skip_checksums):
    write_svhn(tmp_path)
    loaded = data.load_dataset("svhn", tmp_path, download=False)
    assert [loaded.train[i][1] for i in range(6)] == [1, 2, 3, 4, 5, 6]
    assert loaded.info.classes[0] == "0"


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_mnist_like_from_gz_files_in_the_data_folder(tmp_path, name):
    arrays = write_mnist_like(tmp_path / name)
    loaded = data.load_dataset(name, tmp_path, download=False)
    assert (len(loaded.train), len(loaded.test)) == (96, 48)
    assert (loaded.info.channels, loaded.info.image_size) == (1, 28)
    image, label = loaded.test[5]
    expected = (arrays["t10k"][0][5] / 255.0 - loaded.info.mean[0]) / loaded.info.std[0]
    assert label == arrays["t10k"][1][5]
    assert torch.allclose(image[0], torch.tensor(expected, dtype=torch.float32), atol=1e-5)  # no test-time augmentation
    if name == "fashion-mnist":
        assert loaded.info.classes[0] == "T-shirt/top" and loaded.info.mean == (0.2860,)


def test_fashion_mnist_found_in_debian_folder(tmp_path, monkeypatch):
    system = tmp_path / "usr-share-datasets-fashion-mnist"
    write_mnist_like(system, train_size=20, test_size=10)
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion-mnist", (system, "dataset-fashion-mnist"))
    loaded = data.load_dataset("fashion-mnist", tmp_path / "data", download=False)
    assert (len(loaded.train), len(loaded.test)) == (20, 10)
    staged = sorted(p.name for p in (tmp_path / "data" / "FashionMNIST" / "raw").iterdir())
    assert staged == sorted(data.IDX_FILES)  # extracted whole, no temporary files left


def test_train_set_is_augmented_and_test_set_is_not(tmp_path):
    write_mnist_like(tmp_path / "fashion-mnist")
    loaded = data.load_dataset("fashion-mnist", tmp_path, download=False)
    torch.manual_seed(0)
    train_views = [loaded.train[0][0] for _ in range(8)]
    assert any(not torch.equal(train_views[0], view) for view in train_views[1:])
    assert torch.equal(loaded.test[0][0], loaded.test[0][0])


def test_image_size_resizes(tmp_path):
    write_mnist_like(tmp_path / "mnist")
    loaded = data.load_dataset("mnist", tmp_path, download=False, image_size=56)
    assert loaded.train[0][0].shape == (1, 56, 56) and loaded.test[0][0].shape == (1, 56, 56)
    assert loaded.info.image_size == 56


def test_info_round_trips_through_a_plain_dict(tmp_path):
    write_mnist_like(tmp_path / "fashion-mnist")
    info = data.load_dataset("fashion-mnist", tmp_path, download=False).info
    plain = info.as_dict()
    assert all(isinstance(value, (str, int, float, list, dict)) for value in plain.values())
    assert data.DatasetInfo.from_dict(plain) == info


def test_unknown_dataset(tmp_path):
    with pytest.raises(data.DatasetError, match="unknown dataset 'imagenet'; choose one of: fashion-mnist, fashion-mnist-cluttered, mnist"):
        data.load_dataset("imagenet", tmp_path)


def test_missing_offline_names_the_place_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion-mnist", (tmp_path / "nowhere", ""))
    with pytest.raises(data.DatasetError) as error:
        data.load_dataset("fashion-mnist", tmp_path / "data", download=False)
    message = str(error.value)
    assert "not found in" in message and "download is off" in message
    assert "FashionMNIST/raw/" in message and "apt-get install dataset-fashion-mnist" in message


def test_failed_download_names_the_place_and_the_fix(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise URLError("Name or service not known")

    monkeypatch.setattr(datasets.mnist, "download_and_extract_archive", no_network)
    monkeypatch.setattr(datasets.cifar, "download_and_extract_archive", no_network)
    monkeypatch.setitem(data.SYSTEM_DIRS, "mnist", (tmp_path / "nowhere", ""))
    for name, place in (("mnist", "MNIST/raw/"), ("cifar10", "cifar-10-batches-py/")):
        with pytest.raises(data.DatasetError) as error:
            data.load_dataset(name, tmp_path, download=True)
        assert "could not be downloaded" in str(error.value) and place in str(error.value)


def test_a_damaged_staged_file_is_staged_again_from_a_good_source(tmp_path, monkeypatch):
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion-mnist", (tmp_path / "nowhere", ""))
    arrays = write_mnist_like(tmp_path / "fashion-mnist")
    raw = tmp_path / "FashionMNIST" / "raw"
    data.load_dataset("fashion-mnist", tmp_path, download=False)
    whole = (raw / "t10k-images-idx3-ubyte").read_bytes()
    (raw / "t10k-images-idx3-ubyte").write_bytes(whole[:1000])  # cut short, e.g. by a full disk
    (raw / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x02\x01\x01")  # 2 labels
    loaded = data.load_dataset("fashion-mnist", tmp_path, download=False)
    assert (raw / "t10k-images-idx3-ubyte").read_bytes() == whole
    assert torch.equal(loaded.train.targets, torch.from_numpy(arrays["train"][1]).long())


def test_a_damaged_source_fails_until_it_is_replaced_and_no_download_is_claimed(tmp_path, monkeypatch):
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion-mnist", (tmp_path / "system", "dataset-fashion-mnist"))
    write_mnist_like(tmp_path / "system")
    source = tmp_path / "system" / "t10k-labels-idx1-ubyte.gz"
    good = source.read_bytes()
    source.write_bytes(good[:-20])
    for download in (True, False):
        with pytest.raises(data.DatasetError) as error:
            data.load_dataset("fashion-mnist", tmp_path / "data", download=download)
        message = str(error.value)
        assert message.startswith(f"{source} is damaged (") and "download" not in message
        assert message.endswith("or delete it (`apt-get install --reinstall dataset-fashion-mnist` restores its files)")
    assert not (tmp_path / "data" / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").exists()  # never staged
    source.write_bytes(good)  # put right where the message says
    assert len(data.load_dataset("fashion-mnist", tmp_path / "data", download=False).test) == 48


def test_a_damaged_copy_is_passed_over_for_a_good_one_elsewhere_with_a_warning(tmp_path, monkeypatch, capsys):
    write_mnist_like(tmp_path / "system", test_size=30)
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion-mnist", (tmp_path / "system", ""))
    write_mnist_like(tmp_path / "data" / "fashion-mnist")
    damaged = tmp_path / "data" / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:50])
    assert len(data.load_dataset("fashion-mnist", tmp_path / "data", download=False).test) == 30
    used = tmp_path / "system" / "t10k-images-idx3-ubyte.gz"
    out = capsys.readouterr().out
    assert out.startswith(f"warning: {damaged} is damaged (") and out.endswith(f"); using {used}\n")
    assert out.count("\n") == 1  # the good train pair in the data folder is used without a word


def test_idx_pair_problem_names_the_file_and_the_fault():
    images = bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28]) + bytes(2 * 28 * 28)
    labels = bytes([0, 0, 8, 1, 0, 0, 0, 2, 3, 9])
    assert data.idx_pair_problem((images[:16], len(images)), labels) == (-1, "")
    assert data.idx_pair_problem((images[:16], len(images) - 1), labels) == (
        0, f"{len(images) - 1} bytes where its header promises {len(images)}: cut short")
    assert data.idx_pair_problem((images[:16], len(images)), labels[:-1])[0] == 1
    assert data.idx_pair_problem((labels, len(labels)), labels)[1].startswith("not an IDX file of 3-dimensional")
    assert data.idx_pair_problem((images[:16], len(images)), bytes([0, 0, 8, 1, 0, 0, 0, 1, 10])) == (
        1, "it holds 1 labels for the 2 images of its images file")


@pytest.mark.parametrize("layout, message", [
    ("empty", "image folder"),
    ("no images", "holds no images in class subfolders"),
    ("other classes", "must hold the same class folders"),
])
def test_bad_image_folders(tmp_path, layout, message):
    if layout == "no images":
        (tmp_path / "train" / "cat").mkdir(parents=True)
        (tmp_path / "test" / "cat").mkdir(parents=True)
    elif layout == "other classes":
        write_folder(tmp_path, classes=("cat", "dog"), test_classes=("cat", "cow"))
    with pytest.raises(data.DatasetError, match=message):
        data.load_dataset("folder", tmp_path)


def test_load_image_converts_to_the_checkpoint_format(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(pixels(1, 50, 80, 3)[0]).save(path)
    info = data.DatasetInfo("fashion-mnist", ("a", "b"), 1, 28, (0.286,), (0.353,))
    tensor, image = data.load_image(path, info)
    assert tensor.shape == (1, 28, 28) and image.size == (28, 28) and image.mode == "L"


@pytest.mark.parametrize("content, message", [(None, "not found"), (b"GIF89a broken", "is not a readable image")])
def test_load_image_errors(tmp_path, content, message):
    path = tmp_path / "picture.png"
    if content is not None:
        path.write_bytes(content)
    info = data.DatasetInfo("cifar10", ("a",), 3, 32, (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(cli.UserError, match=message):
        data.load_image(path, info)


def saved(tmp_path, image: Image.Image, name: str, **options):
    path = tmp_path / name
    image.save(path, **options)
    return path


def gray(mode_image: Image.Image, tmp_path, name: str, **options) -> np.ndarray:
    """The pixels data.read_image gives for the image saved as name, as gray uint8 (H, W)."""
    return np.asarray(data.read_image(saved(tmp_path, mode_image, name, **options), "L"))


def test_read_image_scales_deep_pixels_from_their_own_range(tmp_path):
    levels = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)  # 16-bit: 100/255 of the way, and white
    assert Image.open(saved(tmp_path, Image.fromarray(levels), "deep.png")).mode == "I;16"
    assert gray(Image.fromarray(levels), tmp_path, "deep.png").tolist() == [[0, 100, 255]]
    assert gray(Image.fromarray(levels), tmp_path, "deep.pgm").tolist() == [[0, 100, 255]]  # opened as mode I
    floats = np.array([[0.0, 0.5, 1.0, 2.0]], dtype=np.float32)  # float pixels: [0, 1], clipped
    assert gray(Image.fromarray(floats), tmp_path, "float.tif").tolist() == [[0, 128, 255, 255]]
    assert gray(Image.fromarray(np.array([[0, 1]], dtype=bool)), tmp_path, "bits.png").tolist() == [[0, 255]]


def test_read_image_composites_transparency_over_black_and_keeps_colors(tmp_path):
    rgba = np.array([[[255, 0, 0, 255], [255, 255, 255, 0], [0, 0, 255, 128]]], dtype=np.uint8)
    rgb = np.asarray(data.read_image(saved(tmp_path, Image.fromarray(rgba), "alpha.png"), "RGB"))
    assert rgb.tolist() == [[[255, 0, 0], [0, 0, 0], [0, 0, 128]]]
    gray_alpha = Image.fromarray(np.array([[[200, 255], [200, 0]]], dtype=np.uint8), mode="LA")
    assert gray(gray_alpha, tmp_path, "la.png").tolist() == [[200, 0]]
    palette = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), mode="P")
    palette.putpalette([255, 255, 0, 10, 20, 30])
    rgb = np.asarray(data.read_image(saved(tmp_path, palette, "palette.png", transparency=1), "RGB"))
    assert rgb.tolist() == [[[255, 255, 0], [0, 0, 0]]]
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))  # red in CMYK
    assert np.asarray(data.read_image(saved(tmp_path, cmyk, "cmyk.tif"), "RGB"))[0, 0].tolist() == [255, 0, 0]


def test_read_image_turns_photos_upright(tmp_path):
    pixels_ = np.zeros((2, 3), dtype=np.uint8)
    pixels_[0, 0] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned, so the image is shown turned 90 degrees clockwise
    upright = gray(Image.fromarray(pixels_), tmp_path, "turned.png", exif=exif)
    assert upright.shape == (3, 2) and upright[0, 1] == 255


def test_read_image_refuses_a_decompression_bomb_and_a_broken_file_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = saved(tmp_path, Image.new("L", (20, 20)), "bomb.png")
    with pytest.raises(data.DatasetError, match="bomb.png is too large to read safely"):
        data.read_image(path)
    (tmp_path / "broken.tif").write_bytes(b"II*\x00" + bytes(40))
    with pytest.raises(data.DatasetError, match="broken.tif is not a readable image"):
        data.read_image(tmp_path / "broken.tif")


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
    made = data.make_cluttered(items, size=64, clutter=0, seed=3)
    for item, image, box, mask in zip(items, made["images"], made["boxes"], made["masks"]):
        x0, y0, x1, y1 = box
        ink_rows, ink_cols = np.nonzero(item)
        assert (x1 - x0, y1 - y0) == (np.ptp(ink_cols) + 1, np.ptp(ink_rows) + 1)  # the tight box of the ink
        assert np.array_equal(image[y0:y1, x0:x1], item[ink_rows.min():ink_rows.max() + 1,
                                                          ink_cols.min():ink_cols.max() + 1])
        assert np.array_equal(mask, image > 0) and image.sum() == item.sum()  # no clutter: the item alone


def test_cluttered_masks_and_boxes_survive_the_clutter():
    items = fashion_items(200)
    plain = data.make_cluttered(items, clutter=0, seed=5)
    cluttered = data.make_cluttered(items, clutter=6, clutter_size=10, seed=5)
    assert np.array_equal(plain["masks"], cluttered["masks"]) and np.array_equal(plain["boxes"], cluttered["boxes"])
    for image, box, mask, bare in zip(cluttered["images"], cluttered["boxes"], cluttered["masks"], plain["images"]):
        rows, cols = np.nonzero(mask)
        assert list(box) == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
        assert (image[mask] >= bare[mask]).all()  # the item is kept where clutter overlaps it (brighter wins)
    outside = ~cluttered["masks"]
    assert (cluttered["images"][outside] > 0).mean() > 0.02  # there is clutter beside the items


def test_cluttered_is_deterministic_from_its_seed():
    items = fashion_items(30)
    first, again = data.make_cluttered(items, seed=1), data.make_cluttered(items, seed=1)
    other = data.make_cluttered(items, seed=2)
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
    boxes, masks = data.ground_truth(test, 0, 20)
    assert masks.shape == (20, 48, 48) and boxes.shape == (20, 4) and torch.equal(test.boxes, torch.from_numpy(boxes))
    assert data.ground_truth(loaded.train, 0, 40)[1].shape == (40, 48, 48)
    assert test.targets.tolist() == arrays["t10k"][1].tolist() and loaded.train.targets.tolist() == arrays["train"][1].tolist()
    image, label = test[7]
    assert image.shape == (1, 48, 48) and label == arrays["t10k"][1][7]
    expected = (test.images[7].float() / 255 - loaded.info.mean[0]) / loaded.info.std[0]
    assert torch.allclose(image[0], expected, atol=1e-5)  # no test-time augmentation
    cached = sorted(path.name for path in (tmp_path / "fashion-mnist-cluttered").iterdir())
    assert cached == ["test-v3-size48-clutter3x10-seed0.pt", "train-v3-size48-clutter3x10-seed0.pt"]
    again = data.load_dataset("fashion-mnist-cluttered", tmp_path, download=False, image_size=48,
                              options={"clutter": 3}).test
    assert torch.equal(again.images, test.images) and np.array_equal(data.ground_truth(again, 0, 20)[1], masks)


def test_ground_truth_of_a_held_out_split_is_that_of_its_training_canvases(tmp_path):
    """The validation split of hold_out() reads the boxes and masks of the last training canvases,
    and each mask is the item's ink, whose tight box is the box."""
    write_mnist_like(tmp_path / "fashion-mnist", train_size=40, test_size=10)
    loaded = data.load_dataset("fashion-mnist-cluttered", tmp_path, download=False, image_size=48, options={"clutter": 3})
    held = loaded.hold_out(15)
    boxes, masks = data.ground_truth(held.validation, 5, 15)
    whole_boxes, whole_masks = data.ground_truth(loaded.train, 30, 40)
    assert np.array_equal(boxes, whole_boxes) and np.array_equal(masks, whole_masks)
    for box, mask in zip(boxes, masks):
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1] == box.tolist()
    assert data.ground_truth(held.validation, 0, 20)[0].shape == (15, 4)  # clipped to the split
    mnist_like = data.load_dataset("fashion-mnist", tmp_path, download=False)
    assert data.ground_truth(mnist_like.test, 0, 5) is None


def test_cluttered_settings_are_checked(tmp_path):
    write_mnist_like(tmp_path / "fashion-mnist", train_size=10, test_size=10)
    with pytest.raises(data.DatasetError, match="has no setting colour"):
        data.load_dataset("fashion-mnist-cluttered", tmp_path, download=False, options={"colour": 1})
    with pytest.raises(data.DatasetError, match="a canvas of 20 px cannot hold 28x28 items"):
        data.load_dataset("fashion-mnist-cluttered", tmp_path, download=False, image_size=20)


@pytest.mark.skipif(not (data.SYSTEM_DIRS["fashion-mnist"][0] / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="needs Debian's dataset-fashion-mnist (CI installs it)")
def test_real_fashion_mnist_from_the_debian_package(tmp_path):
    loaded = data.load_dataset("fashion-mnist", tmp_path, download=False)
    assert (len(loaded.train), len(loaded.test)) == (60_000, 10_000)
    labels = loaded.test.targets
    assert torch.equal(torch.bincount(labels), torch.full((10,), 1000))
    pixels_01 = loaded.train.data.float() / 255
    assert abs(pixels_01.mean().item() - loaded.info.mean[0]) < 1e-3
    assert abs(pixels_01.std().item() - loaded.info.std[0]) < 1e-3


WRITERS = {
    "fashion-mnist": lambda root: write_mnist_like(root / "fashion-mnist"),
    "mnist": lambda root: write_mnist_like(root / "mnist"),
    "fashion-mnist-cluttered": lambda root: write_mnist_like(root / "fashion-mnist", train_size=40, test_size=20),
    "cifar10": lambda root: write_cifar(root, "cifar10"),
    "cifar100": lambda root: write_cifar(root, "cifar100"),
    "svhn": write_svhn,
    "stl10": write_stl10,
}


@pytest.mark.parametrize("name", WRITERS)
def test_in_memory_batches_equal_the_per_image_pipeline(tmp_path, skip_checksums, name):
    WRITERS[name](tmp_path)
    loaded = data.load_dataset(name, tmp_path, download=False)
    assert loaded.in_memory
    for split in ("train", "test"):  # without a generator: in order and unaugmented
        batches = list(loaded.loader(split, 4, torch.device("cpu"), limit=7))
        dataset = getattr(loaded, split)
        expected = [dataset[i] for i in range(min(7, len(dataset)))]
        if split == "train":  # the per-image train pipeline augments; compare with the test transform
            dataset.transform = loaded.test.transform
            expected = [dataset[i] for i in range(min(7, len(dataset)))]
        assert [len(labels) for _, labels in batches] == [min(4, len(expected) - i) for i in range(0, len(expected), 4)]
        images, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
        assert torch.allclose(images, torch.stack([image for image, _ in expected]), atol=1e-6)
        assert labels.tolist() == [label for _, label in expected] and labels.dtype == torch.int64


def write_balanced_folder(root, per_class=10, size=8):
    """root/train/{cat,dog}/ with per_class tiny images each (listed class by class, as ImageFolder
    reads them) and one test image per class."""
    for split, count in (("train", per_class), ("test", 1)):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(pixels(1, size, size, 3)[0]).save(root / split / name / f"{i}.png")


def test_folder_validation_and_subset_are_stratified_and_seeded(tmp_path):
    write_balanced_folder(tmp_path)
    loaded = data.load_dataset("folder", tmp_path, download=False, image_size=8)
    held = loaded.hold_out(4, seed=0)
    assert torch.bincount(data.split_labels(held.validation)).tolist() == [2, 2]  # not the last 4: all dogs
    assert torch.bincount(data.split_labels(held.train)).tolist() == [8, 8]
    assert sorted(held.train.indices + held.validation.indices) == list(range(20))
    assert held.validation.indices == loaded.hold_out(4, seed=0).validation.indices  # fixed by the seed
    assert any(loaded.hold_out(4, seed=seed).validation.indices != held.validation.indices for seed in (1, 2))
    labels = torch.cat([batch for _, batch in held.loader("train", 4, torch.device("cpu"), limit=6, seed=0)])
    assert torch.bincount(labels).tolist() == [3, 3]  # --subset: not the first 6: all cats
    mnist = write_mnist_like(tmp_path / "data" / "mnist")  # stored in random order: the last images, as before
    in_memory = data.load_dataset("mnist", tmp_path / "data", download=False).hold_out(10, seed=5)
    assert in_memory.validation.indices == list(range(86, 96)) and in_memory.train.indices == list(range(86))
    limited = next(iter(in_memory.loader("test", 100, torch.device("cpu"), limit=7, seed=5)))[1]
    assert limited.tolist() == mnist["t10k"][1][:7].tolist()


def test_a_stratified_pick_gives_each_class_its_share_within_one_image():
    sizes = torch.tensor([40, 6, 1, 1, 1, 1])  # unequal classes, one far larger than the others
    labels = torch.repeat_interleave(torch.arange(6), sizes)  # in class order
    for count in range(1, 51):
        for seed in range(2):
            picked = data.stratified_pick(labels, count, seed)
            assert len(picked) == count and picked.unique().tolist() == picked.tolist()  # distinct, sorted
            share = count * sizes / 50
            assert (torch.bincount(labels[picked], minlength=6) - share).abs().max() < 1
            assert torch.equal(picked, data.stratified_pick(labels, count, seed))  # fixed by the seed
    assert not torch.equal(data.stratified_pick(labels, 25, 0), data.stratified_pick(labels, 25, 1))


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_broken_image_read_by_a_worker_is_one_line_naming_it(tmp_path, num_workers):
    write_balanced_folder(tmp_path, per_class=2)
    (tmp_path / "train" / "dog" / "1.png").write_bytes(b"not a png")
    loaded = data.load_dataset("folder", tmp_path, download=False, image_size=8)
    with pytest.raises(data.DatasetError) as error:
        list(loaded.loader("train", 2, torch.device("cpu"), num_workers=num_workers))
    message = str(error.value)
    assert "\n" not in message and "worker" not in message
    assert message.startswith(f"{tmp_path / 'train' / 'dog' / '1.png'} is not a readable image")


def test_resized_and_folder_datasets_go_through_a_dataloader(tmp_path, skip_checksums):
    write_mnist_like(tmp_path / "mnist")
    assert not data.load_dataset("mnist", tmp_path, download=False, image_size=56).in_memory
    write_folder(tmp_path / "photos")
    loaded = data.load_dataset("folder", tmp_path / "photos", download=False, image_size=32)
    images, labels = next(iter(loaded.loader("train", 4, torch.device("cpu"), torch.Generator().manual_seed(0))))
    assert not loaded.in_memory and images.shape == (4, 3, 32, 32) and labels.shape == (4,)


def test_shift_flip_moves_each_image_within_its_padding_and_mirrors_half():
    images = torch.zeros(2000, 1, 28, 28, dtype=torch.uint8)
    images[:, 0, 10, 6] = 255  # one bright pixel at row 10, column 6
    shifted = data.ShiftFlip(1 / 14, flip=False).batch(images, torch.Generator().manual_seed(0))
    rows, cols = torch.nonzero(shifted[:, 0], as_tuple=True)[1:]
    assert len(rows) == 2000  # the pixel stays in every image (a shift of at most 2 px)
    assert set(rows.tolist()) == set(range(8, 13)) and set(cols.tolist()) == set(range(4, 9))
    flipped = data.ShiftFlip(0, flip=True).batch(images, torch.Generator().manual_seed(0))
    cols = torch.nonzero(flipped[:, 0], as_tuple=True)[2]
    assert set(cols.tolist()) == {6, 21} and 900 < (cols == 21).sum() < 1100  # 27 - 6 = 21: mirrored
    assert torch.equal(flipped, data.ShiftFlip(0, flip=True).batch(images, torch.Generator().manual_seed(0)))


def test_training_batches_follow_the_generator_and_augment(tmp_path):
    write_mnist_like(tmp_path / "fashion-mnist")
    loaded = data.load_dataset("fashion-mnist", tmp_path, download=False)

    def epoch(seed):
        return list(loaded.loader("train", 32, torch.device("cpu"), torch.Generator().manual_seed(seed)))

    first, again, other = epoch(0), epoch(0), epoch(1)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not torch.equal(first[0][1], other[0][1])
    labels = torch.cat([labels for _, labels in first])
    assert sorted(labels.tolist()) == sorted(loaded.train.targets.tolist())  # each image once
    plain = torch.cat([images for images, _ in loaded.loader("train", 96, torch.device("cpu"))])
    assert not torch.allclose(torch.cat([images for images, _ in first]).sort(0)[0], plain.sort(0)[0])


@pytest.mark.parametrize("count, world_size", [(10, 2), (11, 2), (10, 3)])
def test_tensor_loader_gives_each_process_its_share(count, world_size):
    images = torch.arange(count, dtype=torch.uint8).view(count, 1, 1, 1).expand(count, 1, 2, 2).contiguous()
    labels = torch.arange(count)
    shares = [
        torch.cat([b[1] for b in data.TensorLoader(images, labels, (0.0,), (1 / 255,), 3, None,
                                                   torch.Generator().manual_seed(4), rank=rank, world_size=world_size)])
        for rank in range(world_size)
    ]
    assert len({len(share) for share in shares}) == 1  # the same number of steps everywhere
    assert set(torch.cat(shares).tolist()) == set(range(count))  # every image is seen
    assert len(torch.cat(shares)) == count + (-count % world_size)  # repeated only to even out the shares
    test_shares = [data.TensorLoader(images, labels, (0.0,), (1 / 255,), 3, rank=rank, world_size=world_size)
                   for rank in range(world_size)]
    assert sorted(torch.cat([b[1] for share in test_shares for b in share]).tolist()) == list(range(count))


def test_image_folder_shards_go_to_each_process_once(tmp_path):
    write_folder(tmp_path)  # 6 train images
    loaded = data.load_dataset("folder", tmp_path, download=False, image_size=16)
    loaders = [loaded.loader("train", 2, torch.device("cpu"), torch.Generator().manual_seed(3), rank=rank, world_size=2)
               for rank in (0, 1)]
    shares = [list(iter(loader.sampler)) for loader in loaders]
    assert len(shares[0]) == len(shares[1]) == 3 and sorted(shares[0] + shares[1]) == list(range(6))
    assert sum(len(labels) for _, labels in loaders[0]) == 3


def test_permuted_labels_keep_the_class_counts_and_the_other_splits(tmp_path):
    write_mnist_like(tmp_path / "fashion-mnist", train_size=60, test_size=10)
    loaded = data.load_dataset("fashion-mnist", tmp_path, download=False).hold_out(10)
    permuted = loaded.with_permuted_labels(seed=3)
    _, original = data.split_tensors(loaded.train)
    images, labels = data.split_tensors(permuted.train)
    assert torch.equal(images, data.split_tensors(loaded.train)[0]) and not torch.equal(labels, original)
    assert sorted(labels.tolist()) == sorted(original.tolist())
    assert torch.equal(labels, data.split_tensors(loaded.with_permuted_labels(seed=3).train)[1])
    assert permuted.test is loaded.test and permuted.validation is loaded.validation
    fed = torch.cat([batch_labels for _, batch_labels in permuted.loader("train", 7, torch.device("cpu"))])
    assert torch.equal(fed, labels) and permuted.train[4][1] == labels[4]
