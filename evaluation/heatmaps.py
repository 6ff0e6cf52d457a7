"""Heat maps saved for wsolevaluation's own evaluator: one .npy per image, in a folder marked with its run.

wsolevaluation's `evaluate_wsol` reads `<scoremap_root>/<image id>.npy`; evaluate_cam.py
--save_heatmaps=DIR writes the standard CAM of each image's true class there (`write`).
"""

import json
from pathlib import Path

import numpy as np

import data
from utils import files
from utils.cli import UserError

MARK = "heatmaps_run.json"  # in a --save_heatmaps folder: which run wrote its .npy files


def prepared_folder(folder: str, checkpoint: str, split: str, limit: int) -> Path:
    """The folder, created; refused when it holds .npy files of another run (another checkpoint,
    split or limit, or no mark of ours)."""
    path = files.writable_folder(folder, "save_heatmaps")
    run = {"checkpoint": str(Path(checkpoint).resolve()), "split": split, "limit": limit}
    mark = path / MARK
    if next(path.rglob("*.npy"), None) is not None and marked_run(mark) != run:
        raise UserError(f"--save_heatmaps: {path} holds .npy heat maps of another run (or of unknown "
                        "origin); pass an empty or new folder, or delete them")
    with files.atomic_output(mark) as temporary:
        temporary.write_text(json.dumps(run))
    return path


def marked_run(mark: Path) -> dict | None:
    """The run a folder's mark names (None: no mark, or one that is not ours or is damaged)."""
    try:
        run = json.loads(mark.read_text())
    except (OSError, ValueError):
        return None
    return run if isinstance(run, dict) else None


def image_ids(dataset, split: str, start: int, stop: int) -> list[str]:
    """The ids of images start..stop-1 of a split: the dataset's image_ids(indices) under its Subset
    and Relabeled wrappers (e.g. wsolevaluation's relative paths), else "<split>/<index:06d>" with
    the image's index in the dataset underneath (the cluttered set)."""
    positions = np.arange(start, min(stop, len(dataset)))
    base, index, _ = data.unwrap(dataset)
    indices = positions if index is None else index.numpy()[positions]
    if hasattr(base, "image_ids"):
        return list(base.image_ids(indices))
    return [f"{split}/{int(i):06d}" for i in indices]


def write(folder: Path, cam_maps: np.ndarray, ids: list[str]) -> None:
    """The maps wsolevaluation is given: cam_maps (N, H, W), the true class's CAM, standard reading
    (raw, min-max), at the scored resolution, as float64 in [0, 1] in folder/<image id>.npy, the
    name wsolevaluation's evaluator reads (its inference.py saves `scoremaps/<image id>` with np.save).
    UserError for an id that would write outside folder."""
    inside = folder.resolve()
    for image_id, one in zip(ids, cam_maps.astype(np.float64)):
        path = folder / f"{image_id}.npy"
        if inside not in path.resolve().parents:
            raise UserError(f"--save_heatmaps: image id {image_id!r} would write outside {folder}; ids must be "
                            "relative paths inside the data folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.clip(one, 0.0, 1.0))
