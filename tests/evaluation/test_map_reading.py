import pytest
import torch

import model as models
from evaluation import map_reading


def test_normalize_maps_to_unit_range_per_map():
    maps = torch.tensor([[[[-2.0, 0.0], [2.0, 6.0]], [[1.0, 1.0], [1.0, 3.0]]]])
    normalized = map_reading.normalize_maps(maps)
    assert torch.allclose(normalized, torch.tensor([[[[0.0, 0.25], [0.5, 1.0]], [[0.0, 0.0], [0.0, 1.0]]]]))


def test_constant_map_normalizes_to_zeros_not_nan():
    normalized = map_reading.normalize_maps(torch.full((1, 1, 4, 4), 3.5))
    assert not torch.isnan(normalized).any() and torch.equal(normalized, torch.zeros(1, 1, 4, 4))


def test_upsample_is_bilinear_on_floats():
    maps = torch.tensor([[[[0.0, 1.0]]]])  # (1, 1, 1, 2)
    up = map_reading.upsample_maps(maps, (1, 4))
    assert up.dtype == torch.float32 and up.shape == (1, 1, 1, 4)
    assert torch.allclose(up, torch.tensor([[[[0.0, 0.25, 0.75, 1.0]]]]))  # interpolated, not repeated
    assert torch.equal(map_reading.upsample_maps(torch.full((2, 3, 7, 7), 2.0), 28), torch.full((2, 3, 28, 28), 2.0))


def test_max_and_ivr_normalizations_by_hand():
    maps = torch.tensor([[[-2.0, 0.0], [1.0, 4.0]]])
    assert torch.allclose(map_reading.normalize_maps(maps, "max"), torch.tensor([[[0.0, 0.0], [0.25, 1.0]]]))
    # the 0.5 quantile of (-2, 0, 1, 4) is 0.5: (0, 0, 0.5, 3.5) / 3.5
    ivr = map_reading.normalize_maps(maps, "ivr", percentile=0.5)
    assert torch.allclose(ivr, torch.tensor([[[0.0, 0.0], [0.5 / 3.5, 1.0]]]))
    assert torch.equal(map_reading.normalize_maps(maps, "ivr", 0.0), map_reading.normalize_maps(maps, "minmax"))
    assert torch.equal(map_reading.normalize_maps(-maps.abs() - 1, "max"), torch.zeros_like(maps))  # no NaN
    with pytest.raises(ValueError, match="unknown normalization 'sum'"):
        map_reading.normalize_maps(maps, "sum")


def tiny_gap_net() -> torch.nn.Module:
    """features: a 2x2 conv (not mirror-symmetric) then ReLU; fc: 2 features -> 3 classes."""
    net = models.build_model("cnn", 3, 1, width=1, pools=0, convs=(1, 1, 1), head=2)
    torch.manual_seed(0)
    for parameter in net.parameters():
        torch.nn.init.normal_(parameter)
    return net.eval()


def test_cam_heat_maps_with_flips_average_the_mirrored_maps():
    """The flip reading is the mean of the CAM and the mirrored CAM of the mirror image (and of
    their logits), then normalized: computed here by hand from class_activation_maps."""
    net, images = tiny_gap_net(), torch.randn(2, 1, 6, 6)
    classes = torch.tensor([[2], [0]])
    reading = map_reading.MapReading("max", flip=True)
    logits, chosen, heat = map_reading.cam_heat_maps(net, images, reading, classes)
    plain_logits, cams = models.class_activation_maps(net, images)
    mirror_logits, mirror_cams = models.class_activation_maps(net, images.flip(-1))
    mean = (cams + mirror_cams.flip(-1)) / 2
    expected = map_reading.normalize_maps(mean[torch.arange(2), classes[:, 0]][:, None], "max")
    assert torch.equal(chosen, classes) and torch.allclose(heat, expected, atol=1e-6)
    assert torch.allclose(logits, (plain_logits + mirror_logits) / 2, atol=1e-6)
    _, top, standard = map_reading.cam_heat_maps(net, images, topk=2)
    assert torch.equal(top, plain_logits.topk(2, dim=1).indices) and standard.shape == (2, 2, 6, 6)
    assert torch.allclose(standard[:, 0], map_reading.normalize_maps(
        cams.gather(1, top[:, :1, None, None].expand(-1, -1, 6, 6)))[:, 0], atol=1e-6)
