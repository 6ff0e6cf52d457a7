"""Draw class activation maps of a trained checkpoint on random test images (or your own image).

    python visualize_cam.py                          # 4 random test images, CAM of the predicted class
    python visualize_cam.py --index=42 --topk=3      # test image 42, CAMs of its 3 most probable classes
    python visualize_cam.py --image=photo.png        # your own image, resized as the checkpoint expects
    python visualize_cam.py --model=resnet50 --weights=DEFAULT --image=photo.jpg --topk=3  # pretrained, no checkpoint
    python visualize_cam.py --methods=cam,grad_cam,layer_cam,eigen_cam   # methods side by side, predicted class
    python visualize_cam.py --help                   # every hyperparameter with its default

For each image it writes PREFIX_input.png, PREFIX_heatmap.png and PREFIX_overlay.png to outputs/,
and one figure per run with input | CAM | overlay and the predicted and true classes. With
--methods, it writes PREFIX_input.png and one PREFIX_<method>_overlay.png per method instead, and
the figure shows input | each method's overlay, all of the predicted class. The overlays show the
CAM paper's box of each map in green (largest region above 20% of the normalized map) and, for
datasets with ground truth (fashion-mnist-cluttered), the true box in red.
"""

from utils import cli  # noqa: I001 -- first: a Ctrl-C while torch loads then ends in one line, not a traceback

if __name__ == "__main__":
    cli.quiet_interrupts()

import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from matplotlib.figure import Figure
from torchvision import transforms as T

import data
import model as models
from datasets.ground_truth import exclusive_boxes
from evaluation import localization, map_reading, registry
from utils import checkpoints, devices, drawing, files, seeds
from utils.images import read_user_image

# --- hyperparameters: edit them here, or override them on the command line (--name=value) ---
# what to draw
checkpoint: str = "checkpoints/last.pt"  # a checkpoint written by train.py: last.pt (the final model), or best.pt
samples: int = 4  # how many random test images to draw
index: int = -1  # draw this test image instead of random ones (-1: random)
seed: int = -1  # seed of the random pick; -1: a new pick each run (the seed is printed to repeat it)
image: str = ""  # draw this image file instead of test images
model: str = ""  # with --weights and --image: a torchvision classifier (resnet50, densenet161, ...): no checkpoint
weights: str = ""  # with --model: torchvision's weights (DEFAULT, IMAGENET1K_V1, ...), read from torch's hub cache
data_dir: str = ""  # where the test set is found; "": the data_dir the checkpoint was trained with
download: bool = True  # download the test set if it is not on disk
# maps
topk: int = 1  # draw the CAMs of the K most probable classes (1: the predicted class only)
methods: str = ""  # draw these methods' maps of the predicted class side by side: keys of evaluation/registry.py,
    # comma-separated (cam_read: CAM as --normalization etc. say), or all; "": CAM alone, of the --topk classes
normalization: str = "max"  # how CAMs are scaled to [0, 1]: minmax | max | ivr (map_reading.normalize_maps)
percentile: float = 0.0  # ivr: the quantile of each map subtracted before scaling, in [0, 1)
flip_maps: bool = True  # average in the CAMs of the mirror image, mirrored back (datasets trained with flips)
# drawing
alpha: float = 0.5  # opacity of the heatmap over the image, in [0, 1]
colormap: str = "jet"  # OpenCV colormap name: jet, turbo, inferno, viridis, hot, ...
boxes: bool = True  # draw each map's box (green) and, where the dataset has one, the true box (red)
box_threshold: float = 0.2  # the box bounds the largest region above this fraction of the normalized map
display_size: int = 224  # side of the written images in pixels (0: the model's input size)
# output and runtime
output_dir: str = "outputs"  # where the images and the figure are written
device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
# ------------------------------------------------------------------------------------------------


MAX_SAMPLES = 256  # rows of the figure: more is better drawn as several figures
MAX_FIGURE_PIXELS = 2**28  # the figure's panels together: about 0.8 GB as RGB
MAX_DISPLAY_SIZE = 8192  # pixels a side: larger overlays need gigabytes and show nothing more
TEST_SET_FLAGS = ("index", "samples")  # they pick test images to draw: with --image, none is drawn


def validate(cfg, given: set[str] = frozenset()) -> None:
    """UserError for a bad value, or for a flag set on the command line (given) that does not apply:
    one that picks test images, with --image."""
    checks = [
        (1 <= cfg.samples <= MAX_SAMPLES, f"--samples must be in [1, {MAX_SAMPLES}] (the figure holds a row per "
                                          f"sample), got {cfg.samples}"),
        (cfg.index >= -1, f"--index must be a test image index >= 0 (or -1 for random), got {cfg.index}"),
        (cfg.topk >= 1, f"--topk must be at least 1, got {cfg.topk}"),
        (0 <= cfg.alpha <= 1, f"--alpha must be in [0, 1], got {cfg.alpha}"),
        (0 <= cfg.box_threshold < 1, f"--box_threshold must be in [0, 1), got {cfg.box_threshold}"),
        (0 <= cfg.percentile < 1, f"--percentile must be in [0, 1), got {cfg.percentile}"),
        (0 <= cfg.display_size <= MAX_DISPLAY_SIZE,
         f"--display_size must be in [0, {MAX_DISPLAY_SIZE}], got {cfg.display_size}"),
    ]
    cli.require(checks)
    cli.check_choice("normalization", cfg.normalization, map_reading.NORMALIZATIONS)
    drawing.colormap_code(cfg.colormap)
    if cfg.methods:
        registry.parse_keys(cfg.methods)
        if cfg.topk > 1:
            raise cli.UserError(f"--methods draws each method's map of the predicted class, and --topk={cfg.topk} asks "
                                "for more classes: drop --topk, or drop --methods to draw CAM of the top classes")
    unused = " and ".join(f"--{name}" for name in TEST_SET_FLAGS if name in given)
    if cfg.image and unused:
        raise cli.UserError(f"{unused} pick{'s' * (' and ' not in unused)} test images, and --image={cfg.image} "
                            f"draws your own image instead: drop {unused}, or drop --image")


def pick_inputs(cfg, info: data.DatasetInfo, trained_data_dir: str) -> tuple[list, str]:
    """[(file prefix, description, image (C, S, S), true label or None, true box (4,) or None)] and
    the figure's name."""
    if cfg.image:
        tensor, _ = data.load_image(cfg.image, info)
        stem = Path(cfg.image).stem
        return [(f"cam_{stem}", Path(cfg.image).name, tensor, None, None)], f"cams_{stem}.png"
    test_set = data.load_dataset(
        info.name, cfg.data_dir or trained_data_dir, cfg.download, info.image_size, info.options
    ).test
    if cfg.index >= len(test_set):
        raise cli.UserError(f"--index={cfg.index} is out of range: the {info.name} test set has {len(test_set)} images")
    if cfg.index >= 0:
        indices, figure_name = [cfg.index], f"cams_test{cfg.index}.png"
    else:
        pick_seed = cfg.seed if cfg.seed >= 0 else random.SystemRandom().randrange(1_000_000)
        indices = random.Random(pick_seed).sample(range(len(test_set)), min(cfg.samples, len(test_set)))
        figure_name = f"cams_seed{pick_seed}.png"
        print(f"picked test images {indices} with --seed={pick_seed}")
    inputs = []
    for i in indices:
        tensor, label = test_set[i]
        truth = data.ground_truth(test_set, i, i + 1)  # GroundTruth, None without boxes
        box = exclusive_boxes(truth)[0] if truth is not None else None  # (M, 4)
        inputs.append((f"cam_test{i:05d}", f"test image {i}", tensor, int(label), box))
    return inputs, figure_name


def check_drawing_size(cfg, checkpoint: str, image_size) -> None:
    """UserError before any work when the checkpoint's image size is not a size, or when the figure
    (a row per sample, the input, the heat map and the overlays, each S x S with S --display_size or
    the image size) would not fit in MAX_FIGURE_PIXELS."""
    if not isinstance(image_size, int) or not 1 <= image_size <= MAX_DISPLAY_SIZE:
        raise cli.UserError(f"{checkpoint} states an image size of {image_size!r}, not one in [1, {MAX_DISPLAY_SIZE}]: "
                            "it is damaged or not this repo's; train a new one with `python train.py`")
    side = cfg.display_size or image_size
    pixels = (1 if cfg.image else cfg.samples) * (2 + max(cfg.topk, 1 + cfg.methods.count(","))) * side ** 2
    if pixels > MAX_FIGURE_PIXELS:
        raise cli.UserError(f"the figure would hold {pixels / 1e6:,.0f} megapixels ({side} px a panel), more than "
                            f"{MAX_FIGURE_PIXELS / 1e6:,.0f}: lower --samples or --display_size")


def draw(cfg, given: set[str] = frozenset()) -> list[Path]:
    """Compute and write the CAMs cfg asks for; returns the written paths. given: the hyperparameters
    set on the command line (cli.given_names), refused where they do not apply."""
    validate(cfg, given)
    if cfg.model or cfg.weights:
        return draw_pretrained(cfg)
    device = devices.pick_device(cfg.device)
    net, checkpoint = models.load_checkpoint(cfg.checkpoint, device, checkpoints.TRAINING_METADATA)
    if note := checkpoints.selection_note(cfg.checkpoint, checkpoint):
        print(note)
    info = data.DatasetInfo.from_dict(checkpoint["dataset"])
    check_drawing_size(cfg, cfg.checkpoint, info.image_size)
    if cfg.topk > len(info.classes):
        raise cli.UserError(f"--topk={cfg.topk} is more than the {len(info.classes)} classes of the checkpoint")
    inputs, figure_name = pick_inputs(cfg, info, checkpoint["hyperparameters"]["data_dir"])
    output_dir = files.writable_folder(cfg.output_dir, "output_dir")

    batch = torch.stack([tensor for _, _, tensor, _, _ in inputs]).to(device)
    size = cfg.display_size or info.image_size
    reading = map_reading.MapReading(cfg.normalization, cfg.percentile,
                                     cfg.flip_maps and data.trained_with_flips(info.name))
    written, rows = [], []
    for (prefix, description, tensor, label, true_box), maps in zip(
            inputs, maps_to_draw(cfg, net, batch, reading, size, info.classes)):
        picture = cv2.resize(drawing.to_rgb_image(tensor, info.mean, info.std), (size, size),
                             interpolation=cv2.INTER_NEAREST)
        truth = info.classes[label] if label is not None else "unknown"
        box = np.round(true_box * size / info.image_size) if true_box is not None else None
        written += write_maps(cfg, output_dir, prefix, description, picture, maps, truth, box, rows)
    return finish(written, rows, output_dir / figure_name, output_dir)


def draw_pretrained(cfg) -> list[Path]:
    """The CAMs of a torchvision classifier with pretrained weights (--model, --weights) on the photo
    --image, without a checkpoint: the photo resized as the weights' preprocessing resizes it (its
    short side) but not cropped, so that the maps cover all of it, and drawn at its own resolution."""
    if not (cfg.model and cfg.weights):
        raise cli.UserError("--model and --weights go together (for example --model=resnet50 --weights=DEFAULT); "
                            "without them the maps come from --checkpoint")
    if not cfg.image:
        raise cli.UserError(f"--model={cfg.model} --weights={cfg.weights} draws on your own photo: pass --image=PATH")
    entry = models.torchvision_weights(cfg.model, cfg.weights)
    classes = entry.meta["categories"]
    if cfg.topk > len(classes):
        raise cli.UserError(f"--topk={cfg.topk} is more than the {len(classes)} classes of {entry}")
    photo = read_user_image(cfg.image, "RGB")
    output_dir = files.writable_folder(cfg.output_dir, "output_dir")
    device = devices.pick_device(cfg.device)
    net = models.build_model(cfg.model, len(classes), 3, weights=cfg.weights, download=cfg.download).to(device).eval()
    preprocess = entry.transforms()
    resized = T.Resize(preprocess.resize_size, interpolation=preprocess.interpolation, antialias=True)(photo)
    batch = T.Normalize(preprocess.mean, preprocess.std)(T.functional.to_tensor(resized))[None].to(device)
    reading = map_reading.MapReading(cfg.normalization, cfg.percentile, cfg.flip_maps)  # ImageNet trains with flips
    [maps] = maps_to_draw(cfg, net, batch, reading, (photo.height, photo.width), classes)
    stem = Path(cfg.image).stem
    rows = []
    written = write_maps(cfg, output_dir, f"cam_{stem}_{cfg.model}", Path(cfg.image).name, np.asarray(photo),
                         maps, "unknown", None, rows)
    return finish(written, rows, output_dir / f"cams_{stem}_{cfg.model}.png", output_dir)


@dataclass
class MapsToDraw:
    """One image's maps to draw: heats (P, H, W) in [0, 1], each one's (file kind, panel title), the
    title of the first heat's heatmap panel (None: no heatmap drawn) and the predicted class with its
    probability."""

    heats: np.ndarray
    panels: list[tuple[str, str]]
    heatmap_title: str | None
    predicted: tuple[str, float]


def maps_to_draw(cfg, net, batch: torch.Tensor, reading: map_reading.MapReading, size, class_names) -> list[MapsToDraw]:
    """The maps of each image of batch (B, C, H, W), at size: CAM of its --topk most probable
    classes read as `reading` says (overlay, then top2_<class>_overlay, ...), or with --methods each
    method's map of the predicted class (<key>_overlay)."""
    if not cfg.methods:
        logits, top_classes, heats = map_reading.cam_heat_maps(net, batch, reading, topk=cfg.topk, size=size)
        probabilities = logits.softmax(dim=1).gather(1, top_classes)  # (B, K)
        drawn = []
        for heat, image_classes, image_probabilities in zip(heats.cpu().numpy(), top_classes.tolist(),
                                                            probabilities.tolist()):
            predicted = [(class_names[c], p) for c, p in zip(image_classes, image_probabilities)]
            kinds = ["overlay"] + [f"top{rank}_{re.sub(r'[^A-Za-z0-9]+', '-', name)}_overlay"
                                   for rank, (name, _) in enumerate(predicted[1:], start=2)]
            panels = [(kind, f"{name}: {100 * p:.1f}%") for kind, (name, p) in zip(kinds, predicted)]
            drawn.append(MapsToDraw(heat, panels, f"CAM of {predicted[0][0]}", predicted[0]))
        return drawn
    chosen = registry.choose(registry.parse_keys(cfg.methods), reading)
    probabilities, predicted = registry.model_logits(net, batch).softmax(dim=1).max(dim=1)
    heats = torch.stack([method.maps(net, batch, predicted, seeds.mix(cfg.seed)).float().cpu() for method in chosen], 1)
    heats = map_reading.upsample_maps(heats, size).clamp(0, 1).numpy()  # (B, M, size)
    return [MapsToDraw(heat, [(f"{method.key}_overlay", f"{method.name}\n{class_names[c]}: {100 * p:.1f}%")
                              for method in chosen], None, (class_names[c], p))
            for heat, c, p in zip(heats, predicted.tolist(), probabilities.tolist())]


def write_maps(cfg, output_dir: Path, prefix: str, description: str, picture: np.ndarray, maps: MapsToDraw,
               truth: str, true_box, rows: list) -> list[Path]:
    """Write PREFIX_input.png, PREFIX_heatmap.png (when maps has a heatmap) and an overlay PNG per
    heat of one picture (RGB uint8 (H, W, 3)), named as maps' panels say; appends its figure row to
    rows and returns the written paths."""
    overlays = [drawing.overlay(picture, heat, cfg.alpha, cfg.colormap) for heat in maps.heats]
    if cfg.boxes:
        thickness = max(1, min(picture.shape[:2]) // 112)
        for drawn, box in zip(overlays, localization.boxes_from_maps(maps.heats, cfg.box_threshold)):
            for one in true_box if true_box is not None else []:  # (M, 4); padding rows draw nothing
                drawing.draw_box(drawn, one, (255, 0, 0), thickness)
            drawing.draw_box(drawn, box, (0, 255, 0), thickness)
    images, panels = {"input": picture}, []
    if maps.heatmap_title:
        images["heatmap"] = drawing.colorize(maps.heats[0], cfg.colormap)
        panels.append((images["heatmap"], maps.heatmap_title))
    for (kind, title), drawn in zip(maps.panels, overlays):
        images[kind] = drawn
        panels.append((drawn, title))
    written = []
    for kind, rgb in images.items():
        drawing.save_png(output_dir / f"{prefix}_{kind}.png", rgb)
        written.append(output_dir / f"{prefix}_{kind}.png")
    name, probability = maps.predicted
    print(f"{description}: true {truth}, predicted {name} ({100 * probability:.1f}%) "
          f"-> {output_dir / prefix}_{{{','.join(images)}}}.png")
    rows.append((f"{description}\ntrue: {truth}", picture, panels))
    return written


def finish(written: list[Path], rows: list, figure_path: Path, output_dir: Path) -> list[Path]:
    write_figure(rows, figure_path)
    print(f"wrote {len(written)} images to {output_dir}/ and the figure {figure_path}")
    return [*written, figure_path]


def write_figure(rows: list, path: Path) -> None:
    """One row per image (title, picture, [(image, title)] of its panels): input | CAM of the top
    class | its overlay | overlays of the next classes; with --methods, input | each method's overlay."""
    columns = 1 + len(rows[0][2])
    figure = Figure(figsize=(2.6 * columns, 2.9 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), columns, squeeze=False)
    for axis_row, (heading, picture, panels) in zip(axes, rows):
        for axis, (image, title) in zip(axis_row, [(picture, heading), *panels]):
            axis.imshow(image)
            axis.set_title(title, fontsize=9)
            axis.axis("off")
    drawing.save_figure(figure, path, bbox_inches="tight", pad_inches=0.1)


def main(argv: list[str] | None = None) -> None:
    devices.keep_freed_memory()
    with cli.enough_memory("lower --display_size or --samples"):
        draw(cli.parse_hyperparameters(sys.modules[__name__], argv), cli.given_names(argv))


if __name__ == "__main__":
    cli.run(main)
