import json

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, run_script
from PIL import Image

import cli
import data
import evaluate_cam
import localization
import model as models


def evaluate(workdir, *extra: str) -> dict:
    args = [f"--checkpoint={workdir / 'checkpoints/best.pt'}", f"--output_dir={workdir / 'report'}", *extra]
    return evaluate_cam.evaluate(cli.parse_hyperparameters(evaluate_cam, args))


def test_report_on_a_cluttered_checkpoint(trained_cluttered):
    report = evaluate(trained_cluttered, "--batch_size=25", "--examples=5")
    assert report["images"] == 60 and set(report["methods"]) == {"CAM", "Grad-CAM", "center baseline"}
    for metrics in report["methods"].values():
        for name in ("top1_loc", "gt_known_loc", "max_box_acc", "max_box_acc_v2", "pxap"):
            assert 0 <= metrics[name] <= 100, name
        assert metrics["top1_loc"] <= metrics["gt_known_loc"] and metrics["gt_known_loc"] <= 100
        assert len(metrics["curves"]["thresholds"]) == 100
    written = sorted(path.name for path in (trained_cluttered / "report").iterdir())
    assert written == ["localization.json", "localization.md", "localization_examples.png",
                       "localization_thresholds.png"]
    assert json.loads((trained_cluttered / "report" / "localization.json").read_text()) == json.loads(json.dumps(report))
    table = (trained_cluttered / "report" / "localization.md").read_text()
    assert "| CAM |" in table and "| center baseline |" in table and "MaxBoxAccV2" in table


def test_report_matches_the_evaluator_on_the_same_maps(trained_cluttered):
    """The script's CAM numbers are those of LocalizationEvaluator on the true-class maps, and its
    classification accuracy that of the model, batch size not mattering."""
    report = evaluate(trained_cluttered, "--batch_size=7", "--examples=0", "--limit=30")
    net, checkpoint = models.load_checkpoint(trained_cluttered / "checkpoints/best.pt")
    info = data.DatasetInfo.from_dict(checkpoint["dataset"])
    test_set = data.load_dataset(info.name, trained_cluttered / "data", False, info.image_size, info.options).test
    images = torch.stack([test_set[i][0] for i in range(30)])
    labels = test_set.targets[:30]
    with torch.no_grad():
        logits, cams = models.class_activation_maps(net, images)
    heats = localization.normalize_maps(localization.upsample_maps(cams[torch.arange(30), labels][:, None], 40))
    evaluator = localization.LocalizationEvaluator()
    correct = (logits.argmax(1) == labels).numpy()
    evaluator.accumulate(heats[:, 0].numpy(), test_set.boxes[:30].numpy(), test_set.masks[:30].numpy(), correct)
    expected = evaluator.compute()
    for name in ("top1_loc", "gt_known_loc", "max_box_acc", "max_box_acc_v2", "pxap"):
        assert report["methods"]["CAM"][name] == pytest.approx(expected[name]), name
    assert report["classification_top1"] == pytest.approx(100 * correct.mean())


def test_center_baseline_does_not_depend_on_the_model(trained_cluttered):
    report = evaluate(trained_cluttered, "--examples=0", "--limit=20")
    test_set = data.load_dataset("fashion-mnist-cluttered", trained_cluttered / "data", False, 40, {"clutter": 3}).test
    evaluator = localization.LocalizationEvaluator()
    center = np.broadcast_to(localization.centered_gaussian(40, 40), (20, 40, 40))
    evaluator.accumulate(center, test_set.boxes[:20].numpy(), test_set.masks[:20].numpy(), np.ones(20, bool))
    assert report["methods"]["center baseline"]["max_box_acc_v2"] == evaluator.compute()["max_box_acc_v2"]


def test_visualize_draws_the_predicted_and_true_boxes(trained_cluttered):
    result = run_script("visualize_cam.py", f"--checkpoint={trained_cluttered / 'checkpoints/best.pt'}", "--index=3",
                        "--output_dir=drawn", "--alpha=0", "--display_size=0", cwd=trained_cluttered)
    assert result.returncode == 0, result.stderr
    overlay = np.asarray(Image.open(trained_cluttered / "drawn" / "cam_test00003_overlay.png"))
    x0, y0, x1, y1 = data.load_dataset(
        "fashion-mnist-cluttered", trained_cluttered / "data", False, 40, {"clutter": 3}
    ).test.boxes[3].tolist()
    red = (overlay == [255, 0, 0]).all(-1)
    assert red[y0, x0:x1].any() and red[y0:y1, x0].any()  # the true box's edges (where the green one is not)
    assert (overlay == [0, 255, 0]).all(-1).any()  # the CAM's box


def test_a_dataset_without_boxes_is_explained(trained, tmp_path):
    result = run_script("evaluate_cam.py", f"--checkpoint={trained / 'checkpoints/best.pt'}", cwd=tmp_path)
    assert_clean_error(result, "was trained on mnist, whose test set has no ground-truth boxes")
    assert list(tmp_path.iterdir()) == []


def test_a_command_line_error_is_one_line_and_exit_1(trained_cluttered, tmp_path):
    """The command-line smoke test of evaluate_cam.py's errors; tests/test_inputs.py checks every message."""
    args = [f"--checkpoint={trained_cluttered / 'checkpoints/best.pt'}", "--treshold_step=0.1"]
    assert_clean_error(run_script("evaluate_cam.py", *args, cwd=tmp_path), "did you mean --threshold_step?")
    assert list(tmp_path.iterdir()) == []

