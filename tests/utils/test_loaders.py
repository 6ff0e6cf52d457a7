"""utils/loaders.py: a split held as one tensor, batched per process; a DataLoader whose errors are one line."""

import pytest
import torch
from helpers import write_balanced_folder

import data
from utils import loaders


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


@pytest.mark.parametrize("count, world_size", [(10, 2), (11, 2), (10, 3)])
def test_tensor_loader_gives_each_process_its_share(count, world_size):
    images = torch.arange(count, dtype=torch.uint8).view(count, 1, 1, 1).expand(count, 1, 2, 2).contiguous()
    labels = torch.arange(count)
    shares = [
        torch.cat([b[1] for b in loaders.TensorLoader(images, labels, (0.0,), (1 / 255,), 3, None,
                                                   torch.Generator().manual_seed(4), rank=rank, world_size=world_size)])
        for rank in range(world_size)
    ]
    assert len({len(share) for share in shares}) == 1  # the same number of steps everywhere
    assert set(torch.cat(shares).tolist()) == set(range(count))  # every image is seen
    assert len(torch.cat(shares)) == count + (-count % world_size)  # repeated only to even out the shares
    test_shares = [loaders.TensorLoader(images, labels, (0.0,), (1 / 255,), 3, rank=rank, world_size=world_size)
                   for rank in range(world_size)]
    assert sorted(torch.cat([b[1] for share in test_shares for b in share]).tolist()) == list(range(count))
