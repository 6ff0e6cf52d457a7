import json

import numpy as np
import pytest
import torch
from helpers import assert_clean_error, run_script, write_cub
from PIL import Image

import data
import evaluate_cam
import model as models
import visualize_cam
from evaluation import baselines, faithfulness, group_runs, intervals, localization, map_reading, registry, results
from utils import cli


def arguments(workdir, *extra: str) -> list[str]:
    return [f"--checkpoint={workdir / 'checkpoints/best.pt'}", f"--output_dir={workdir / 'report'}", *extra]


def evaluate(workdir, *extra: str) -> results.Report:
    return evaluate_cam.evaluate(cli.parse_hyperparameters(evaluate_cam, arguments(workdir, *extra)))


def keys(report: results.Report, group: str | None = None) -> list[str]:
    """The keys of the methods that group (None: any group) measured, in the report's order."""
    return [result.method.key for result in report.measured(group)]


FAMILY = ["grad_cam", "hires_cam", "xgrad_cam", "grad_cam_plusplus", "layer_cam", "eigen_cam"]  # the quick ones
FAMILY_FLAG = "--methods=" + ",".join(["cam", "cam_read", *FAMILY, "center", "random", "edge"])
SAME_AS_RELU_CAM = ["grad_cam", "hires_cam", "xgrad_cam"]  # of those


def test_the_defaults_are_the_librarys():
    """The literals at the top of evaluate_cam.py are the library's defaults (the recipe's reading,
    the CAM paper's box threshold, the sweep's step, deletion's steps, the CAM family's batch), so
    they cannot drift apart."""
    reading = map_reading.MapReading(evaluate_cam.normalization, evaluate_cam.percentile, evaluate_cam.flip_maps)
    assert reading == map_reading.RECIPE_READING
    assert (evaluate_cam.cam_threshold, evaluate_cam.threshold_step) == (localization.CAM_THRESHOLD,
                                                                        localization.THRESHOLD_STEP)
    assert (evaluate_cam.steps, evaluate_cam.cam_batch_size) == (faithfulness.STEPS, registry.CAM_BATCH_SIZE)
    assert evaluate_cam.bootstrap == intervals.RESAMPLES


def test_each_flag_belongs_to_the_groups_its_banner_names():
    groups = evaluate_cam.flag_groups()
    assert groups["threshold_step"] == ["localization"] and groups["steps"] == ["faithfulness"]
    assert groups["cam_threshold"] == groups["bootstrap"] == ["localization", "faithfulness"]
    assert groups["explained"] == ["faithfulness", "sanity"] and groups["sanity_seeds"] == ["sanity"]
    assert groups["checkpoint"] == groups["seed"] == groups["methods"] == []  # every group


def test_report_on_a_cluttered_checkpoint(trained_cluttered):
    report = evaluate(trained_cluttered, "--batch_size=25", "--examples=5", "--groups=localization", "--gallery=6",
                      FAMILY_FLAG)
    assert report.localization.images == 60 and keys(report) == ["cam", "cam_read", *FAMILY, "center"]
    for result in report.measured():
        scores = result.localization
        for name in ("top1_loc", "gt_known_loc", "max_box_acc", "max_box_acc_v2", "pxap"):
            assert 0 <= getattr(scores, name) <= 100, name
        operating = scores.operating
        assert operating.top1_loc <= operating.gt_known_loc <= 100
        assert operating.threshold == localization.CAM_THRESHOLD  # the run has no validation split
        assert len(scores.curves["thresholds"]) == 100
        assert result.cost.ms_per_image > 0 and result.cost.over_forward > 0
        same = result.method.key in SAME_AS_RELU_CAM
        assert (scores.equals_cam_max_diff < 1e-5) if same else (scores.equals_cam_max_diff > 0.01), result.method.key
    assert report.localization.forward_ms_per_image > 0 and report.batch_size == 25 and report.cam_batch_size is None
    written = sorted(path.name for path in (trained_cluttered / "report").iterdir())
    assert written == ["localization.json", "localization.md", "localization_examples.png",
                       "localization_thresholds.png", "report.html"]
    page = (trained_cluttered / "report" / "report.html").read_text()
    assert page.count('class="card') == 6 and page.count("data-method=") >= 6 * 9  # the gallery: every method
    written = json.loads((trained_cluttered / "report" / "localization.json").read_text())
    assert written == json.loads(json.dumps(report.as_json()))
    assert list(written["methods"]) == ["cam", "cam_read", *FAMILY, "center"]
    assert written["methods"]["cam_read"]["name"] == "CAM, max, flips"
    assert written["methods"]["layer_cam"]["library"] == "pytorch_grad_cam.LayerCAM"
    assert written["methods"]["grad_cam"]["cost"]["ms_per_image"] > 0
    assert written["methods"]["grad_cam"]["localization"]["equals_cam_max_diff"] < 1e-5
    table = (trained_cluttered / "report" / "localization.md").read_text()
    assert f"| {registry.CAM.name} |" in table and "| center baseline |" in table and "MaxBoxAccV2" in table
    assert "\nGrad-CAM, HiResCAM, XGrad-CAM: the same maps as ReLU(CAM), min-max normalized, on all 60 images" in table
    assert "; the others' maps differ from those by a max |diff| of " in table
    assert "| ms / image | × forward |" in table
    assert_intervals(report, table)


def assert_intervals(report: results.Report, table: str) -> None:
    """Every localization number of the table has its bootstrap interval, a mean's holds its point;
    every method but CAM its paired difference from CAM, and the report says which show none."""
    for result in report.measured("localization"):
        scores = result.localization
        assert set(scores.intervals) == {*group_runs.LOCALIZATION_STATISTICS, "operating.top1_loc",
                                         "operating.gt_known_loc"}
        for name in ("classification_top1", "top1_loc", "gt_known_loc", "operating.gt_known_loc"):
            low, high = scores.intervals[name]
            assert low <= scores.statistic(name) <= high, name
        if result.method.key == "cam":
            assert scores.difference_from_cam == {}
        else:
            difference = scores.difference_from_cam["max_box_acc_v2"]
            cam = report.methods["cam"].localization
            assert difference.value == pytest.approx(scores.max_box_acc_v2 - cam.max_box_acc_v2)
    assert report.localization.resamples == intervals.RESAMPLES and report.localization.bootstrap_seconds >= 0
    assert "brackets: 95% percentile bootstrap intervals over the images, 1,000 resamples" in table
    assert f"Against {registry.CAM.name} on the same images" in table and "no difference on" in table
    verdicts = {line.split(": ")[0]: line.split(": ", 1)[1] for line in table.splitlines() if line.startswith("- ")}
    assert verdicts["- Grad-CAM"] == verdicts["- HiResCAM"]  # the same maps, the same verdicts


def test_report_matches_the_evaluator_on_the_same_maps(trained_cluttered):
    """The script's CAM numbers are those of LocalizationEvaluator on the true-class maps, and its
    classification accuracy that of the model, batch size not mattering."""
    report = evaluate(trained_cluttered, "--batch_size=7", "--examples=0", "--limit=30", "--normalization=minmax",
                      "--flip_maps=false", "--groups=localization", "--gallery=0", FAMILY_FLAG)
    net, checkpoint = models.load_checkpoint(trained_cluttered / "checkpoints/best.pt")
    info = data.DatasetInfo.from_dict(checkpoint["dataset"])
    test_set = data.load_dataset(info.name, trained_cluttered / "data", False, info.image_size, info.options).test
    images = torch.stack([test_set[i][0] for i in range(30)])
    labels = test_set.targets[:30]
    with torch.no_grad():
        logits, cams = models.class_activation_maps(net, images)
    heats = map_reading.normalize_maps(map_reading.upsample_maps(cams[torch.arange(30), labels][:, None], 40))
    evaluator = localization.LocalizationEvaluator()
    correct = (logits.argmax(1) == labels).numpy()
    evaluator.accumulate(heats[:, 0].numpy(), data.ground_truth(test_set, 0, 30), correct)
    expected = evaluator.compute()
    assert keys(report) == ["cam", *FAMILY, "center"]  # the reading asked is the standard one
    cam = report.methods["cam"].localization
    for name in ("top1_loc", "gt_known_loc", "max_box_acc", "max_box_acc_v2", "pxap"):
        assert getattr(cam, name) == pytest.approx(expected[name]), name
    assert cam.classification_top1 == pytest.approx(100 * correct.mean())
    bare = evaluate(trained_cluttered, "--examples=0", "--limit=30", "--groups=localization", "--gallery=0",
                    "--methods=cam,center", "--bootstrap=0")  # bare numbers, the same
    assert bare.methods["cam"].localization.intervals == {} and bare.localization.resamples == 0
    assert bare.methods["center"].localization.max_box_acc_v2 == report.methods["center"].localization.max_box_acc_v2


def test_center_baseline_does_not_depend_on_the_model(trained_cluttered):
    report = evaluate(trained_cluttered, "--examples=0", "--limit=20", "--groups=localization")
    test_set = data.load_dataset("fashion-mnist-cluttered", trained_cluttered / "data", False, 40, {"clutter": 3}).test
    evaluator = localization.LocalizationEvaluator()
    center = np.broadcast_to(baselines.centered_gaussian(40, 40), (20, 40, 40))
    evaluator.accumulate(center, data.ground_truth(test_set, 0, 20), np.ones(20, bool))
    assert report.methods["center"].localization.max_box_acc_v2 == evaluator.compute()["max_box_acc_v2"]


def test_visualize_draws_the_predicted_and_true_boxes(trained_cluttered, tmp_path):
    visualize_cam.main([f"--checkpoint={trained_cluttered / 'checkpoints/best.pt'}", "--index=3",
                        f"--output_dir={tmp_path / 'drawn'}", "--alpha=0", "--display_size=0"])
    overlay = np.asarray(Image.open(tmp_path / "drawn" / "cam_test00003_overlay.png"))
    x0, y0, x1, y1 = data.load_dataset(
        "fashion-mnist-cluttered", trained_cluttered / "data", False, 40, {"clutter": 3}
    ).test.boxes[3].tolist()
    red = (overlay == [255, 0, 0]).all(-1)
    assert red[y0, x0:x1].any() and red[y0:y1, x0].any()  # the true box's edges (where the green one is not)
    assert (overlay == [0, 255, 0]).all(-1).any()  # the CAM's box


def test_a_dataset_without_boxes_is_explained_and_nothing_is_written(trained, tmp_path):
    with pytest.raises(cli.UserError, match="was trained on mnist, whose test set has no ground-truth boxes"):
        evaluate_cam.main([f"--checkpoint={trained / 'checkpoints/best.pt'}", f"--output_dir={tmp_path / 'out'}"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_command_line_error_is_one_line_and_exit_1(trained_cluttered, tmp_path):
    """The command-line smoke test of evaluate_cam.py's errors; tests/test_inputs.py checks every message."""
    args = [f"--checkpoint={trained_cluttered / 'checkpoints/best.pt'}", "--treshold_step=0.1"]
    assert_clean_error(run_script("evaluate_cam.py", *args, cwd=tmp_path), "did you mean --threshold_step?")
    assert list(tmp_path.iterdir()) == []



@pytest.mark.slow
def test_operating_thresholds_are_chosen_on_the_validation_split(trained_cluttered, tmp_path):
    """A run trained with --validation: each method's top-1 and GT-known loc on test are read at its
    best box threshold on the held-out training canvases, and --split=validation reports those."""
    checkpoint = torch.load(trained_cluttered / "checkpoints/best.pt", weights_only=True)
    checkpoint["hyperparameters"]["validation"] = 40
    torch.save(checkpoint, tmp_path / "held_out.pt")
    common = [f"--checkpoint={tmp_path / 'held_out.pt'}", "--examples=0", "--batch_size=16", "--groups=localization"]
    chosen = evaluate_cam.evaluate(cli.parse_hyperparameters(evaluate_cam, [*common, "--split=validation",
                                                                           f"--output_dir={tmp_path / 'validation'}"]))
    tested = evaluate_cam.evaluate(cli.parse_hyperparameters(evaluate_cam, [*common,
                                                                           f"--output_dir={tmp_path / 'test'}"]))
    assert chosen.localization.images == 40 and tested.localization.images == 60
    assert tested.localization.on_validation and tested.as_json()["thresholds_chosen_on"] == "validation"
    for result in tested.measured():
        scores, on_validation = result.localization, chosen.methods[result.method.key].localization
        at_best = localization.at_threshold({"curves": scores.curves}, on_validation.max_box_acc_threshold)
        assert scores.operating == results.OperatingPoint(**at_best)
        assert on_validation.operating.gt_known_loc == on_validation.max_box_acc


def test_validation_split_needs_a_run_trained_with_one(trained_cluttered):
    with pytest.raises(cli.UserError, match="was trained without a validation split; train with --validation=N"):
        evaluate(trained_cluttered, "--split=validation")


@pytest.mark.slow
def test_all_groups_side_by_side(trained_cluttered, tmp_path):
    """The default groups: one summary row per method with localization, faithfulness and sanity
    scores, a data randomization model compared, the curves in the JSON and the two new figures."""
    checkpoint = torch.load(trained_cluttered / "checkpoints/best.pt", weights_only=True)
    checkpoint["hyperparameters"]["permute_labels"] = True  # stands in for a run trained on permuted labels
    for parameter in checkpoint["state_dict"].values():
        if parameter.is_floating_point():
            parameter.add_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(0)))
    torch.save(checkpoint, tmp_path / "random_labels.pt")
    report = evaluate(trained_cluttered, "--examples=0", "--limit=20", "--explained=12", "--road_images=5",
                      "--steps=4", "--batch_size=8", f"--random_labels_checkpoint={tmp_path / 'random_labels.pt'}",
                      FAMILY_FLAG)
    assert keys(report) == ["cam", "cam_read", *FAMILY, "center", "random", "edge"]
    assert keys(report, "sanity") == ["cam", *FAMILY, "edge"] and report.sanity.seeds == 3
    for result in report.measured():
        scores = result.faithfulness
        assert scores.images == 12 and len(scores.curves["deletion"]) == 5
        assert 0 <= scores.deletion_auc <= 1 and 0 <= scores.pointing_game <= 100
        assert len(scores.road["morf"]) == len(faithfulness.ROAD_PERCENTAGES)
    edge = report.methods["edge"].sanity
    assert edge.cascade["features.0"].spearman == pytest.approx(1) and edge.last_stage.spearman == pytest.approx(1)
    assert edge.random_labels.ssim == pytest.approx(1)
    cam = report.methods["cam"].sanity
    assert cam.last_stage.spearman_std > 0 and cam.cascade["trained"].spearman_std is None
    assert all(result.cost.ms_per_image > 0 for result in report.measured("localization"))
    assert -1 <= report.faithfulness.cam_iou_vs_deletion_spearman <= 1
    written = sorted(path.name for path in (trained_cluttered / "report").iterdir())
    assert {"faithfulness_curves.png", "sanity_cascade.png", "sanity_curves.png", "localization.json"} <= set(written)
    table = (trained_cluttered / "report" / "localization.md").read_text()
    assert "| edge (Sobel) |" in table and "deletion AUC" in table and "random labels: Spearman" in table
    assert f" | {cam.last_stage.spearman:.2f} ± {cam.last_stage.spearman_std:.2f} | " in table
    assert "mean ± standard deviation over 3 random draws" in table
    passing, failing = table.split("Passes the cascading randomization")[1].split(".\n")[0].split("; fails: ")
    assert "edge (Sobel)" in failing and "edge" not in passing
    assert ("CAM (standard" in passing) == cam.passes_cascade


@pytest.mark.slow
def test_the_fast_layout_and_folded_batch_norms_change_the_scores_by_float_rounding_only(trained_cluttered, tmp_path,
                                                                                         monkeypatch):
    """--channels_last (NHWC) and the folded batch norms (the localization group's forward passes,
    the faithfulness scores' probabilities) compute the same report as the plain NCHW model with
    its batch norms, up to float rounding: maps within 1e-5 move no box here, and a pixel whose
    rank flips between near-equal map values moves a curve by little."""
    flags = ("--examples=0", "--limit=20", "--explained=12", "--road_images=3", "--steps=4", "--batch_size=8",
             "--sanity_seeds=1", "--gallery=0", "--methods=cam,cam_read,grad_cam,center,edge")
    fast = evaluate(trained_cluttered, *flags).as_json()["methods"]
    monkeypatch.setattr(evaluate_cam.model, "folded_batch_norms", lambda net: net)
    plain = evaluate(trained_cluttered, *flags, "--channels_last=false").as_json()["methods"]
    for key, result in fast.items():
        if result.get("localization"):
            for name in ("max_box_acc", "max_box_acc_v2", "gt_known_loc", "top1_loc"):
                assert result["localization"][name] == plain[key]["localization"][name], (key, name)
            assert result["localization"]["pxap"] == pytest.approx(plain[key]["localization"]["pxap"], abs=1e-3)
        for name in ("deletion_auc", "insertion_auc", "average_drop", "pointing_game", "energy_pointing_game"):
            expected = plain[key]["faithfulness"][name]
            assert result["faithfulness"][name] == pytest.approx(expected, abs=1e-3), (key, name)
        assert result["faithfulness"]["road"]["morf"] == pytest.approx(plain[key]["faithfulness"]["road"]["morf"],
                                                                       abs=1e-3)
        if result.get("sanity"):
            for stage, scores in result["sanity"]["cascade"].items():
                assert scores["spearman"] == pytest.approx(plain[key]["sanity"]["cascade"][stage]["spearman"], abs=1e-3)


@pytest.mark.parametrize("flags, message", [
    (["--groups=localisation"],
     "--groups='localisation' is unknown; choose one of: localization, faithfulness, sanity"),
    (["--groups=,"], "--groups=',' names no group; choose one or more of: localization, faithfulness, sanity"),
    (["--random_labels_checkpoint=x.pt", "--groups=localization"], "add sanity to --groups"),
    (["--groups=localization", "--baseline=black", "--steps=3"],
     "--steps is used by the faithfulness group, which --groups=localization leaves out: add faithfulness to --groups"),
    (["--groups=localization", "--explained=5"],
     "used by the faithfulness and sanity groups, which --groups=localization leaves out: add faithfulness or sanity "
     "to --groups, or drop --explained"),
    (["--groups=sanity", "--examples=3"], "--examples is used by the localization group"),
    (["--groups=sanity", "--flip_maps=false"], "add localization or faithfulness to --groups"),
    (["--baseline=noise"], "--baseline='noise' is unknown"),
    (["--steps=1"], r"--steps must be at least 2 \(with 1, deletion and insertion both average"),
    (["--sanity_seeds=0"], "--sanity_seeds must be at least 1, got 0"),
    (["--groups=localization", "--sanity_seeds=5"], "--sanity_seeds is used by the sanity group"),
    (["--cam_batch_size=0"], "--cam_batch_size must be at least 1, got 0"),
    (["--methods=cam,gradcam"], "--methods='gradcam' is unknown; choose one of: cam, cam_read, grad_cam, "),
    (["--methods=,"], "--methods=',' names no method; choose one or more of"),
    (["--methods=center,random", "--groups=faithfulness,sanity"],
     "--methods=center,random names no method that the sanity group measures; add one of: cam, grad_cam, "),
    (["--methods=random", "--groups=localization"], "add one of: cam, cam_read, grad_cam, "),
    (["--methods=cam,grad_cam", "--cam_batch_size=8"],
     "--cam_batch_size is used by score_cam and ablation_cam, which --methods=cam,grad_cam leaves out"),
    (["--methods=grad_cam", "--groups=localization", "--save_heatmaps=maps"],
     "--save_heatmaps writes the standard CAM's maps, which --methods=grad_cam leaves out: add cam"),
])
def test_explanation_flags_are_checked(trained_cluttered, flags, message):
    """Through main, which tells evaluate the flags given on the command line."""
    with pytest.raises(cli.UserError, match=message):
        evaluate_cam.main(arguments(trained_cluttered, *flags))


@pytest.mark.slow  # Ablation-CAM in every group
def test_methods_choose_what_every_group_runs(trained_cluttered, tmp_path):
    report = evaluate_cam.evaluate(cli.parse_hyperparameters(evaluate_cam, [
        f"--checkpoint={trained_cluttered / 'checkpoints/best.pt'}", f"--output_dir={tmp_path}", "--limit=4",
        "--batch_size=4", "--examples=0", "--explained=2", "--steps=2", "--road_images=0", "--sanity_seeds=1",
        "--methods=edge,ablation_cam,cam", "--cam_batch_size=16", "--gallery=0"]))
    assert keys(report) == ["cam", "ablation_cam", "edge"] and keys(report, "localization") == ["cam", "ablation_cam"]
    assert keys(report, "sanity") == ["cam", "ablation_cam", "edge"] and report.sanity.seeds == 1
    assert report.cam_batch_size == 16 and report.methods["ablation_cam"].method.batch_size == 16
    assert report.methods["cam"].sanity.last_stage.spearman_std is None  # one draw: no spread
    assert report.methods["ablation_cam"].cost.over_forward > 0 and report.methods["edge"].cost is None
    assert json.loads((tmp_path / "localization.json").read_text())["cam_batch_size"] == 16
    assert "\nNo method gives the maps of ReLU(CAM), min-max normalized: the closest" in (
        tmp_path / "localization.md").read_text()


@pytest.mark.slow
def test_every_method_runs_in_every_group(trained_cluttered, tmp_path):
    report = evaluate_cam.evaluate(cli.parse_hyperparameters(evaluate_cam, [
        f"--checkpoint={trained_cluttered / 'checkpoints/best.pt'}", f"--output_dir={tmp_path}", "--limit=4",
        "--batch_size=4", "--examples=2", "--explained=2", "--steps=2", "--road_images=1", "--methods=all"]))
    family = list(registry.LIBRARY)
    assert keys(report) == ["cam", "cam_read", *family, "center", "random", "edge"]
    assert keys(report, "sanity") == ["cam", *family, "edge"]
    for key in family:
        result = report.methods[key]
        assert result.cost.ms_per_image > 0 and 0 <= result.faithfulness.deletion_auc <= 1, key
        last = result.sanity.last_stage  # None: undefined, a map that the random weights made constant
        assert last.spearman is None or (-1 <= last.spearman <= 1 and last.spearman_std is not None), key
        assert last.spearman is not None or result.sanity.passes_cascade is None, key
    same = [key for key in keys(report, "localization")
            if report.methods[key].localization.equals_cam_max_diff <= registry.SAME_MAPS_TOLERANCE]
    assert same == ["grad_cam", "hires_cam", "xgrad_cam", "shapley_cam"]


def test_the_random_labels_model_must_be_one(trained_cluttered):
    path = trained_cluttered / "checkpoints/best.pt"
    with pytest.raises(cli.UserError, match="was not trained with --permute_labels"):
        evaluate(trained_cluttered, f"--random_labels_checkpoint={path}", "--groups=sanity")


def test_the_random_labels_model_is_not_the_model_itself(trained_cluttered, tmp_path):
    """The same file, or a copy of its weights, would score a Spearman of 1 and pass for a result."""
    checkpoint = torch.load(trained_cluttered / "checkpoints/best.pt", weights_only=True)
    checkpoint["hyperparameters"]["permute_labels"] = True
    permuted = tmp_path / "permuted.pt"
    torch.save(checkpoint, permuted)
    for model_path in (permuted, trained_cluttered / "checkpoints/best.pt"):
        args = [f"--checkpoint={model_path}", f"--random_labels_checkpoint={permuted}", "--groups=sanity",
                "--explained=2", f"--output_dir={tmp_path / 'report'}"]
        with pytest.raises(cli.UserError, match=f"{permuted} holds the same weights as --checkpoint {model_path}"):
            evaluate_cam.evaluate(cli.parse_hyperparameters(evaluate_cam, args))
    assert not (tmp_path / "report").exists()


@pytest.mark.slow
def test_a_report_replaces_the_earlier_one_whole(trained_cluttered, tmp_path):
    """A run with fewer groups deletes the figures of the earlier run's other groups (and no other
    file), names what it wrote, and an empty --groups touches nothing."""
    folder = tmp_path / "report"
    common = [f"--checkpoint={trained_cluttered / 'checkpoints/best.pt'}", f"--output_dir={folder}", "--limit=6",
              "--batch_size=6"]
    everything = evaluate_cam.evaluate(cli.parse_hyperparameters(evaluate_cam, [
        *common, "--examples=2", "--explained=4", "--steps=2", "--road_images=0"]))
    assert everything.files == ["localization.md", "localization.json", "report.html", "localization_examples.png",
                                   "localization_thresholds.png", "faithfulness_curves.png", "sanity_cascade.png",
                                   "sanity_curves.png"]
    (folder / "notes.txt").write_text("mine")
    (folder / "localization_examples.png.bak").write_text("mine too")
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    with pytest.raises(cli.UserError, match="names no group"):
        evaluate_cam.main([*common, "--groups=,"])
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
    report = evaluate_cam.evaluate(cli.parse_hyperparameters(
        evaluate_cam, [*common, "--groups=faithfulness", "--explained=4", "--steps=2", "--road_images=0"]))
    assert report.files == ["localization.md", "localization.json", "report.html", "faithfulness_curves.png"]
    assert sorted(path.name for path in folder.iterdir()) == sorted(report.files + ["localization_examples.png.bak",
                                                                                  "notes.txt"])
    assert json.loads((folder / "localization.json").read_text())["files"] == report.files
    table = (folder / "localization.md").read_text()
    assert table.endswith("Files of this report: localization.md, localization.json, report.html, "
                          "faithfulness_curves.png.\n")
    note = table.split("\n\n")[0]
    assert note.startswith("All methods side by side: faithfulness on the first 4 test images")
    assert "cascade" not in note
    assert "no ROAD (--road_images=0)" in note


def test_a_report_records_only_what_ran(trained_cluttered, tmp_path):
    """A sanity run: --limit bounds its images, and neither the JSON nor the table mentions the
    deletion steps, baseline, ROAD or pointing tolerance it did not use."""
    report = evaluate_cam.evaluate(cli.parse_hyperparameters(evaluate_cam, [
        f"--checkpoint={trained_cluttered / 'checkpoints/best.pt'}", f"--output_dir={tmp_path}", "--groups=sanity",
        "--limit=5", "--methods=cam,grad_cam,center,edge", "--sanity_seeds=1", "--gallery=0"]))
    assert report.explained_images == 5 and keys(report) == ["cam", "grad_cam", "edge"]
    assert not {"steps", "baseline", "road_images", "tolerance", "images"} & set(report.as_json())
    table = (tmp_path / "localization.md").read_text()
    assert "sanity on the first 5 test images, maps of the predicted class (cascade:" in table
    for word in ("steps", "baseline", "ROAD:", "pointing game within", "faithfulness on"):
        assert word not in table.split("\n\n")[0], word


@pytest.mark.slow
def test_any_int_seed_works(trained_cluttered, tmp_path):
    """Seeds beyond torch's range are taken modulo 2**64: 2**64 measures what 0 does (the examples
    figure may show other images), and -1 works."""
    reports = {}
    for seed in (0, 2**64, -1):
        reports[seed] = evaluate_cam.evaluate(cli.parse_hyperparameters(evaluate_cam, [
            f"--checkpoint={trained_cluttered / 'checkpoints/best.pt'}", f"--output_dir={tmp_path / str(seed)}",
            f"--seed={seed}", "--limit=4", "--batch_size=4", "--examples=2", "--explained=2", "--steps=2",
            "--road_images=1"]))
    def scores(report):  # the costs are timings, which vary
        return {key: {name: value for name, value in entry.items() if name != "cost"}
                for key, entry in report.as_json()["methods"].items()}

    assert scores(reports[2**64]) == scores(reports[0])
    assert reports[-1].methods["random"].faithfulness.images == 2


def test_save_heatmaps_writes_the_standard_cam_of_each_image_and_refuses_another_runs_folder(trained_cluttered,
                                                                                             tmp_path):
    checkpoint = trained_cluttered / "checkpoints/best.pt"
    args = [f"--checkpoint={checkpoint}", f"--output_dir={tmp_path / 'report'}", "--groups=localization",
            "--methods=cam", "--limit=6", "--gallery=0", f"--save_heatmaps={tmp_path / 'maps'}"]
    evaluate_cam.main(args)
    saved = sorted((tmp_path / "maps").rglob("*.npy"))
    assert [str(path.relative_to(tmp_path / "maps")) for path in saved] == [f"test/{i:06d}.npy" for i in range(6)]
    net, _ = models.load_checkpoint(checkpoint)
    loaded = data.load_dataset("fashion-mnist-cluttered", trained_cluttered / "data", False, 40, {"clutter": 3})
    images, labels = next(iter(loaded.loader("test", 6, torch.device("cpu"))))
    expected = map_reading.cam_heat_maps(net, images, map_reading.STANDARD_READING, labels[:, None])[2][:, 0]
    assert np.allclose(np.stack([np.load(path) for path in saved]), expected.numpy(), atol=1e-6)
    evaluate_cam.main(args)  # the same run again: its own folder is taken
    with pytest.raises(cli.UserError, match="holds .npy heat maps of another run"):
        evaluate_cam.main([*args[:-2], "--limit=3", args[-1]])


@pytest.mark.slow
def test_inclusive_boxes_score_the_cluttered_set_as_wsolevaluation_would(trained_cluttered, tmp_path):
    base = [f"--checkpoint={trained_cluttered / 'checkpoints/best.pt'}", "--groups=localization", "--limit=20"]
    exclusive = evaluate_cam.evaluate(cli.parse_hyperparameters(evaluate_cam,
                                                                [*base, f"--output_dir={tmp_path / 'a'}"]))
    inclusive = evaluate_cam.evaluate(cli.parse_hyperparameters(evaluate_cam, [
        *base, f"--output_dir={tmp_path / 'b'}", "--inclusive_boxes"]))
    assert "inclusive" in inclusive.methods["cam"].localization.box_convention
    assert "inclusive" not in exclusive.methods["cam"].localization.box_convention
    assert "inclusive" in (tmp_path / "b" / "localization.md").read_text()
    # the masks do not change with the box convention, nor does pixel precision-recall
    assert inclusive.methods["cam"].localization.pxap == pytest.approx(exclusive.methods["cam"].localization.pxap)


def test_another_dataset_must_have_the_checkpoints_classes_and_boxes(trained_cluttered, tmp_path):
    write_cub(tmp_path / "cub")  # a 2-class CUB; the checkpoint has 10 classes
    with pytest.raises(cli.UserError, match="--dataset=cub in .* has 2 classes and .* was trained on 10"):
        evaluate(trained_cluttered, "--dataset=cub", f"--data_dir={tmp_path / 'cub'}", "--download=false")
    with pytest.raises(cli.UserError, match="--metadata_dir is the metadata folder of cub, ilsvrc and openimages"):
        evaluate(trained_cluttered, f"--metadata_dir={tmp_path}")
    with pytest.raises(cli.UserError, match="--dataset='imagenet' is unknown"):
        evaluate(trained_cluttered, "--dataset=imagenet")


@pytest.mark.slow  # a whole report
def test_constant_maps_are_undefined_in_the_sanity_checks_never_passing(trained_cluttered, tmp_path):
    """A model whose fc weights are zero makes every CAM constant: the rank correlations with them
    are undefined, so the cascade is reported as undefined (not passing), as is CAM's IoU-deletion
    correlation, and the table says why."""
    checkpoint = torch.load(trained_cluttered / "checkpoints/best.pt", weights_only=True)
    checkpoint["state_dict"]["fc.weight"].zero_()
    torch.save(checkpoint, tmp_path / "flat.pt")
    report = evaluate_cam.evaluate(cli.parse_hyperparameters(evaluate_cam, [
        f"--checkpoint={tmp_path / 'flat.pt'}", f"--output_dir={tmp_path / 'out'}", "--limit=8", "--examples=0",
        "--explained=4", "--steps=2", "--road_images=0", "--sanity_seeds=2", "--gallery=0",
        "--methods=cam,grad_cam,edge"]))
    cam = report.methods["cam"].sanity
    assert cam.passes_cascade is None and cam.last_stage.spearman is None
    assert report.methods["edge"].sanity.passes_cascade is False  # the edge map is defined, and never changes
    assert report.faithfulness.cam_iou_vs_deletion_spearman is None
    table = (tmp_path / "out" / "localization.md").read_text()
    assert "Undefined, so not passing: CAM (standard: raw, min-max)" in table and "Spearman correlation of" not in table
    assert json.loads((tmp_path / "out" / "localization.json").read_text())["methods"]["cam"]["sanity"]["cascade"][
        "fc"]["spearman"] is None


def test_fewer_images_than_the_minimum_get_no_interval_and_no_verdict(trained_cluttered, tmp_path):
    """Resampling a handful of images calls a null difference real far more often than 5% of the
    time (one time in six on 5 images): below intervals.MIN_IMAGES the report draws no interval and
    gives no verdict; at the minimum it does."""
    def report(limit: int) -> tuple[results.Report, str]:
        folder = tmp_path / str(limit)
        made = evaluate_cam.evaluate(cli.parse_hyperparameters(evaluate_cam, [
            f"--checkpoint={trained_cluttered / 'checkpoints/best.pt'}", f"--output_dir={folder}", f"--limit={limit}",
            "--groups=localization,faithfulness", "--steps=2", "--road_images=0", "--gallery=0", "--examples=0",
            "--methods=cam,edge"]))
        return made, (folder / "localization.md").read_text()
    few, text = report(intervals.MIN_IMAGES - 1)
    assert few.methods["cam"].localization.intervals == {}
    assert few.methods["edge"].faithfulness.difference_from_cam == {}
    assert few.localization.resamples == few.faithfulness.resamples == 0
    assert "No intervals: fewer than 20 images." in text and "Against CAM" not in text and "Flagged" not in text
    enough, text = report(intervals.MIN_IMAGES)
    assert enough.methods["edge"].faithfulness.difference_from_cam and enough.faithfulness.resamples == 1000
    assert "none on ROAD's 0 images" in text and "Can each faithfulness metric tell" in text
