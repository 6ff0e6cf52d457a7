"""torchvision's GAP-headed classifiers as GapNets (model.py's torchvision part), their weights
read offline from torch's hub cache, fine-tuning, and drawing on a photo (visualize_cam.py)."""

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import model as models
import train
import visualize_cam
from networks import torchvision_models
from training import schedules, settings
from utils import cli


def filled(name: str, **options) -> models.GapNet:
    """build_model(name) made on the meta device and filled cheaply (weights 0.02 sin(...), a
    deterministic pattern of mixed signs, different in each tensor; batch-norm statistics 0 and 1):
    the identity below holds for any weights, and initializing the largest models at random takes
    seconds."""
    net = models.build_skeleton(name, 5, 3, **options).to_empty(device="cpu")
    with torch.no_grad():
        for index, parameter in enumerate(net.parameters()):
            pattern = torch.arange(parameter.numel(), dtype=torch.float32).mul_(0.7).add_(index).sin_().mul_(0.02)
            parameter.copy_(pattern.view(parameter.shape))
        for buffer_name, buffer in net.named_buffers():
            buffer.fill_(1.0 if buffer_name.endswith("running_var") else 0.0)
    return net.eval()


SMALLEST_OF_EACH_FAMILY = {"resnet18", "resnext50_32x4d", "wide_resnet50_2", "densenet121", "googlenet", "inception_v3",
                           "mobilenet_v2", "efficientnet_b0", "mnasnet0_5", "regnet_x_400mf", "shufflenet_v2_x0_5"}


@pytest.mark.parametrize("name", [name if name in SMALLEST_OF_EACH_FAMILY
                                  else pytest.param(name, marks=pytest.mark.slow)
                                  for name in torchvision_models.torchvision_names()])
def test_cam_identity_for_every_supported_torchvision_architecture(name):
    """logits == mean(CAM) + bias, and the GapNet's logits are torchvision's forward pass."""
    net = filled(name)
    x = torch.randn(2, 3, 80, 80, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, cams = models.class_activation_maps(net, x)  # one forward pass: the largest models take seconds
    assert cams.shape[:2] == (2, 5)
    assert torch.allclose(logits, cams.mean(dim=(-2, -1)) + net.fc.bias, atol=1e-4, rtol=1e-4)
    assert net.arch == {"name": name, "num_classes": 5, "in_channels": 3, "options": {}, "weights": None}


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "googlenet", "mobilenet_v2", "efficientnet_b0",
                                  "regnet_x_400mf", "shufflenet_v2_x0_5", "mnasnet0_5"])
def test_the_gapnet_computes_what_torchvision_computes(name):
    torch.manual_seed(0)
    original = torchvision.models.get_model(name, num_classes=5, **({"aux_logits": False, "init_weights": True}
                                                                      if name == "googlenet" else {})).eval()
    features, fc = torchvision_models.trunk_and_head(name, original)
    net = models.GapNet(features, fc, {}).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(net(x), original(x), atol=1e-5)


@pytest.mark.parametrize("name, reason", [
    ("vgg16", "flattens the feature maps into fully connected layers"),
    ("alexnet", "flattens the feature maps"),
    ("convnext_tiny", "LayerNorm after the global average pooling"),
    ("vit_b_16", "vision transformer"),
    ("swin_t", "vision transformer"),
    ("mobilenet_v3_small", "a second linear layer"),
    ("squeezenet1_0", "1x1 conv and a ReLU before the pooling"),
])
def test_non_gap_heads_are_refused_with_the_reason(name, reason):
    with pytest.raises(cli.UserError, match=f"CAM does not apply to {name}: .*{reason}"):
        models.build_model(name, 10, 3)


def fake_weights(torch_home, name: str, weights: str, seed: int = 0) -> dict:
    """A state dict of torchvision's `name` saved where torchvision looks for `weights`
    (TORCH_HOME/hub/checkpoints/<file of its URL>); returns it."""
    torch.manual_seed(seed)
    state = torchvision.models.get_model(name).state_dict()
    entry = torchvision.models.get_model_weights(name)[weights]
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / entry.url.rsplit("/", 1)[-1])
    return state


def test_weights_are_read_from_the_hub_cache_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    saved = fake_weights(tmp_path, "resnet18", "IMAGENET1K_V1")
    net = models.build_model("resnet18", 1000, 3, weights="DEFAULT", download=False)
    assert torch.equal(net.features.conv1.weight, saved["conv1.weight"])
    assert torch.equal(net.features.layer4[1].bn2.running_var, saved["layer4.1.bn2.running_var"])
    assert torch.equal(net.fc.weight, saved["fc.weight"]) and net.arch["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    tuned = models.build_model("resnet18", 7, 3, weights="IMAGENET1K_V1", download=False)
    assert tuned.fc.out_features == 7 and torch.equal(tuned.features.conv1.weight, saved["conv1.weight"])


def test_missing_weights_offline_name_the_file_and_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(cli.UserError) as error:
        models.build_model("resnet50", 1000, 3, weights="IMAGENET1K_V2", download=False)
    message = str(error.value)
    assert f"put https://download.pytorch.org/models/resnet50-11ad3fa6.pth at {tmp_path}/hub/checkpoints/" in message
    assert "$TORCH_HOME/hub/checkpoints/resnet50-11ad3fa6.pth" in message and "machine with internet" in message
    with pytest.raises(cli.UserError,
                       match="'IMAGENET2K' is not a weights name of resnet50; choose one of: IMAGENET1K_V1"):
        models.torchvision_weights("resnet50", "IMAGENET2K")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


@pytest.mark.slow  # a resnet50 on a photo
def test_visualize_a_photo_with_pretrained_weights_and_no_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    fake_weights(tmp_path, "resnet18", "IMAGENET1K_V1")
    photo = tmp_path / "photo.jpg"
    Image.fromarray((np.random.default_rng(0).random((150, 210, 3)) * 255).astype(np.uint8)).save(photo)
    args = ["--model=resnet18", "--weights=DEFAULT", f"--image={photo}", "--topk=3", f"--output_dir={tmp_path / 'out'}",
            "--download=false"]
    written = visualize_cam.draw(cli.parse_hyperparameters(visualize_cam, args))
    assert len(written) == 6 and written[-1].name == "cams_photo_resnet18.png"
    overlay = np.asarray(Image.open(tmp_path / "out" / "cam_photo_resnet18_overlay.png"))
    assert overlay.shape == (150, 210, 3)  # drawn on the photo at its own resolution
    names = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert sum("_top2_" in name or "_top3_" in name for name in names) == 2
    with pytest.raises(cli.UserError, match="draws on your own photo: pass --image=PATH"):
        visualize_cam.draw(cli.parse_hyperparameters(visualize_cam, ["--model=resnet18", "--weights=DEFAULT"]))
    with pytest.raises(cli.UserError, match="--model and --weights go together"):
        visualize_cam.draw(cli.parse_hyperparameters(visualize_cam, ["--model=resnet18", f"--image={photo}"]))


def write_photo_folder(root, classes=("cat", "dog"), per_class=6, size=72) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                picture = (rng.random((size, size, 3)) * 80 + 120 * index).astype(np.uint8)
                Image.fromarray(picture).save(folder / f"{i}.png")


@pytest.mark.slow
def test_fine_tuning_records_its_start_and_reloads_and_resumes_without_the_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    saved = fake_weights(tmp_path / "torch", "resnet18", "IMAGENET1K_V1")
    write_photo_folder(tmp_path / "photos")
    args = [f"--data_dir={tmp_path / 'photos'}", "--dataset=folder", "--model=resnet18", "--weights=IMAGENET1K_V1",
            "--image_size=64", "--epochs=2", "--batch_size=4", "--lr=0.01", "--precision=fp32",
            f"--checkpoint_dir={tmp_path / 'checkpoints'}", f"--output_dir={tmp_path / 'outputs'}"]
    real_epoch, epochs = train.train_epoch, []

    def crash_in_epoch_2(*arguments, **options):
        epochs.append(1)
        if len(epochs) == 2:
            raise RuntimeError("power cut")
        return real_epoch(*arguments, **options)

    with monkeypatch.context() as patch, pytest.raises(RuntimeError, match="power cut"):
        patch.setattr(train, "train_epoch", crash_in_epoch_2)
        train.train(cli.parse_hyperparameters(train, args))
    for file in (tmp_path / "torch" / "hub" / "checkpoints").iterdir():
        file.unlink()  # the checkpoint alone rebuilds the model
    net, checkpoint = models.load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert checkpoint["arch"]["weights"] == "ResNet18_Weights.IMAGENET1K_V1" and net.fc.out_features == 2
    assert checkpoint["hyperparameters"]["weights"] == "IMAGENET1K_V1"
    assert not torch.equal(net.features.conv1.weight, saved["conv1.weight"])  # it trained
    assert torch.allclose(net.features.conv1.weight, saved["conv1.weight"], atol=0.05)  # from the pretrained start
    peaks = [group["max_lr"] for group in checkpoint["optimizer"]["param_groups"]]
    assert peaks == pytest.approx([0.001, 0.01])  # --backbone_lr=0.1 of --lr for the features, --lr for the new fc
    assert train.train(cli.parse_hyperparameters(train, [*args, "--resume"]))["epoch"] == 2  # no weights file read
    assert models.load_checkpoint(tmp_path / "checkpoints" / "last.pt")[1]["arch"] == checkpoint["arch"]


@pytest.mark.parametrize("name", ["cnn", "resnet18_small"])
def test_visualize_refuses_torchvision_weights_for_this_repos_own_models(tmp_path, name):
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(photo)
    args = [f"--model={name}", "--weights=DEFAULT", f"--image={photo}", f"--output_dir={tmp_path / 'out'}"]
    with pytest.raises(cli.UserError) as error:  # as train.py refuses it (tests/test_inputs.py)
        visualize_cam.draw(cli.parse_hyperparameters(visualize_cam, args))
    assert str(error.value) == (f"--weights loads torchvision's pretrained weights, and {name} is this repo's own "
                                "model; use a torchvision model such as --model=resnet50, or drop --weights")
    assert not (tmp_path / "out").exists()


# --- wsolevaluation's CAM backbones (wsol=True; torchvision_models.wsol_trunk) ---

WSOL_BACKBONES = [("resnet50", False, 64), ("resnet50", True, 64), ("inception_v3", False, 96),
                  ("inception_v3", True, 64), ("vgg16", False, 32), ("vgg16", True, 32)]


@pytest.mark.parametrize("name, large_feature_map, size", WSOL_BACKBONES)
def test_cam_identity_of_the_wsol_backbones(name, large_feature_map, size):
    net = filled(name, wsol=True, large_feature_map=large_feature_map)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, cams = models.class_activation_maps(net, x)
        assert torch.allclose(net(x), logits, atol=1e-4, rtol=1e-4)
    assert cams.shape[:2] == (2, 5) and cams.shape[-1] >= 2
    assert torch.allclose(logits, cams.mean(dim=(-2, -1)) + net.fc.bias, atol=1e-4, rtol=1e-4)
    assert net.arch["options"] == {"wsol": True, "large_feature_map": large_feature_map}


@pytest.mark.parametrize("name, options, side", [
    ("resnet50", {}, 7), ("resnet50", {"wsol": True}, 14), ("resnet50", {"wsol": True, "large_feature_map": True}, 28),
    ("inception_v3", {}, 5), ("inception_v3", {"wsol": True}, 14),
    ("inception_v3", {"wsol": True, "large_feature_map": True}, 28),
    ("vgg16", {"wsol": True}, 14), ("vgg16", {"wsol": True, "large_feature_map": True}, 28),
])
def test_map_sides_of_the_wsol_backbones_at_224_px(name, options, side):
    """wsolevaluation's sizes: 14x14 at 224 px (ResNet-50's layer4 at stride 1, VGG16 without pool5,
    Inception with Mixed_6a at stride 1), 28x28 with large_feature_map."""
    assert models.map_side(name, 3, 224, **options) == side


def test_wsol_backbones_keep_the_right_layers():
    resnet = models.build_skeleton("resnet50", 10, 3, wsol=True, large_feature_map=True)
    assert resnet.features.layer3[0].conv2.stride == resnet.features.layer4[0].conv2.stride == (1, 1)
    assert resnet.features.layer4[0].downsample[0].stride == (1, 1) and resnet.fc.in_features == 2048
    inception = models.build_skeleton("inception_v3", 10, 3, wsol=True)
    names = [name for name, _ in inception.features.named_children()]
    assert names[0] == "Conv2d_1a_3x3" and "transform_input" not in names and "maxpool3" in names
    assert names[-6:] == ["Mixed_6e", "dropout1", "SPG_A3_1b", "dropout2", "SPG_A3_2b", "dropout3"]
    assert not any(name.startswith("Mixed_7") for name in names) and inception.fc.in_features == 1024
    vgg = models.build_skeleton("vgg16", 10, 3, wsol=True)
    pools = [m for m in vgg.features.features if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 4 and vgg.features.conv6.out_channels == 1024 and vgg.features.conv6.bias is not None
    vgg28 = models.build_skeleton("vgg16", 10, 3, wsol=True, large_feature_map=True)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in vgg28.features.features) == 3


@pytest.mark.parametrize("name, options, message", [
    ("vgg16", {}, "CAM does not apply to vgg16: .*wsol=True"),
    ("resnet50", {"large_feature_map": True}, "add wsol=True"),
    ("densenet121", {"wsol": True}, "applies to resnet, .*not densenet121"),
])
def test_wsol_options_are_refused_where_they_do_not_apply(name, options, message):
    with pytest.raises(cli.UserError, match=message):
        models.build_model(name, 10, 3, **options)


def cheap_fake_weights(torch_home, name: str, weights: str) -> dict:
    """fake_weights without initializing the model: random values (seed 0) of torchvision's shapes,
    and VGG's 120 M classifier weights as one expanded zero (a file of a few bytes for them)."""
    with torch.device("meta"):
        options = {"init_weights": False} if name == "inception_v3" else {}
        shapes = torchvision.models.get_model(name, **options).state_dict()
    generator = torch.Generator().manual_seed(0)
    state = {key: (torch.zeros(1).expand(value.shape) if key.startswith("classifier.") else
                   torch.randn(value.shape, generator=generator) if value.is_floating_point() else
                   torch.zeros(value.shape, dtype=value.dtype)) for key, value in shapes.items()}
    entry = torchvision.models.get_model_weights(name)[weights]
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / entry.url.rsplit("/", 1)[-1])
    return state


@pytest.mark.slow
@pytest.mark.parametrize("name, weights, checks", [
    ("resnet50", "IMAGENET1K_V1", {"conv1.weight": "conv1.weight", "layer4.0.conv2.weight": "layer4.0.conv2.weight"}),
    ("inception_v3", "IMAGENET1K_V1", {"Conv2d_1a_3x3.conv.weight": "Conv2d_1a_3x3.conv.weight",
                                       "Mixed_6a.branch3x3.conv.weight": "Mixed_6a.branch3x3.conv.weight",
                                       "Mixed_6e.branch_pool.bn.running_var": "Mixed_6e.branch_pool.bn.running_var"}),
    ("vgg16", "IMAGENET1K_V1", {"features.0.weight": "features.0.weight", "features.28.bias": "features.28.bias"}),
])
def test_wsol_backbones_load_torchvision_imagenet_weights_offline_and_reload(tmp_path, monkeypatch, name, weights,
                                                                             checks):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    saved = cheap_fake_weights(tmp_path, name, weights)
    net = models.build_model(name, 200, 3, weights=weights, download=False, wsol=True)
    state = net.features.state_dict()
    for ours, theirs in checks.items():
        assert torch.equal(state[ours], saved[theirs]), ours
    assert net.fc.out_features == 200 and net.arch["options"] == {"wsol": True, "large_feature_map": False}
    assert net.arch["weights"] == str(torchvision.models.get_model_weights(name)[weights])
    path = tmp_path / "model.pt"
    models.save_checkpoint(path, net)
    for file in (tmp_path / "hub" / "checkpoints").iterdir():
        file.unlink()  # the checkpoint alone rebuilds the model
    loaded, _ = models.load_checkpoint(path)
    assert loaded.arch == net.arch and torch.equal(loaded.features.state_dict()[next(iter(checks))],
                                                   saved[next(iter(checks.values()))])


def test_train_passes_the_wsol_flags_to_the_model():
    def options(*args):
        return settings.model_options(cli.parse_hyperparameters(train, ["--model=resnet50", *args]))
    assert options() == {}
    assert options("--wsol_backbone") == {"wsol": True}
    assert options("--wsol_backbone", "--large_feature_map") == {"wsol": True, "large_feature_map": True}


@pytest.mark.parametrize("name, fast", [("resnet50", ("layer4",)), ("inception_v3", ("SPG_A3_1b", "SPG_A3_2b")),
                                        ("vgg16", ("conv6",))])
def test_train_gives_the_layers_wsolevaluation_trains_fast_the_heads_lr(name, fast):
    assert torchvision_models.head_rate_layers(name) == fast
    net = models.build_model(name, 200, 3, wsol=True)  # random weights: only the grouping is tested
    slow, head = schedules.parameter_groups(net, 0.01, fast)
    assert slow["lr"] == pytest.approx(0.01) and "lr" not in head  # the head's group takes --lr
    expected = {id(p) for layer in fast for p in getattr(net.features, layer).parameters()}
    expected |= {id(p) for p in net.fc.parameters()}
    assert {id(p) for p in head["params"]} == expected
    assert len(slow["params"]) + len(head["params"]) == len(list(net.parameters()))  # every weight in one group
    plain = schedules.parameter_groups(net, 0.01)  # a torchvision classifier fine-tuned as is: only fc is new
    assert {id(p) for p in plain[1]["params"]} == {id(p) for p in net.fc.parameters()}
    assert len(schedules.parameter_groups(net)) == 1  # no pretrained weights: one group at --lr
