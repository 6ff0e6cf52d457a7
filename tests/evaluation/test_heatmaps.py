"""evaluation/heatmaps.py: the folder of wsolevaluation's heat maps, named as its evaluator reads them."""

import os

import numpy as np
import pytest

from evaluation import heatmaps
from utils import cli


def test_each_map_is_named_by_its_whole_image_id_as_wsolevaluation_reads_it(tmp_path):
    folder = heatmaps.prepared_folder(str(tmp_path / "hm"), "run.pt", "test", 0)
    ids = ["004.Dress/test_00000.jpg", "val/abc/image.png"]
    heatmaps.write(folder, np.full((2, 4, 4), 0.5), ids)
    for image_id in ids:  # wsolevaluation: np.load(os.path.join(scoremap_root, image_id + ".npy"))
        assert np.load(os.path.join(folder, image_id + ".npy")).shape == (4, 4)


@pytest.mark.parametrize("image_id", ["../../outside/trav.png", "/abs/victim.png"])
def test_an_id_that_would_write_outside_the_folder_is_refused(tmp_path, image_id):
    folder = heatmaps.prepared_folder(str(tmp_path / "hm"), "run.pt", "test", 0)
    with pytest.raises(cli.UserError, match="would write outside"):
        heatmaps.write(folder, np.zeros((1, 4, 4)), [image_id])
    assert sorted(path.name for path in tmp_path.rglob("*.npy")) == []


def test_a_folder_that_cannot_be_used_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    for folder in (tmp_path / "file", tmp_path / "file" / "under"):
        with pytest.raises(cli.UserError, match="cannot write to folder .* choose another --save_heatmaps"):
            heatmaps.prepared_folder(str(folder), "run.pt", "test", 0)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    np.save(damaged / "x.npy", np.zeros(2))
    (damaged / heatmaps.MARK).write_text("{not json")
    with pytest.raises(cli.UserError, match="holds .npy heat maps of another run"):
        heatmaps.prepared_folder(str(damaged), "run.pt", "test", 0)
