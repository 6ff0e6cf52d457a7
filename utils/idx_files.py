"""(Fashion-)MNIST's IDX files: checked whole, found offline and staged where torchvision reads them.

`stage_idx_files` puts the four files that torchvision's MNIST classes read into their raw folder,
each pair (images, labels) checked (`idx_pair_problem`) and copied from the first folder holding a
good one: the data folder, then where a system package puts them (`SYSTEM_DIRS`, e.g. Debian's
`dataset-fashion-mnist` in /usr/share/datasets/fashion-mnist/). `open_mnist_like` opens a split so.
"""

import gzip
import math
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

from utils.cli import DatasetError
from utils.files import atomic_output

IDX_PAIRS = (("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
# where a system package puts a dataset's .gz files, and the Debian package that does ("": none known)
SYSTEM_DIRS = {"fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"), "dataset-fashion-mnist"),
               "mnist": (Path("/usr/share/datasets/mnist"), "")}


def idx_dims(head: bytes, length: int, ndim: int) -> tuple[int, ...]:
    """The dims of an IDX file of unsigned bytes with ndim dims (the (Fashion-)MNIST format), from its
    first 4 + 4 * ndim bytes and its length in bytes; ValueError saying what is wrong."""
    if len(head) < 4 or head[:3] != b"\x00\x00\x08" or head[3] != ndim:
        raise ValueError(f"not an IDX file of {ndim}-dimensional unsigned bytes (wrong header)")
    if len(head) < 4 + 4 * ndim:
        raise ValueError("its header is cut short")
    dims = struct.unpack(f">{ndim}I", head[4 : 4 + 4 * ndim])
    expected = 4 + 4 * ndim + math.prod(dims)
    if length != expected:
        raise ValueError(f"{length} bytes where its header promises {expected}: "
                         f"{'cut short' if length < expected else 'too long'}")
    return dims


def idx_pair_problem(images: tuple[bytes, int], labels: bytes, num_classes: int = 10) -> tuple[int, str]:
    """What is wrong with a pair of IDX files: images given as (first 16 bytes, length in bytes), labels
    whole. Returns (0 for the images file or 1 for the labels file, the reason), or (-1, "") if they are
    whole and agree: 28x28 images, as many labels as images, each below num_classes."""
    try:
        count, height, width = idx_dims(images[0], images[1], 3)
    except ValueError as error:
        return 0, str(error)
    if (height, width) != (28, 28):
        return 0, f"its images are {height}x{width}, not 28x28"
    try:
        (label_count,) = idx_dims(labels, len(labels), 1)
    except ValueError as error:
        return 1, str(error)
    if label_count != count:
        return 1, f"it holds {label_count} labels for the {count} images of its images file"
    if label_count and max(labels[8:]) >= num_classes:
        return 1, f"it holds a label of {max(labels[8:])}, where labels go from 0 to {num_classes - 1}"
    return -1, ""


def read_source(path: Path) -> bytes:
    """The bytes of an IDX file, decompressed if path ends in .gz; ValueError naming the file if they
    cannot be read whole (a gzip stream cut short, corrupted data, an unreadable file)."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as file:
            return file.read()
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path} is damaged ({str(error) or type(error).__name__})") from None


def read_pair(sources: list[Path]) -> tuple[list[bytes], tuple[int, str] | None]:
    """The contents of an IDX pair of files (images, labels) and None if they are whole and agree
    (idx_pair_problem), else (the contents read so far, (0 for the images file or 1 for the labels
    file, "PATH is damaged (why)"))."""
    contents = []
    for which, source in enumerate(sources):
        try:
            contents.append(read_source(source))
        except ValueError as error:
            return contents, (which, str(error))
    which, reason = idx_pair_problem((contents[0][:16], len(contents[0])), contents[1])
    return contents, ((which, f"{sources[which]} is damaged ({reason})") if which >= 0 else None)


def stage_idx_files(raw_dir: Path, search_dirs: list[Path], package: str = "") -> None:
    """Put the four extracted IDX files that torchvision's MNIST classes read into raw_dir, checked.

    Each pair (images, labels) already in raw_dir is kept if it passes idx_pair_problem; else it is
    staged again from the first folder holding a good pair, as NAME.gz or NAME (in raw_dir itself,
    where torchvision downloads them, only NAME.gz), each file written whole or not at all, and a
    damaged copy passed over for it is named in a printed warning with the copy used. A pair
    that cannot be staged is removed from raw_dir, so that it is never reused: then DatasetError
    names each damaged source file, or, if no folder holds a copy, the files are left for
    torchvision to download or to report missing. package: the Debian package that restores them.
    """
    for pair in IDX_PAIRS:
        staged = [raw_dir / name for name in pair]
        if all(path.is_file() for path in staged):
            with open(staged[0], "rb") as file:
                head = file.read(16)
            if idx_pair_problem((head, staged[0].stat().st_size), staged[1].read_bytes())[0] < 0:
                continue
        damaged = []  # (0 or 1: which file of the pair, "PATH is damaged (why)")
        for folder in [raw_dir, *search_dirs]:
            names = [[name + ".gz"] + ([name] if folder != raw_dir else []) for name in pair]
            sources = [next((folder / n for n in options if (folder / n).is_file()), None) for options in names]
            if None in sources:
                continue
            contents, problem = read_pair(sources)
            if problem:
                damaged.append(problem)
                continue
            raw_dir.mkdir(parents=True, exist_ok=True)
            for path, content in zip(staged, contents):
                with atomic_output(path) as temporary:
                    temporary.write_bytes(content)
            for which, reason in damaged:
                print(f"warning: {reason}; using {sources[which]}")
            break
        else:
            for path in staged:
                path.unlink(missing_ok=True)
            if damaged:
                reinstall = f" (`apt-get install --reinstall {package}` restores its files)" if package else ""
                raise DatasetError(f"{'; '.join(reason for _, reason in damaged)}; replace each with a good copy of "
                                   f"the original file, or delete it{reinstall}")


def open_mnist_like(dataset_class, name: str) -> Callable:
    """open(root, train, transform, download) -> a split of dataset_class (torchvision's MNIST or one
    of its subclasses, e.g. FashionMNIST), its IDX files staged first from root/name/ or the system
    folder of SYSTEM_DIRS[name] (see stage_idx_files)."""

    def open_split(root: Path, train: bool, transform, download: bool):
        system_dir, package = SYSTEM_DIRS[name]
        stage_idx_files(root / dataset_class.__name__ / "raw", [root / name, system_dir], package)
        return dataset_class(root, train=train, transform=transform, download=download)

    return open_split
