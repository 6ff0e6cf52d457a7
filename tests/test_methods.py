import json

import pytest
import torch
from torch import nn

from utils import cli
import evaluate_cam
import faithfulness
import localization
import methods
import model as models


def one_by_one_net() -> models.GapNet:
    """features: one 1x1 conv (3 -> 2 channels) with known weights, so the maps keep the image's
    size; then GAP and fc (2 -> 2 classes). With x0, x1, x2 the channels:
    f0 = x0 - x2, f1 = 0.5 x0 + 2 x1 - 1, CAM_0 = 2 f0 - f1, CAM_1 = -f0 + 3 f1."""
    conv, fc = nn.Conv2d(3, 2, 1), nn.Linear(2, 2)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])[:, :, None, None])
        conv.bias.copy_(torch.tensor([0.0, -1.0]))
        fc.weight.copy_(torch.tensor([[2.0, -1.0], [-1.0, 3.0]]))
        fc.bias.copy_(torch.tensor([0.5, -0.5]))
    return models.GapNet(nn.Sequential(conv), fc, {"name": "one_by_one", "num_classes": 2, "in_channels": 3,
                                                   "options": {}}).eval()


def hand_cams(images: torch.Tensor) -> torch.Tensor:
    """The CAMs of one_by_one_net by hand, (B, 2, H, W): the weighted sums above, expanded."""
    x0, x1, x2 = images[:, 0], images[:, 1], images[:, 2]
    return torch.stack([1.5 * x0 - 2 * x1 - 2 * x2 + 1, 0.5 * x0 + 6 * x1 + x2 - 3], dim=1)


IMAGES = torch.randn(3, 3, 6, 6, generator=torch.Generator().manual_seed(0))
CLASSES = torch.tensor([0, 1, 1])


def test_cam_of_a_1x1_conv_net_is_the_hand_computed_weighted_sum():
    net, expected = one_by_one_net(), hand_cams(IMAGES)[torch.arange(3), CLASSES]
    assert torch.allclose(methods.CAM.raw(net, IMAGES, CLASSES), expected, atol=1e-5)
    assert torch.allclose(methods.CAM.maps(net, IMAGES, CLASSES, 0), localization.normalize_maps(expected), atol=1e-5)
    logits = hand_cams(IMAGES).mean(dim=(-2, -1)) + torch.tensor([0.5, -0.5])
    assert torch.allclose(methods.CAM.classify(net, IMAGES), logits, atol=1e-5)


def test_grad_cam_of_a_gap_net_is_relu_cam_over_hw():
    net, expected = one_by_one_net(), hand_cams(IMAGES)[torch.arange(3), CLASSES]
    assert torch.allclose(methods.GRAD_CAM.raw(net, IMAGES, CLASSES), expected.relu() / 36, atol=1e-6)
    maps = methods.GRAD_CAM.maps(net, IMAGES, CLASSES, 0)
    assert torch.allclose(maps, localization.normalize_maps(expected.relu()), atol=1e-5)
    assert maps.min() >= 0 and maps.max() <= 1


def test_cam_read_with_flips_averages_the_mirror_image_in():
    net = one_by_one_net()
    [read] = [method for method in methods.for_reading(localization.MapReading("max", 0.0, True))
              if method.key == "cam_read"]
    assert read.name == "CAM, max, flips" and read.raw is None  # the raw CAM stands for it in the sanity checks
    cams = (hand_cams(IMAGES) + hand_cams(IMAGES.flip(-1)).flip(-1)) / 2
    chosen = cams[torch.arange(3), CLASSES]
    assert torch.allclose(read.maps(net, IMAGES, CLASSES, 0), localization.normalize_maps(chosen, "max"), atol=1e-5)
    logits = cams.mean(dim=(-2, -1)) + torch.tensor([0.5, -0.5])
    assert torch.allclose(read.classify(net, IMAGES), logits, atol=1e-5)
    assert methods.describe_reading(localization.MapReading("ivr", 0.3, False)) == "CAM, ivr 0.3"


def test_the_baselines_do_not_look_at_the_model():
    net, other = one_by_one_net(), models.build_model("cnn", 2, 3, width=4, head=0).eval()
    for method in (methods.CENTER, methods.RANDOM, methods.EDGE):
        assert not method.uses_weights and method.layer is None
        assert torch.equal(method.maps(net, IMAGES, CLASSES, 5), method.maps(other, IMAGES, 1 - CLASSES, 5))
    center = methods.CENTER.maps(net, IMAGES, CLASSES, 0)
    assert center.shape == (3, 6, 6) and (center.numpy() == localization.centered_gaussian(6, 6)).all()
    noise = methods.RANDOM.maps(net, IMAGES, CLASSES, 5)
    assert not torch.equal(noise, methods.RANDOM.maps(net, IMAGES, CLASSES, 6)) and 0 <= noise.min() <= noise.max() < 1
    edges = methods.EDGE.maps(net, IMAGES, CLASSES, 0)
    assert torch.equal(edges, localization.normalize_maps(faithfulness.sobel_edges(IMAGES)))


def test_the_registry_and_its_groups():
    standard = methods.for_reading(localization.STANDARD_READING)
    assert [method.key for method in standard] == ["cam", "grad_cam", "center", "random", "edge"]
    recipe = methods.for_reading(localization.RECIPE_READING)
    assert [method.key for method in recipe] == ["cam", "cam_read", "grad_cam", "center", "random", "edge"]
    runs = {group: [method.key for method in recipe if method.runs_in(group)]
            for group in ("localization", "faithfulness", "sanity")}
    assert runs == {"localization": ["cam", "cam_read", "grad_cam", "center"],
                    "faithfulness": ["cam", "cam_read", "grad_cam", "center", "random", "edge"],
                    "sanity": ["cam", "grad_cam", "edge"]}
    assert methods.examples_method(recipe).key == "cam_read" and methods.examples_method(standard) is methods.CAM
    with pytest.raises(ValueError, match="a method with key 'grad_cam' is already registered"):
        methods.register(methods.Method("grad_cam", "another", methods.grad_cam_maps))


def inverted_cam(net, images, classes, seed):
    return 1 - methods.CAM.maps(net, images, classes, seed)


def negated_raw_cam(net, images, classes):
    return -methods.raw_cam(net, images, classes)


def test_a_method_a_user_adds_runs_in_every_group(trained_cluttered, tmp_path, monkeypatch):
    monkeypatch.setattr(methods, "METHODS", list(methods.METHODS))
    methods.register(methods.Method("inverted_cam", "CAM, inverted", inverted_cam, raw=negated_raw_cam))
    report = evaluate_cam.evaluate(cli.parse_hyperparameters(evaluate_cam, [
        f"--checkpoint={trained_cluttered / 'checkpoints/best.pt'}", f"--output_dir={tmp_path}", "--limit=8",
        "--batch_size=4", "--examples=0", "--explained=4", "--steps=2", "--road_images=1"]))
    added, cam = report.methods["inverted_cam"], report.methods["cam"]
    assert list(report.methods)[-1] == "inverted_cam" and added.groups() == ["localization", "faithfulness", "sanity"]
    assert 0 <= added.localization.max_box_acc_v2 <= 100 and added.faithfulness.images == 4
    # a negated map ranks its pixels in reverse, both before and after each stage: the same Spearman as CAM's
    for stage, scores in cam.sanity.cascade.items():
        assert added.sanity.cascade[stage].spearman == pytest.approx(scores.spearman), stage
    table = (tmp_path / "localization.md").read_text()
    assert table.count("| CAM, inverted |") == 2  # the localization table and the summary
    written = json.loads((tmp_path / "localization.json").read_text())
    assert written["methods"]["inverted_cam"]["name"] == "CAM, inverted"
