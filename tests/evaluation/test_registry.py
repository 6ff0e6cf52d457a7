import json

import pytest
import pytorch_grad_cam
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import evaluate_cam
import model as models
from evaluation import baselines, map_reading, registry
from utils import cli


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
    assert torch.allclose(registry.CAM.raw(net, IMAGES, CLASSES), expected, atol=1e-5)
    assert torch.allclose(registry.CAM.maps(net, IMAGES, CLASSES, 0), map_reading.normalize_maps(expected), atol=1e-5)
    logits = hand_cams(IMAGES).mean(dim=(-2, -1)) + torch.tensor([0.5, -0.5])
    assert torch.allclose(registry.CAM.classify(net, IMAGES), logits, atol=1e-5)


def test_grad_cam_of_a_gap_net_is_relu_cam_min_max_normalized():
    net, expected = one_by_one_net(), hand_cams(IMAGES)[torch.arange(3), CLASSES]
    maps = registry.GRAD_CAM.maps(net, IMAGES, CLASSES, 0)
    assert torch.equal(registry.GRAD_CAM.raw(net, IMAGES, CLASSES), maps)  # the library's reading is its own
    assert torch.allclose(maps, map_reading.normalize_maps(expected.relu()), atol=1e-5)
    assert torch.allclose(registry.relu_cam(net, IMAGES, CLASSES), maps, atol=1e-6)
    assert maps.min() >= 0 and maps.max() <= 1


def torchcam_net() -> models.GapNet:
    """The tiny model of the torchcam and pytorch-grad-cam issues (torchcam #218, grad-cam #560): a
    3x3 conv and ReLU (3 -> 6 channels), GAP and a linear layer to 4 classes, seeded weights of both
    signs."""
    torch.manual_seed(0)
    features, fc = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU()), nn.Linear(6, 4)
    return models.GapNet(features, fc, {"name": "torchcam", "num_classes": 4, "in_channels": 3, "options": {}}).eval()


SAME_AS_RELU_CAM = ["grad_cam", "hires_cam", "xgrad_cam", "shapley_cam"]  # on a GAP net, by construction


UNLIKE_RELU_CAM = ["grad_cam_plusplus", "layer_cam", "grad_cam_elementwise", "eigen_cam", "eigen_grad_cam", "kpca_cam",
                   "fem", "score_cam", "ablation_cam", "full_grad"]


def test_on_a_gap_net_grad_cam_hirescam_xgradcam_and_shapleycam_are_relu_cam_and_the_others_are_not():
    net, images = torchcam_net(), torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    classes = torch.tensor([0, 1, 2, 3])
    relu_cam = registry.relu_cam(net, images, classes)
    by_key = {method.key: method for method in registry.METHODS}
    for key in SAME_AS_RELU_CAM:
        assert (by_key[key].maps(net, images, classes, 0) - relu_cam).abs().max() < registry.SAME_MAPS_TOLERANCE, key
    for key in UNLIKE_RELU_CAM:
        assert (by_key[key].maps(net, images, classes, 0) - relu_cam).abs().max() > 0.05, key
    assert (registry.CAM.maps(net, images, classes, 0) - relu_cam).abs().max() > 0.05  # CAM keeps its negative values


@pytest.mark.parametrize("name, options, size", [("cnn", {"width": 4}, 28), ("resnet18_small", {}, 16)])
def test_grad_cam_is_relu_cam_on_this_repos_networks(name, options, size):
    torch.manual_seed(0)
    net = models.build_model(name, 5, 1, **options).eval()
    images, classes = torch.randn(2, 1, size, size), torch.tensor([0, 4])
    grad_cam = registry.GRAD_CAM.maps(net, images, classes, 0)
    assert (grad_cam - registry.relu_cam(net, images, classes)).abs().max() < 1e-5
    assert all(parameter.grad is None for parameter in net.parameters())  # nothing leaks into the model


def library_directly(kind, net, images, classes, **attributes) -> torch.Tensor:
    """pytorch-grad-cam's `kind` called as its README shows, on net.features (FullGrad: no layers)."""
    with kind(model=net, target_layers=[] if kind is pytorch_grad_cam.FullGrad else [net.features]) as cam:
        for name, value in attributes.items():
            setattr(cam, name, value)
        return torch.from_numpy(cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in classes]))


@pytest.mark.parametrize("key", list(registry.LIBRARY))
def test_every_library_method_makes_the_librarys_maps_and_leaves_the_model_as_it_was(key):
    net, images = torchcam_net(), torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    classes = torch.tensor([3, 0, 1])
    _, kind, layer = registry.LIBRARY[key]
    net.fc.weight.grad = torch.ones_like(net.fc.weight)  # gradients and flags of the caller's own
    net.fc.bias.requires_grad_(False)
    net.train()
    method = registry.library_method(key, batch_size=2)
    ours = method.maps(net, images, classes, 0)
    assert net.training and not net.fc.bias.requires_grad and torch.equal(net.fc.weight.grad, torch.ones(4, 6))
    assert all(parameter.grad is None for name, parameter in net.named_parameters() if name != "fc.weight")
    assert all(not module._forward_hooks and not module._backward_hooks for module in net.modules())  # hooks released
    assert isinstance(net.features, nn.Sequential)  # Ablation-CAM's swapped layer is back
    theirs = library_directly(kind, net.eval(), images, classes, **({"batch_size": 2} if method.batch_size else {}))
    assert ours.shape == (3, 8, 8) and torch.allclose(ours, theirs, atol=1e-6), key
    assert method.layer == layer and method.library == f"pytorch_grad_cam.{kind.__name__}"
    assert method.batch_size == (2 if kind in registry.BATCHED else None) and method.runs_in("sanity")


@pytest.mark.parametrize("key", [method.key for method in registry.METHODS])
def test_every_method_maps_the_batch_norm_folded_copy_as_the_model_up_to_float_rounding(key):
    """evaluate_cam.py's localization group makes its maps on models.folded_batch_norms' copy."""
    torch.manual_seed(0)
    net = models.build_model("cnn", 4, 1, width=4, pools=1, convs=(1, 1, 1), head=8).eval()
    for norm in (module for module in net.modules() if isinstance(module, nn.BatchNorm2d)):  # nothing at its default
        for tensor, low, high in ((norm.weight, -1.5, 1.5), (norm.bias, -0.5, 0.5), (norm.running_mean, -0.5, 0.5),
                                  (norm.running_var, 0.2, 2.0)):
            nn.init.uniform_(tensor.data, low, high)
    images, classes = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(3)), torch.tensor([0, 1, 2, 3])
    method = next(method for method in registry.METHODS if method.key == key)
    folded = method.maps(models.folded_batch_norms(net), images, classes, 0)
    assert (folded - method.maps(net, images, classes, 0)).abs().max() < 1e-4


def test_cam_read_with_flips_averages_the_mirror_image_in():
    net = one_by_one_net()
    [read] = [method for method in registry.for_reading(map_reading.MapReading("max", 0.0, True))
              if method.key == "cam_read"]
    assert read.name == "CAM, max, flips" and read.raw is None  # the raw CAM stands for it in the sanity checks
    cams = (hand_cams(IMAGES) + hand_cams(IMAGES.flip(-1)).flip(-1)) / 2
    chosen = cams[torch.arange(3), CLASSES]
    assert torch.allclose(read.maps(net, IMAGES, CLASSES, 0), map_reading.normalize_maps(chosen, "max"), atol=1e-5)
    logits = cams.mean(dim=(-2, -1)) + torch.tensor([0.5, -0.5])
    assert torch.allclose(read.classify(net, IMAGES), logits, atol=1e-5)
    logits_together, maps_together = read.logits_and_maps(net, IMAGES, CLASSES, 0)  # both from one pass
    assert torch.equal(logits_together, read.classify(net, IMAGES))
    assert torch.equal(maps_together, read.maps(net, IMAGES, CLASSES, 0))
    assert registry.describe_reading(map_reading.MapReading("ivr", 0.3, False)) == "CAM, ivr 0.3"


def test_the_registry_and_its_groups():
    family = list(registry.LIBRARY)
    standard = registry.for_reading(map_reading.STANDARD_READING)
    assert [method.key for method in standard] == ["cam", *family, "center", "random", "edge"]
    recipe = registry.for_reading(map_reading.RECIPE_READING)
    assert [method.key for method in recipe] == ["cam", "cam_read", *family, "center", "random", "edge"]
    runs = {group: [method.key for method in recipe if method.runs_in(group)]
            for group in ("localization", "faithfulness", "sanity")}
    assert runs == {"localization": ["cam", "cam_read", *family, "center"],
                    "faithfulness": ["cam", "cam_read", *family, "center", "random", "edge"],
                    "sanity": ["cam", *family, "edge"]}
    assert registry.examples_method(recipe).key == "cam_read" and registry.examples_method(standard) is registry.CAM
    assert registry.examples_method([registry.RANDOM, registry.GRAD_CAM]) is registry.GRAD_CAM
    with pytest.raises(ValueError, match="a method with key 'grad_cam' is already registered"):
        registry.register(registry.Method("grad_cam", "another", registry.GRAD_CAM.maps))


def test_methods_flags_name_registry_keys_or_all():
    assert registry.parse_keys(" layer_cam, cam,layer_cam ") == ["layer_cam", "cam"]
    assert registry.parse_keys("all") == [method.key for method in registry.for_reading(map_reading.RECIPE_READING)]
    assert registry.parse_keys("cam,all") == registry.parse_keys("all")
    chosen = registry.choose(["edge", "score_cam", "cam_read", "grad_cam"], map_reading.RECIPE_READING, batch_size=5)
    assert [method.key for method in chosen] == ["cam_read", "grad_cam", "score_cam", "edge"]  # the registry's order
    assert chosen[2].batch_size == 5 and chosen[1] is registry.GRAD_CAM
    standard = registry.choose(["cam_read"], map_reading.STANDARD_READING)  # the standard reading is CAM's own
    assert standard == [registry.CAM]
    with pytest.raises(cli.UserError, match=r"--methods='gradcam' is unknown; choose one of: cam, cam_read, grad_cam, "
                                            r".*, edge, all$"):
        registry.parse_keys("cam,gradcam")
    with pytest.raises(cli.UserError, match="--methods=' , ' names no method; choose one or more of: cam, cam_read"):
        registry.parse_keys(" , ")


def inverted_cam(net, images, classes, seed):
    return 1 - registry.CAM.maps(net, images, classes, seed)


def negated_raw_cam(net, images, classes):
    return -registry.raw_cam(net, images, classes)


@pytest.mark.slow  # a whole report
def test_a_method_a_user_adds_runs_in_every_group(trained_cluttered, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "METHODS", list(registry.METHODS))
    registry.register(registry.Method("inverted_cam", "CAM, inverted", inverted_cam, raw=negated_raw_cam))
    report = evaluate_cam.evaluate(cli.parse_hyperparameters(evaluate_cam, [
        f"--checkpoint={trained_cluttered / 'checkpoints/best.pt'}", f"--output_dir={tmp_path}", "--limit=8",
        "--batch_size=4", "--examples=0", "--explained=4", "--steps=2", "--road_images=1",
        "--methods=cam,inverted_cam"]))
    added, cam = report.methods["inverted_cam"], report.methods["cam"]
    assert list(report.methods) == ["cam", "inverted_cam"]
    assert added.groups() == ["localization", "faithfulness", "sanity"] and added.cost.ms_per_image > 0
    assert 0 <= added.localization.max_box_acc_v2 <= 100 and added.faithfulness.images == 4
    # a negated map ranks its pixels in reverse, both before and after each stage: the same Spearman as CAM's
    for stage, scores in cam.sanity.cascade.items():
        assert added.sanity.cascade[stage].spearman == pytest.approx(scores.spearman), stage
    table = (tmp_path / "localization.md").read_text()
    assert table.count("| CAM, inverted |") == 2  # the localization table and the summary (8 images: no intervals)
    written = json.loads((tmp_path / "localization.json").read_text())
    assert written["methods"]["inverted_cam"]["name"] == "CAM, inverted"


def test_the_baselines_do_not_look_at_the_model():
    net, other = one_by_one_net(), models.build_model("cnn", 2, 3, width=4, head=0).eval()
    for method in (registry.CENTER, registry.RANDOM, registry.EDGE):
        assert not method.uses_weights and method.layer is None
        assert torch.equal(method.maps(net, IMAGES, CLASSES, 5), method.maps(other, IMAGES, 1 - CLASSES, 5))
    center = registry.CENTER.maps(net, IMAGES, CLASSES, 0)
    assert center.shape == (3, 6, 6) and (center.numpy() == baselines.centered_gaussian(6, 6)).all()
    noise = registry.RANDOM.maps(net, IMAGES, CLASSES, 5)
    assert not torch.equal(noise, registry.RANDOM.maps(net, IMAGES, CLASSES, 6)) and 0 <= noise.min() <= noise.max() < 1
    edges = registry.EDGE.maps(net, IMAGES, CLASSES, 0)
    assert torch.equal(edges, map_reading.normalize_maps(baselines.sobel_edges(IMAGES)))
