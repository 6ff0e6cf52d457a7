"""The IDX files of (Fashion-)MNIST: checked whole, and staged from the first folder holding a good copy."""

import pytest
import torch
from helpers import write_mnist_like

import data
from utils import idx_files


def test_fashion_mnist_found_in_debian_folder(tmp_path, monkeypatch):
    system = tmp_path / "usr-share-datasets-fashion-mnist"
    write_mnist_like(system, train_size=20, test_size=10)
    monkeypatch.setitem(idx_files.SYSTEM_DIRS, "fashion-mnist", (system, "dataset-fashion-mnist"))
    loaded = data.load_dataset("fashion-mnist", tmp_path / "data", download=False)
    assert (len(loaded.train), len(loaded.test)) == (20, 10)
    staged = sorted(p.name for p in (tmp_path / "data" / "FashionMNIST" / "raw").iterdir())
    # extracted whole, no temporary files left
    assert staged == sorted(name for pair in idx_files.IDX_PAIRS for name in pair)


def test_a_damaged_staged_file_is_staged_again_from_a_good_source(tmp_path, monkeypatch):
    monkeypatch.setitem(idx_files.SYSTEM_DIRS, "fashion-mnist", (tmp_path / "nowhere", ""))
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
    monkeypatch.setitem(idx_files.SYSTEM_DIRS, "fashion-mnist", (tmp_path / "system", "dataset-fashion-mnist"))
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
    monkeypatch.setitem(idx_files.SYSTEM_DIRS, "fashion-mnist", (tmp_path / "system", ""))
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
    assert idx_files.idx_pair_problem((images[:16], len(images)), labels) == (-1, "")
    assert idx_files.idx_pair_problem((images[:16], len(images) - 1), labels) == (
        0, f"{len(images) - 1} bytes where its header promises {len(images)}: cut short")
    assert idx_files.idx_pair_problem((images[:16], len(images)), labels[:-1])[0] == 1
    assert idx_files.idx_pair_problem((labels, len(labels)), labels)[1].startswith("not an IDX file of 3-dimensional")
    assert idx_files.idx_pair_problem((images[:16], len(images)), bytes([0, 0, 8, 1, 0, 0, 0, 1, 10])) == (
        1, "it holds 1 labels for the 2 images of its images file")
