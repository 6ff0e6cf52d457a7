import numpy as np
import pytest
import torch
from conftest import assert_clean_error, pattern_images, run_script, write_bad_checkpoints
from PIL import Image

import cli
import data
import localization
import model as models
import visualize_cam as vis


def test_to_rgb_image_undoes_the_normalization():
    original = np.random.default_rng(0).integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    pixels = torch.tensor(original).permute(2, 0, 1) / 255
    tensor = (pixels - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert np.array_equal(vis.to_rgb_image(tensor, mean, std), original)
    gray = vis.to_rgb_image(torch.zeros(1, 5, 6), (0.5,), (0.5,))
    assert gray.shape == (5, 6, 3) and gray.dtype == np.uint8 and (gray == 128).all()


def test_colorize_returns_rgb_not_bgr():
    heat = np.array([[0.0, 1.0]])
    colors = vis.colorize(heat, "jet")
    assert colors.shape == (1, 2, 3) and colors.dtype == np.uint8
    cold, hot = colors[0, 0], colors[0, 1]
    assert cold[2] > 100 and cold[0] < 50  # JET's low end is blue: blue channel last in RGB
    assert hot[0] > 100 and hot[2] < 50  # JET's high end is red: red channel first in RGB


def test_overlay_blends_with_alpha():
    image = np.full((4, 6, 3), 200, dtype=np.uint8)
    heat = np.linspace(0, 1, 24).reshape(4, 6)
    colored = vis.colorize(heat, "jet")
    assert np.array_equal(vis.overlay(image, heat, alpha=0.0), image)
    assert np.array_equal(vis.overlay(image, heat, alpha=1.0), colored)
    half = vis.overlay(image, heat, alpha=0.5)
    assert half.dtype == np.uint8 and half.shape == (4, 6, 3)
    assert np.abs(half.astype(int) - (image.astype(int) + colored) / 2).max() <= 0.5


def test_unknown_colormap():
    with pytest.raises(cli.UserError, match="unknown colormap 'rainbowz'; choose one of: .*jet"):
        vis.colorize(np.zeros((2, 2)), "rainbowz")


def draw(trained, *extra):
    args = [f"--checkpoint={trained / 'checkpoints/best.pt'}", f"--output_dir={trained / 'drawn'}", *extra]
    return vis.draw(cli.parse_hyperparameters(vis, args))


def test_draw_random_samples_is_seeded(trained, capsys):
    first = draw(trained, "--seed=5", "--samples=3")
    picked = capsys.readouterr().out.splitlines()[0]
    draw(trained, "--seed=5", "--samples=3")
    assert capsys.readouterr().out.splitlines()[0] == picked
    assert len(first) == 3 * 3 + 1 and first[-1].name == "cams_seed5.png"
    for path in first[:-1]:
        image = Image.open(path)
        assert image.size == (224, 224) and image.mode == "RGB"


def test_draw_index_with_topk(trained, capsys):
    written = draw(trained, "--index=7", "--topk=3", "--display_size=0")
    names = sorted(path.name for path in written)
    assert names[-1] == "cams_test7.png"
    assert [name for name in names if name.startswith("cam_test00007")][:3] == [
        "cam_test00007_heatmap.png", "cam_test00007_input.png", "cam_test00007_overlay.png"
    ]
    assert sum("_top2_" in name or "_top3_" in name for name in names) == 2
    assert Image.open(written[0]).size == (28, 28)  # display_size 0: the input size
    assert "test image 7: true 7 - seven, predicted 7 - seven" in capsys.readouterr().out


def test_cam_peaks_on_the_pattern_that_decides_the_class(trained):
    """Each class of the trained fixture's data is an 8x8 pattern at a random place; the map of the
    predicted class must put its maximum on that pattern (the CAM paper's claim, in miniature)."""
    net, _ = models.load_checkpoint(trained / "checkpoints/best.pt")
    test_set = data.load_dataset("mnist", trained / "data", download=False).test
    _, labels, corners = pattern_images(len(test_set), seed=1)  # the fixture's test split
    images = torch.stack([test_set[i][0] for i in range(len(test_set))])
    with torch.no_grad():
        logits, cams = models.class_activation_maps(net, images)
    assert (logits.argmax(1).numpy() == labels).all()
    heats = localization.upsample_maps(cams[torch.arange(len(labels)), logits.argmax(1)][:, None], 28)[:, 0]
    peaks = [divmod(int(heat.argmax()), 28) for heat in heats]
    hits = [
        top - 2 <= row < top + 10 and left - 2 <= col < left + 10
        for (row, col), (top, left) in zip(peaks, corners, strict=True)
    ]
    assert np.mean(hits) >= 0.9  # the peak lies on the pattern, within 2 pixels


def test_draw_own_image(trained, tmp_path):
    path = tmp_path / "holiday photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)).save(path)
    written = draw(trained, f"--image={path}")
    assert sorted(p.name for p in written) == [
        "cam_holiday photo_heatmap.png", "cam_holiday photo_input.png", "cam_holiday photo_overlay.png",
        "cams_holiday photo.png",
    ]


@pytest.mark.parametrize("extra, message", [
    (["--image=missing.png"], "image missing.png not found"),
    (["--image=notes.png"], "notes.png is not a readable image"),
    (["--index=100"], "--index=100 is out of range: the mnist test set has 100 images"),
    (["--index=-5"], "--index must be a test image index >= 0"),
    (["--alpha=1.5"], "--alpha must be in [0, 1], got 1.5"),
    (["--colormap=rainbowz"], "unknown colormap 'rainbowz'"),
    (["--topk=11"], "--topk=11 is more than the 10 classes of the checkpoint"),
    (["--samples=0"], "--samples must be at least 1"),
    (["--sample=3"], "unknown hyperparameter '--sample'; did you mean --samples?"),
    (["--output_dir=notes.png/out"], "cannot write to folder"),
])
def test_command_line_errors_write_nothing(trained, tmp_path, extra, message):
    (tmp_path / "notes.png").write_text("not an image")
    result = run_script("visualize_cam.py", f"--checkpoint={trained / 'checkpoints/best.pt'}", *extra, cwd=tmp_path)
    assert_clean_error(result, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.png"]


def test_bad_checkpoints_on_the_command_line(tmp_path):
    cases = write_bad_checkpoints(tmp_path)
    for case, (path, message) in cases.items():
        result = run_script("visualize_cam.py", f"--checkpoint={path}", cwd=tmp_path)
        assert_clean_error(result, message)
        assert not (tmp_path / "outputs").exists(), case
