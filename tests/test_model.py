import pytest
import torch
from helpers import write_bad_checkpoints
from torch import nn

import model as models
from utils import cli

# (name, options, input channels, input size, expected map side)
ARCHITECTURES = [
    ("cnn", {}, 1, 28, 7),
    ("cnn", {"width": 8}, 3, 32, 8),
    ("cnn", {"width": 4, "convs": (1, 1, 3), "head": 12, "pools": 1}, 1, 28, 14),
    ("cnn", {"width": 4, "pools": 1, "dilation": 2}, 1, 64, 32),
    ("resnet18_small", {}, 1, 28, 4),
    ("resnet18_small", {}, 3, 32, 4),
    ("vgg16_gap", {}, 3, 32, 8),
    ("vgg16_gap", {"max_pools": 4}, 3, 64, 4),
]


def tiny_model() -> models.GapNet:
    """conv 1x1 (1 -> 2 channels, weights 1 and 2) -> GAP -> linear with hand-picked weights."""
    conv = nn.Conv2d(1, 2, kernel_size=1, bias=False)
    fc = nn.Linear(2, 2)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1))
        fc.weight.copy_(torch.tensor([[1.0, 0.5], [-1.0, 1.0]]))
        fc.bias.copy_(torch.tensor([0.1, -0.2]))
    return models.GapNet(conv, fc, arch={})


def test_cam_equals_hand_computation_on_tiny_model():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    logits, cams = models.class_activation_maps(tiny_model(), x)
    # f_1 = x, f_2 = 2x;  M_0 = 1 * x + 0.5 * 2x = 2x;  M_1 = -1 * x + 1 * 2x = x
    assert torch.equal(cams, torch.tensor([[[[2.0, 4.0], [6.0, 8.0]], [[1.0, 2.0], [3.0, 4.0]]]]))
    # logit_0 = mean(2x) + 0.1 = 5.1;  logit_1 = mean(x) - 0.2 = 2.3
    assert torch.allclose(logits, torch.tensor([[5.1, 2.3]]))


def test_raw_maps_keep_negative_evidence():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    net = tiny_model()
    with torch.no_grad():
        net.fc.weight.copy_(torch.tensor([[-1.0, 0.0], [0.0, 1.0]]))
    _, cams = models.class_activation_maps(net, x)
    assert torch.equal(cams[0, 0], -x[0, 0])  # no ReLU on the raw maps


@pytest.mark.parametrize("name, options, channels, size, side", ARCHITECTURES)
def test_cam_identity_and_shapes(name, options, channels, size, side):
    torch.manual_seed(0)
    net = models.build_model(name, 5, channels, **options).eval()
    x = torch.randn(3, channels, size, size)
    with torch.no_grad():
        logits, cams = models.class_activation_maps(net, x)
        features = net.features(x)
        forward = net(x)
    assert features.shape == (3, net.fc.in_features, side, side)
    assert logits.shape == (3, 5) and cams.shape == (3, 5, side, side)
    assert torch.allclose(logits, forward, atol=1e-5)
    assert torch.allclose(forward, net.fc(features.mean(dim=(-2, -1))), atol=1e-5)
    assert torch.allclose(logits, cams.mean(dim=(-2, -1)) + net.fc.bias, atol=1e-4, rtol=1e-4)
    assert net.arch == {"name": name, "num_classes": 5, "in_channels": channels, "options": options}


def test_every_image_of_a_batch_gets_its_own_map():
    torch.manual_seed(0)
    net = models.build_model("cnn", 3, 1, width=4).eval()
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        _, batched = models.class_activation_maps(net, x)
        single = torch.cat([models.class_activation_maps(net, x[i : i + 1])[1] for i in range(4)])
    assert torch.allclose(batched, single, atol=1e-5)
    assert not torch.allclose(batched[0], batched[1])


def test_gradients_flow_through_the_maps():
    net = models.build_model("cnn", 3, 1, width=4)
    _, cams = models.class_activation_maps(net, torch.randn(2, 1, 8, 8))
    cams.sum().backward()
    assert net.fc.weight.grad is not None and net.features[0].weight.grad is not None


@pytest.mark.parametrize("name, options, channels, size", [("cnn", {"width": 4}, 1, 28), ("resnet18_small", {}, 3, 32)])
def test_folded_batch_norms_give_the_same_logits_from_a_copy_without_batch_norms(name, options, channels, size):
    torch.manual_seed(0)
    net = models.build_model(name, 5, channels, **options)
    net.train()(torch.randn(16, channels, size, size))  # running statistics that are not the initial ones
    net.eval()
    folded = models.folded_batch_norms(net)
    images = torch.randn(4, channels, size, size)
    with torch.no_grad():
        assert torch.allclose(folded(images), net(images), atol=1e-5)
    assert not any(isinstance(module, nn.BatchNorm2d) for module in folded.modules())
    assert any(isinstance(module, nn.BatchNorm2d) for module in net.modules())  # the model is left as it was


@pytest.mark.parametrize("name, options, message", [
    ("alexnet", {}, "CAM does not apply to alexnet: its head flattens"),
    ("cnn", {"depth": 3}, "bad options {'depth': 3} for model 'cnn'"),
    ("cnn", {"convs": (1, 2)}, "convs must give 3 stages of at least 1 conv each, got (1, 2)"),
    ("cnn", {"dilation": 0}, "dilation must be at least 1, got 0"),
])
def test_build_model_rejects_unknown_names_and_options(name, options, message):
    with pytest.raises(cli.UserError) as error:
        models.build_model(name, 10, 1, **options)
    assert message in str(error.value)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    net = models.build_model("cnn", 4, 1, width=4)
    net.train()
    net(torch.randn(8, 1, 12, 12))  # moves the batch-norm running statistics
    path = tmp_path / "ckpt" / "model.pt"
    models.save_checkpoint(path, net, dataset={"name": "x"}, epoch=3, history=[{"epoch": 1, "loss": 0.5}])
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary file left
    loaded, checkpoint = models.load_checkpoint(path)
    assert not loaded.training
    assert loaded.arch == net.arch
    assert checkpoint["epoch"] == 3 and checkpoint["dataset"] == {"name": "x"}
    assert checkpoint["history"] == [{"epoch": 1, "loss": 0.5}]
    x = torch.randn(2, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(loaded(x), net.eval()(x))


def test_load_checkpoint_errors(tmp_path):
    for name, (path, message) in write_bad_checkpoints(tmp_path).items():
        with pytest.raises(cli.UserError) as error:
            models.load_checkpoint(path)
        assert message in str(error.value), name


def test_the_cnn_head_widens_the_final_maps_with_a_1x1_conv():
    net = models.build_model("cnn", 10, 1, width=4, convs=(1, 1, 1), head=24)
    assert net.fc.in_features == 24 and net.features[-3].kernel_size == (1, 1)
    assert sum(isinstance(module, nn.Conv2d) for module in net.features) == 4


def test_dilation_widens_the_third_stage_field_of_view_only():
    """With dilation 2 the third stage's 3x3 convs reach 2 pixels away (the others 1), and the
    forward with_features returns the maps that CAM reads."""
    net = models.build_model("cnn", 3, 1, width=2, pools=0, convs=(1, 1, 1), head=0, dilation=2)
    convs = [module for module in net.features if isinstance(module, torch.nn.Conv2d)]
    assert [conv.dilation for conv in convs] == [(1, 1), (1, 1), (2, 2)]
    assert [conv.padding for conv in convs] == [(1, 1), (1, 1), (2, 2)]
    with torch.no_grad():
        for conv in convs:
            conv.weight.fill_(0.1)  # positive weights on a positive image: every ReLU passes its gradient
    x = torch.ones(1, 1, 15, 15, requires_grad=True)
    net.eval()
    net.features(x)[0, :, 7, 7].sum().backward()
    reach = torch.nonzero(x.grad[0, 0].abs() > 0)
    assert reach.min().item() == 7 - 4 and reach.max().item() == 7 + 4  # 1 + 1 + 2 pixels each way
    logits, features = net(x.detach(), with_features=True)
    assert torch.allclose(logits, net(x.detach())) and torch.equal(features, net.features(x.detach()))


class TinyClassifier(nn.Module):
    """conv-ReLU trunk (3 -> 8 channels) -> pooling (global average unless given another) -> linear (8 -> 5)."""

    def __init__(self, pool: nn.Module | None = None):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 8, kernel_size=3, padding=1), nn.ReLU())
        self.pool = pool or nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.trunk(x)).flatten(1))


def test_gap_network_adapts_your_own_gap_classifier_without_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    original = TinyClassifier()
    net = models.gap_network(original.trunk, original.fc, reference=original, input_size=16)
    assert isinstance(net, models.GapNet) and not net.training and not original.training
    x = torch.randn(3, 3, 12, 20)
    with torch.no_grad():
        logits, cams = models.class_activation_maps(net, x)
        assert cams.shape == (3, 5, 12, 20)
        assert torch.allclose(logits, original(x), atol=1e-6) and torch.allclose(net(x), original(x), atol=1e-6)
    with pytest.raises(cli.UserError, match="adapted by model.gap_network and has no checkpoint"):
        models.save_checkpoint(tmp_path / "adapted.pt", net)
    assert list(tmp_path.iterdir()) == []


REFUSALS = {  # what is wrong with the adapted classifier: the error message
    "max pooling head": r"differ from those of the TinyClassifier by .*: its head is not global average pooling \+ fc",
    "pooled trunk": r"the trunk gives shape \(2, 8\) .* must give the last feature maps \(B, K, h, w\)",
    "channel mismatch": "the trunk gives 8 channels but fc takes 4 features",
    "not a linear fc": "fc must be the nn.Linear that the head applies to the pooled maps, got Identity",
    "fc without bias": "fc has no bias",
    "a plain function": "the trunk must be an nn.Module or a method of one",
    "wrong input channels": r"the trunk fails on a probe batch of shape \(2, 1, 16, 16\)",
    "integer maps": "the trunk gives torch.int64 values on a probe batch: it must give floating-point ones",
    "NaN trunk": "the trunk gives NaN or infinite values on a probe batch of random images",
    "NaN reference": "the reference gives NaN or infinite values on a probe batch",
    "fc on the meta device": "fc's weights are on the meta device, not loaded",
    "float64 fc": "the trunk holds torch.float32 weights on cpu and fc torch.float64 on cpu: put both",
    "negative tolerance": "tolerance must be >= 0 .*, got -1",
}


class Broken(nn.Module):
    """module's output made integer or NaN: a damaged trunk or reference."""

    def __init__(self, module: nn.Module, how: str):
        super().__init__()
        self.module, self.how = module, how

    def forward(self, x):
        out = self.module(x)
        return out.long() if self.how == "integer" else out * float("nan")


@pytest.mark.parametrize("case", REFUSALS)
def test_gap_network_refuses_what_is_not_gap_and_linear(case):
    torch.manual_seed(0)
    original = TinyClassifier(nn.AdaptiveMaxPool2d(1) if case == "max pooling head" else None)
    trunk, fc, reference, options = original.trunk, original.fc, original, {"input_size": 16}
    if case == "pooled trunk":
        trunk = nn.Sequential(original.trunk, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    elif case == "channel mismatch":
        fc = nn.Linear(4, 5)
    elif case == "not a linear fc":
        fc = nn.Identity()
    elif case == "fc without bias":
        fc = nn.Linear(8, 5, bias=False)
    elif case == "a plain function":
        trunk = lambda x: original.trunk(x)  # noqa: E731
    elif case == "wrong input channels":
        options["in_channels"] = 1
    elif case in ("integer maps", "NaN trunk"):
        trunk = Broken(original.trunk, "integer" if case == "integer maps" else "nan")
    elif case == "NaN reference":
        reference = Broken(original, "nan")
    elif case == "fc on the meta device":
        fc = nn.Linear(8, 5, device="meta")
    elif case == "float64 fc":
        fc = original.fc.double()
    elif case == "negative tolerance":
        options["tolerance"] = -1
    with pytest.raises(cli.UserError, match=REFUSALS[case]):
        models.gap_network(trunk, fc, reference=reference, **options)


@pytest.mark.oracle
@pytest.mark.slow  # builds a timm network
def test_gap_network_adapts_a_timm_classifier_by_its_forward_features():
    """timm's ResNet-18 (random weights) adapted as forward_features + get_classifier(): CAM's identity
    holds and the logits are timm's own; with timm's max pooling head it is refused."""
    timm = pytest.importorskip("timm", reason="pip install -r requirements-optional.txt")
    torch.manual_seed(0)
    original = timm.create_model("resnet18", pretrained=False, num_classes=10)
    net = models.gap_network(original.forward_features, original.get_classifier(), reference=original, input_size=64)
    x = torch.randn(3, 3, 96, 64)
    with torch.no_grad():
        logits, cams = models.class_activation_maps(net, x)
        expected = original(x)
    assert cams.shape == (3, 10, 3, 2)
    assert torch.allclose(logits, cams.mean(dim=(-2, -1)) + net.fc.bias)
    assert (logits - expected).abs().max() <= 1e-4 * expected.abs().max()
    max_pooling = timm.create_model("resnet18", pretrained=False, num_classes=10, global_pool="max")
    with pytest.raises(cli.UserError, match="differ from those of the ResNet by .*: its head is not global average"):
        models.gap_network(max_pooling.forward_features, max_pooling.get_classifier(), reference=max_pooling,
                           input_size=64)
