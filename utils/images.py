"""Image files decoded faithfully into 8-bit "L" or "RGB" images, with one-line errors naming the file.

`read_image` reads any mode and bit depth Pillow opens (the loader of image-folder datasets);
`read_user_image` reads the one file a user named with --image.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from utils.cli import DatasetError, UserError


def read_image(path: str | Path, mode: str = "RGB") -> Image.Image:
    """An image file as an 8-bit image in mode ("RGB" or "L"), converted faithfully from any mode
    and bit depth Pillow opens: turned upright as its EXIF orientation says; 16-bit pixels (and
    32-bit integer ones, as Pillow opens 16-bit PGM files) scaled from [0, 65535], float pixels
    from [0, 1]; transparent pixels composited over black; the first frame of an animation.
    DatasetError naming the file if it is not an image that Pillow reads whole, or has more
    pixels than Pillow's decompression-bomb limit allows."""
    try:
        with Image.open(path) as image:
            return eight_bit(ImageOps.exif_transpose(image)).convert(mode)
    except Image.DecompressionBombError as error:
        raise DatasetError(f"{path} is too large to read safely ({error}); use a smaller image") from None
    except Exception as error:  # noqa: BLE001 -- Pillow raises many types for broken or unknown files
        raise DatasetError(f"{path} is not a readable image ({str(error) or type(error).__name__}); "
                           f"replace or remove it") from None


def eight_bit(image: Image.Image) -> Image.Image:
    """image with 8-bit channels, its alpha (if any) composited over black: mode "L" or "RGB"."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        scale = 255.0 if image.mode == "F" else 255.0 / 65535
        pixels = np.asarray(image, dtype=np.float64) * scale
        return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("1", "L", "RGB"):
        return image
    if "A" in image.mode or "a" in image.mode or "transparency" in image.info:
        colored = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", colored.size, (0, 0, 0, 255)), colored).convert("RGB")
    return image.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, ...


def read_user_image(path: str | Path, mode: str) -> Image.Image:
    """The image file a user named with --image, read as read_image does; UserError for a folder or
    a missing file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--image={path} is a folder; pass one image file as --image=PATH")
    if not path.is_file():
        raise UserError(f"image {path} not found; pass an existing image file as --image=PATH")
    return read_image(path, mode)
