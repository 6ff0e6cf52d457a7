"""torchvision's GAP-headed classifiers as GapNets (model.py's torchvision part), their weights
read offline from torch's hub cache, fine-tuning, and drawing on a photo (visualize_cam.py)."""

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from utils import cli
import model as models
import torchvision_models
import train
import visualize_cam


def filled(name: str) -> models.GapNet:
    """build_model(name) made on the meta device and filled cheaply (weights 0.02 sin(...), a
    deterministic pattern of mixed signs, different in each tensor; batch-norm statistics 0 and 1):
    the identity below holds for any weights, and initializing the largest models at random takes
    seconds."""
    net = models.build_skeleton(name, 5, 3).to_empty(device="cpu")
    with torch.no_grad():
        for index, parameter in enumerate(net.parameters()):
            pattern = torch.arange(parameter.numel(), dtype=torch.float32).mul_(0.7).add_(index).sin_().mul_(0.02)
            parameter.copy_(pattern.view(parameter.shape))
        for buffer_name, buffer in net.named_buffers():
            buffer.fill_(1.0 if buffer_name.endswith("running_var") else 0.0)
    return net.eval()


SMALLEST_OF_EACH_FAMILY = {"resnet18", "resnext50_32x4d", "wide_resnet50_2", "densenet121", "googlenet", "inception_v3",
                           "mobilenet_v2", "efficientnet_b0", "mnasnet0_5", "regnet_x_400mf", "shufflenet_v2_x0_5"}


@pytest.mark.parametrize("name", [name if name in SMALLEST_OF_EACH_FAMILY else pytest.param(name, marks=pytest.mark.slow)
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
    with pytest.raises(cli.UserError, match="'IMAGENET2K' is not a weights name of resnet50; choose one of: IMAGENET1K_V1"):
        models.torchvision_weights("resnet50", "IMAGENET2K")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


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
