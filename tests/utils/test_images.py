"""Image files decoded into 8-bit L or RGB faithfully, whatever their mode, depth, alpha or orientation."""

import numpy as np
import pytest
from PIL import Image

from utils import images
from utils.cli import DatasetError


def saved(tmp_path, image: Image.Image, name: str, **options):
    path = tmp_path / name
    image.save(path, **options)
    return path


def gray(mode_image: Image.Image, tmp_path, name: str, **options) -> np.ndarray:
    """The pixels images.read_image gives for the image saved as name, as gray uint8 (H, W)."""
    return np.asarray(images.read_image(saved(tmp_path, mode_image, name, **options), "L"))


def test_read_image_scales_deep_pixels_from_their_own_range(tmp_path):
    levels = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)  # 16-bit: 100/255 of the way, and white
    assert Image.open(saved(tmp_path, Image.fromarray(levels), "deep.png")).mode == "I;16"
    assert gray(Image.fromarray(levels), tmp_path, "deep.png").tolist() == [[0, 100, 255]]
    assert gray(Image.fromarray(levels), tmp_path, "deep.pgm").tolist() == [[0, 100, 255]]  # opened as mode I
    floats = np.array([[0.0, 0.5, 1.0, 2.0]], dtype=np.float32)  # float pixels: [0, 1], clipped
    assert gray(Image.fromarray(floats), tmp_path, "float.tif").tolist() == [[0, 128, 255, 255]]
    assert gray(Image.fromarray(np.array([[0, 1]], dtype=bool)), tmp_path, "bits.png").tolist() == [[0, 255]]


def test_read_image_composites_transparency_over_black_and_keeps_colors(tmp_path):
    rgba = np.array([[[255, 0, 0, 255], [255, 255, 255, 0], [0, 0, 255, 128]]], dtype=np.uint8)
    rgb = np.asarray(images.read_image(saved(tmp_path, Image.fromarray(rgba), "alpha.png"), "RGB"))
    assert rgb.tolist() == [[[255, 0, 0], [0, 0, 0], [0, 0, 128]]]
    gray_alpha = Image.fromarray(np.array([[[200, 255], [200, 0]]], dtype=np.uint8), mode="LA")
    assert gray(gray_alpha, tmp_path, "la.png").tolist() == [[200, 0]]
    palette = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), mode="P")
    palette.putpalette([255, 255, 0, 10, 20, 30])
    rgb = np.asarray(images.read_image(saved(tmp_path, palette, "palette.png", transparency=1), "RGB"))
    assert rgb.tolist() == [[[255, 255, 0], [0, 0, 0]]]
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))  # red in CMYK
    assert np.asarray(images.read_image(saved(tmp_path, cmyk, "cmyk.tif"), "RGB"))[0, 0].tolist() == [255, 0, 0]


def test_read_image_turns_photos_upright(tmp_path):
    pixels_ = np.zeros((2, 3), dtype=np.uint8)
    pixels_[0, 0] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned, so the image is shown turned 90 degrees clockwise
    upright = gray(Image.fromarray(pixels_), tmp_path, "turned.png", exif=exif)
    assert upright.shape == (3, 2) and upright[0, 1] == 255


def test_read_image_refuses_a_decompression_bomb_and_a_broken_file_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = saved(tmp_path, Image.new("L", (20, 20)), "bomb.png")
    with pytest.raises(DatasetError, match="bomb.png is too large to read safely"):
        images.read_image(path)
    (tmp_path / "broken.tif").write_bytes(b"II*\x00" + bytes(40))
    with pytest.raises(DatasetError, match="broken.tif is not a readable image"):
        images.read_image(tmp_path / "broken.tif")


@pytest.mark.parametrize("pixels", [[[np.nan, np.nan]], [[0.5, np.inf]], [[-np.inf, 0.0]]])
def test_read_image_refuses_nan_or_infinite_float_pixels(tmp_path, pixels):
    """A 32-bit float TIFF (Pillow's mode F) can hold NaN and infinities: NaN was cast to black after a numpy
    warning, an infinity clipped to white or black. Each is refused, the file named."""
    path = saved(tmp_path, Image.fromarray(np.array(pixels, dtype=np.float32)), "float.tif")
    assert Image.open(path).mode == "F"
    with pytest.raises(DatasetError, match=r"float.tif holds NaN or infinite pixels \(\d of 2\), which have no gray "
                                           r"level; replace them with numbers in \[0, 1\]"):
        images.read_image(path, "L")


def test_read_image_refuses_every_image_over_pillows_pixel_limit_alike(tmp_path, monkeypatch):
    """Pillow warns from Image.MAX_IMAGE_PIXELS and raises from twice that: one rule here, refused from the limit,
    in the same words (a 100-megapixel PNG was read after a warning)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    images.read_image(saved(tmp_path, Image.new("L", (10, 10)), "limit.png"))  # at the limit: read
    for side, name in ((11, "warned.png"), (15, "raised.png")):  # 121 pixels: Pillow warns; 225: it raises
        path = saved(tmp_path, Image.new("1", (side, side)), name)
        with pytest.raises(DatasetError) as refused:
            images.read_image(path)
        assert str(refused.value) == (f"{path} is too large to read safely ({side * side} pixels, more than Pillow's "
                                      "limit of 100 against decompression bombs); use a smaller image")
