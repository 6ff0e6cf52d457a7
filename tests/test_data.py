import pickle
from urllib.error import URLError

import numpy as np
import pytest
import scipy.io
import torch
import torchvision
from helpers import write_balanced_folder, write_mnist_like
from PIL import Image
from torch.utils.data import Dataset

import data
from datasets import augment
from utils import cli, idx_files

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
    sets = torchvision.datasets
    for dataset_class in (sets.CIFAR10, sets.CIFAR100, sets.SVHN, sets.STL10):
        monkeypatch.setattr(dataset_class, "_check_integrity", lambda self: True)
    for dataset_class in (sets.CIFAR10, sets.CIFAR100):
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
    message = "unknown dataset 'imagenet'; choose one of: fashion-mnist, fashion-mnist-cluttered, mnist"
    with pytest.raises(data.DatasetError, match=message):
        data.load_dataset("imagenet", tmp_path)


def test_missing_offline_names_the_place_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(idx_files.SYSTEM_DIRS, "fashion-mnist", (tmp_path / "nowhere", ""))
    with pytest.raises(data.DatasetError) as error:
        data.load_dataset("fashion-mnist", tmp_path / "data", download=False)
    message = str(error.value)
    assert "not found in" in message and "download is off" in message
    assert "FashionMNIST/raw/" in message and "apt-get install dataset-fashion-mnist" in message


def test_failed_download_names_the_place_and_the_fix(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", no_network)
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", no_network)
    monkeypatch.setitem(idx_files.SYSTEM_DIRS, "mnist", (tmp_path / "nowhere", ""))
    for name, place in (("mnist", "MNIST/raw/"), ("cifar10", "cifar-10-batches-py/")):
        with pytest.raises(data.DatasetError) as error:
            data.load_dataset(name, tmp_path, download=True)
        assert "could not be downloaded" in str(error.value) and place in str(error.value)


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


@pytest.mark.skipif(not (idx_files.SYSTEM_DIRS["fashion-mnist"][0] / "t10k-images-idx3-ubyte.gz").is_file(),
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


def test_folder_validation_and_subset_are_stratified_and_seeded(tmp_path):
    write_balanced_folder(tmp_path)
    loaded = data.load_dataset("folder", tmp_path, download=False, image_size=8)
    held = loaded.hold_out(4, seed=0)
    assert torch.bincount(held.split_labels(held.validation)).tolist() == [2, 2]  # not the last 4: all dogs
    assert torch.bincount(held.split_labels(held.train)).tolist() == [8, 8]
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


def test_resized_and_folder_datasets_go_through_a_dataloader(tmp_path, skip_checksums):
    write_mnist_like(tmp_path / "mnist")
    assert not data.load_dataset("mnist", tmp_path, download=False, image_size=56).in_memory
    write_folder(tmp_path / "photos")
    loaded = data.load_dataset("folder", tmp_path / "photos", download=False, image_size=32)
    images, labels = next(iter(loaded.loader("train", 4, torch.device("cpu"), torch.Generator().manual_seed(0))))
    assert not loaded.in_memory and images.shape == (4, 3, 32, 32) and labels.shape == (4,)


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


def test_image_folder_shards_go_to_each_process_once(tmp_path):
    write_folder(tmp_path)  # 6 train images
    loaded = data.load_dataset("folder", tmp_path, download=False, image_size=16)
    shards = [loaded.loader("train", 2, torch.device("cpu"), torch.Generator().manual_seed(3), rank=rank, world_size=2)
              for rank in (0, 1)]
    shares = [list(iter(loader.sampler)) for loader in shards]
    assert len(shares[0]) == len(shares[1]) == 3 and sorted(shares[0] + shares[1]) == list(range(6))
    assert sum(len(labels) for _, labels in shards[0]) == 3


def test_permuted_labels_keep_the_class_counts_and_the_other_splits(tmp_path):
    write_mnist_like(tmp_path / "fashion-mnist", train_size=60, test_size=10)
    loaded = data.load_dataset("fashion-mnist", tmp_path, download=False).hold_out(10)
    permuted = loaded.with_permuted_labels(seed=3)
    _, original = loaded.split_tensors(loaded.train)
    images, labels = permuted.split_tensors(permuted.train)
    assert torch.equal(images, loaded.split_tensors(loaded.train)[0]) and not torch.equal(labels, original)
    assert sorted(labels.tolist()) == sorted(original.tolist())
    assert torch.equal(labels, loaded.split_tensors(loaded.with_permuted_labels(seed=3).train)[1])
    assert permuted.test is loaded.test and permuted.validation is loaded.validation
    fed = torch.cat([batch_labels for _, batch_labels in permuted.loader("train", 7, torch.device("cpu"))])
    assert torch.equal(fed, labels) and permuted.train[4][1] == labels[4]


class Squares(Dataset):
    """A dataset new to the registry, written as the next ones will be: a bright 4x4 square on a 16x16
    black image, on the left (class 0) or the right (class 1), one row lower each image, with its box
    and mask. Like the cluttered set it gives its splits as tensors and its own ground truth."""

    classes = ["left", "right"]

    def __init__(self, root, train: bool, transform, download: bool):
        self.targets = torch.arange(12 if train else 6) % 2
        rows, left = torch.arange(len(self.targets)), 2 + 8 * self.targets
        self.boxes = torch.stack([left, rows, left + 4, rows + 4], dim=1)
        self.images = torch.zeros(len(self.targets), 16, 16, dtype=torch.uint8)
        for image, (x0, y0, x1, y1) in zip(self.images, self.boxes.tolist()):
            image[y0:y1, x0:x1] = 200
        self.transform = transform

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[:, None], self.targets

    def ground_truth(self, index) -> tuple[np.ndarray, np.ndarray]:
        return self.boxes[index].numpy(), self.images[index].numpy() > 0

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index].numpy(), mode="L")), int(self.targets[index])


@pytest.mark.parametrize("held_in_memory", [True, False])
def test_a_new_dataset_is_one_registry_entry(tmp_path, monkeypatch, held_in_memory):
    """Nothing shared learns of a new dataset: its DatasetSpec opens it and says how its splits are held
    in memory (or that they are read image by image), and the ground truth is asked of the dataset
    itself, also through the Subset of hold_out and the Relabeled of with_permuted_labels."""
    monkeypatch.setitem(data.DATASETS, "squares", data.DatasetSpec(
        open=Squares, tensors=Squares.tensors if held_in_memory else None, channels=1, image_size=16, mean=(0.5,),
        std=(0.5,), augment=augment.ShiftFlip(0, flip=False), expected="nowhere: it is made in memory"))
    loaded = data.load_dataset("squares", tmp_path, download=False)
    assert loaded.in_memory == held_in_memory and loaded.info.classes == ("left", "right")
    images, labels = next(iter(loaded.loader("test", 6, torch.device("cpu"))))
    boxes, masks = data.ground_truth(loaded.test, 0, 6)
    assert labels.tolist() == [0, 1, 0, 1, 0, 1] and torch.equal(images[:, 0] > 0, torch.from_numpy(masks))
    assert boxes.tolist()[1] == [10, 1, 14, 5]
    held = loaded.hold_out(4)  # the last 4 training images: rows 8 to 11
    assert data.ground_truth(held.validation, 1, 3)[0].tolist() == [[10, 9, 14, 13], [2, 10, 6, 14]]
    permuted = held.with_permuted_labels(seed=0)
    assert sorted(permuted.split_labels(permuted.train).tolist()) == [0] * 4 + [1] * 4
    boxes, masks = data.ground_truth(permuted.train, 6, 20)  # clipped to the 8 images of the split
    assert boxes.tolist() == [[2, 6, 6, 10], [10, 7, 14, 11]] and masks.shape == (2, 16, 16)
