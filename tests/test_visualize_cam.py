import numpy as np
import pytest
import torch
from helpers import assert_clean_error, pattern_images, run_script
from PIL import Image

import data
import model as models
import visualize_cam as vis
from evaluation import localization, map_reading
from utils import cli


def draw(trained, *extra):
    args = [f"--checkpoint={trained / 'checkpoints/best.pt'}", f"--output_dir={trained / 'drawn'}", *extra]
    return vis.draw(cli.parse_hyperparameters(vis, args), cli.given_names(args))


def error_line(capsys, argv) -> str:
    """The one line that `python visualize_cam.py ARGV` ends with (cli.run as the script runs it): exit
    code 1, `error: ...` on stderr, no traceback."""
    with pytest.raises(SystemExit) as exited:
        cli.run(lambda: vis.main(argv))
    stderr = capsys.readouterr().err
    assert exited.value.code == 1 and stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    return stderr


def test_the_reading_and_box_defaults_are_the_evaluations():
    """visualize_cam.py's literal defaults read and box the maps as evaluate_cam.py's recipe does
    (map_reading.RECIPE_READING, localization.CAM_THRESHOLD), so they cannot drift apart."""
    reading = map_reading.MapReading(vis.normalization, vis.percentile, vis.flip_maps)
    assert reading == map_reading.RECIPE_READING and vis.box_threshold == localization.CAM_THRESHOLD


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
    heats = map_reading.upsample_maps(cams[torch.arange(len(labels)), logits.argmax(1)][:, None], 28)[:, 0]
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


def test_draw_methods_side_by_side(trained, capsys):
    written = draw(trained, "--index=7", "--methods=layer_cam,cam,center", "--display_size=56")
    names = [path.name for path in written]
    assert names == ["cam_test00007_input.png", "cam_test00007_cam_overlay.png", "cam_test00007_layer_cam_overlay.png",
                     "cam_test00007_center_overlay.png", "cams_test7.png"]  # the registry's order
    assert all(Image.open(path).size == (56, 56) for path in written[:-1])
    assert Image.open(written[-1]).size[0] > Image.open(draw(trained, "--index=7")[-1]).size[0]  # 4 columns, not 3
    assert "test image 7: true 7 - seven, predicted 7 - seven" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--methods=cam", "--topk=2"], "--methods draws each method's map of the predicted class, and --topk=2 asks"),
    (["--methods=cam,layercam"], "--methods='layercam' is unknown; choose one of: cam, cam_read, grad_cam"),
])
def test_methods_errors(trained, extra, message):
    with pytest.raises(cli.UserError, match=message):
        draw(trained, *extra)


@pytest.mark.parametrize("extra, message", [
    (["--index=100"], "--index=100 is out of range: the mnist test set has 100 images"),
    (["--index=-5"], "--index must be a test image index >= 0"),
])
def test_index_errors_write_nothing(trained, tmp_path, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(cli.UserError, match=message):
        vis.main([f"--checkpoint={trained / 'checkpoints/best.pt'}", *extra])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra, message", [
    (["--index=3"], ("error: --index picks test images, and --image=photo.png draws your own image instead: "
                     "drop --index, or drop --image")),
    (["--samples=2", "--index=-1"], "error: --index and --samples pick test images, and --image=photo.png"),
], ids=["index", "index and samples"])
def test_flags_that_pick_test_images_are_refused_with_image(trained, tmp_path, monkeypatch, capsys, extra, message):
    """--image draws one image of yours: a flag that picks test images would be ignored, so it is refused (as given:
    --index=-1, the default, too) before any work. --data_dir, where test images are found, is left alone."""
    monkeypatch.chdir(tmp_path)
    Image.new("L", (8, 8)).save(tmp_path / "photo.png")
    argv = [f"--checkpoint={trained / 'checkpoints/best.pt'}", "--image=photo.png", "--data_dir=data", *extra]
    assert error_line(capsys, argv).startswith(message)
    assert [path.name for path in tmp_path.iterdir()] == ["photo.png"]


@pytest.mark.parametrize("name, pixels", [("nan.tif", np.nan), ("inf.pfm", np.inf)])
def test_an_image_of_nan_or_infinite_pixels_is_refused(trained, tmp_path, monkeypatch, capsys, name, pixels):
    """A float image (a 32-bit TIFF, a PFM) can hold NaN: it was drawn black after a numpy warning."""
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.full((8, 8), pixels, dtype=np.float32)).save(tmp_path / name)
    message = error_line(capsys, [f"--checkpoint={trained / 'checkpoints/best.pt'}", f"--image={name}"])
    assert message.startswith(f"error: {name} holds NaN or infinite pixels (64 of 64)")
    assert [path.name for path in tmp_path.iterdir()] == [name]


def test_a_100_megapixel_image_is_refused_at_pillows_limit(trained, tmp_path, monkeypatch, capsys):
    """Between Pillow's Image.MAX_IMAGE_PIXELS (89.5 MP), where it warns, and twice that, where it raises, an image
    was drawn after a warning; it is refused as one over twice the limit is (a 1-bit PNG: 12 KB on disk)."""
    monkeypatch.chdir(tmp_path)
    Image.new("1", (10_000, 10_000)).save(tmp_path / "huge.png")
    assert error_line(capsys, [f"--checkpoint={trained / 'checkpoints/best.pt'}", "--image=huge.png"]) == (
        "error: huge.png is too large to read safely (100,000,000 pixels, more than Pillow's limit of 89,478,485 "
        "against decompression bombs); use a smaller image\n")


@pytest.mark.slow
def test_a_command_line_error_is_one_line_and_exit_1(trained, tmp_path):
    """The command-line smoke test of visualize_cam.py's errors; tests/test_inputs.py checks every message."""
    result = run_script("visualize_cam.py", f"--checkpoint={trained / 'checkpoints/best.pt'}", "--alpha=1.5",
                        cwd=tmp_path)
    assert_clean_error(result, "--alpha must be in [0, 1], got 1.5")
    assert list(tmp_path.iterdir()) == []

