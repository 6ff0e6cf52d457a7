"""Image files decoded faithfully into 8-bit "L" or "RGB" images, with one-line errors naming the file.

`read_image` reads any mode and bit depth Pillow opens (the loader of image-folder datasets);
`read_user_image` reads the one file a user named with --image.
"""

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from utils.cli import DatasetError, UserError


def read_image(path: str | Path, mode: str = "RGB") -> Image.Image:
    """An image file as an 8-bit image in mode ("RGB" or "L"), converted faithfully from any mode
    and bit depth Pillow opens: turned upright as its EXIF orientation says; 16-bit pixels (and
    32-bit integer ones, as Pillow opens 16-bit PGM files) scaled from [0, 65535], float pixels
    from [0, 1]; transparent pixels composited over black; the first frame of an animation.
    DatasetError naming the file if it is not an image that Pillow reads whole, holds NaN or
    infinite float pixels, or has more pixels than Image.MAX_IMAGE_PIXELS (Pillow's
    decompression-bomb limit: refused from there, where Pillow only warns up to twice that)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return eight_bit(ImageOps.exif_transpose(image), path).convert(mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        counted = re.search(r"\((\d+) pixels\)", str(error))  # Pillow's "Image size (N pixels) exceeds limit ..."
        pixels = f"{int(counted.group(1)):,} pixels, " if counted else ""
        raise DatasetError(f"{path} is too large to read safely ({pixels}more than Pillow's limit of "
                           f"{Image.MAX_IMAGE_PIXELS:,} against decompression bombs); use a smaller image") from None
    except DatasetError:
        raise
    except Exception as error:  # noqa: BLE001 -- Pillow raises many types for broken or unknown files
        raise DatasetError(f"{path} is not a readable image ({str(error) or type(error).__name__}); "
                           f"replace or remove it") from None


def eight_bit(image: Image.Image, path: str | Path = "the image") -> Image.Image:
    """image with 8-bit channels, its alpha (if any) composited over black: mode "L" or "RGB".
    DatasetError naming path if its float pixels are NaN or infinite (they have no gray level)."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        scale = 255.0 if image.mode == "F" else 255.0 / 65535
        pixels = np.asarray(image, dtype=np.float64) * scale
        if not np.isfinite(pixels).all():
            raise DatasetError(f"{path} holds NaN or infinite pixels ({np.count_nonzero(~np.isfinite(pixels)):,} of "
                               f"{pixels.size:,}), which have no gray level; replace them with numbers in [0, 1]")
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
