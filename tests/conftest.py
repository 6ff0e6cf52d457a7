"""Shared fixtures: a small Fashion-MNIST on disk and tiny trained checkpoints (helpers.py has the functions)."""

from pathlib import Path

import pytest
from helpers import run_training, write_mnist_like

pytest_plugins = ["oracle_rule"]  # an outside-oracle test never skips in CI


@pytest.fixture
def fashion_data(tmp_path) -> Path:
    """A data folder holding a small Fashion-MNIST as data/fashion-mnist/*.gz."""
    root = tmp_path / "data"
    write_mnist_like(root / "fashion-mnist")
    return root


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """A workdir whose checkpoints/ holds best.pt and last.pt of a model trained (to 100% test
    accuracy) on a small MNIST-format set where each class is a bright square at its own place."""
    workdir = tmp_path_factory.mktemp("trained")
    write_mnist_like(workdir / "data" / "mnist", train_size=300, test_size=100)
    run_training(workdir / "data", workdir, "--dataset=mnist", "--epochs=5", "--lr=0.05", "--batch_size=16")
    return workdir


@pytest.fixture(scope="session")
def trained_cluttered(tmp_path_factory) -> Path:
    """A workdir whose checkpoints/best.pt is a small cnn trained briefly on fashion-mnist-cluttered
    (40x40 canvases) made from a small Fashion-MNIST in workdir/data/fashion-mnist/."""
    workdir = tmp_path_factory.mktemp("trained_cluttered")
    write_mnist_like(workdir / "data" / "fashion-mnist", train_size=200, test_size=60)
    run_training(workdir / "data", workdir, "--dataset=fashion-mnist-cluttered", "--image_size=40", "--clutter=3",
                 "--width=4", "--epochs=2", "--lr=0.05", "--batch_size=16")
    return workdir
