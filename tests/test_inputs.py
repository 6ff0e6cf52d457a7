"""Every way a user's input can be wrong, script by script: each ends in one UserError whose message
names the problem and the fix (cli.run turns it into `error: ...` and exit code 1, as the
subprocess tests of each script check). Files are made in tmp_path; `trained` is a grayscale
MNIST-format checkpoint."""

import fcntl
import os
import shutil

import numpy as np
import pytest
import torch
from helpers import write_idx, write_mnist_like
from PIL import Image

import benchmark
import data
import evaluate_cam
import model as models
import train
import visualize_cam
from utils import cli, idx_files

SCRIPTS = {"train": train, "visualize_cam": visualize_cam, "evaluate_cam": evaluate_cam, "benchmark": benchmark}

CASES = [
    # train.py: types, ranges and names of the hyperparameters
    ("train", ["--epochs=three"], "argument --epochs: invalid int value: 'three'"),
    ("train", ["--lr=fast"], "argument --lr: invalid float value: 'fast'"),
    ("train", ["--download=maybe"], "argument --download: expected true or false, got 'maybe'"),
    ("train", ["--lr=-1"], "--lr must be positive, got -1.0"),
    ("train", ["--lr=0"], "--lr must be positive, got 0.0"),
    ("train", ["--epochs=0"], "--epochs must be at least 1, got 0"),
    ("train", ["--evaluate_every=-1"], "--evaluate_every must be >= 0, got -1"),
    ("train", ["--batch_size=0"], "--batch_size must be at least 1"),
    ("train", ["--width=0"], "--width must be at least 1"),
    ("train", ["--pools=3"], "--pools must be 0, 1 or 2, got 3"),
    ("train", ["--momentum=1"], "--momentum must be in [0, 1), got 1.0"),
    ("train", ["--weight_decay=-1"], "--weight_decay must be >= 0"),
    ("train", ["--label_smoothing=1"], "--label_smoothing must be in [0, 1)"),
    ("train", ["--image_size=-1"], "--image_size must be >= 0"),
    ("train", ["--progressive_start=1.5"], "--progressive_start must be auto or in (0, 1], got 1.5"),
    ("train", ["--progressive_start=half"], "--progressive_start must be auto or in (0, 1], got half"),
    ("train", ["--align_start=2"], "--align_start must be in [0, 1], got 2.0"),
    ("train", ["--progressive_until=0"], "--progressive_until must be in (0, 1], got 0.0"),
    ("train", ["--progressive_start=0.1"],
     "images of 3 px, which give cnn maps of 0x0, and batch norm needs at least 2x2: "
     "use --progressive_start=0.29 or more"),
    ("train", ["--clutter_size=40"], "--clutter_size must be in [1, 28], got 40"),
    ("train", ["--subset=-1"], "--subset must be >= 0"),
    ("train", ["--dataset=folder", "--data_dir=ONECLASS"],
     "ONECLASS/train holds 1 class folder (a), and a classifier needs at least 2"),
    ("train", ["--wsol_backbone", "--model=resnet18_small"],
     "--wsol_backbone builds wsolevaluation's CAM backbone of a torchvision resnet, inception_v3 or vgg16, not of "
     "this repo's --model=resnet18_small"),
    ("train", ["--wsol_backbone"], "not of this repo's --model=cnn: pass one of those"),
    ("train", ["--large_feature_map"], "--large_feature_map builds wsolevaluation's CAM backbone"),
    ("train", ["--metadata_dir=data"], "--metadata_dir is the metadata folder of cub, ilsvrc and openimages, not of "
     "fashion-mnist"),
    ("train", ["--num_workers=-1"], "--num_workers must be >= 0"),
    ("train", ["--dilation=0"], "--dilation must be at least 1, got 0"),
    ("train", ["--hide_patch=-2"], "--hide_patch must be >= 0, got -2"),
    ("train", ["--hide_probability=1"], "--hide_probability must be in [0, 1), got 1.0"),
    ("train", ["--cutmix=1.5"], "--cutmix must be in [0, 1], got 1.5"),
    ("train", ["--align_weight=-1"], "--align_weight must be >= 0, got -1.0"),
    ("train", ["--norm_weight=-0.5"], "--norm_weight must be >= 0, got -0.5"),
    ("train", ["--image_size=3"],
     "--image_size=3 gives cnn maps of 0x0, and CAM needs at least 2x2: use --image_size=8"),
    ("train", ["--image_size=4"],
     "--image_size=4 gives cnn maps of 1x1, and CAM needs at least 2x2: use --image_size=8"),
    ("train", ["--image_size=1", "--pools=0"],
     "gives cnn maps of 1x1, and CAM needs at least 2x2: use --image_size=2 or more"),
    ("train", ["--image_size=8", "--model=resnet18_small"],
     "gives resnet18_small maps of 1x1, and CAM needs at least 2x2: use --image_size=9 or more"),
    ("train", ["--dataset=fashion-mnist-cluttered", "--image_size=20"],
     "--image_size must be at least 28 for fashion-mnist-cluttered"),
    ("train", ["--dataset=fashion-mnist-cluttered", "--image_size=100000"], "GiB of memory, and"),
    ("train", ["--resume", "--overwrite"],
     "--resume continues the run in --checkpoint_dir and --overwrite replaces it: choose one"),
    ("train", ["--model=alexnet"], "CAM does not apply to alexnet: its head flattens the feature maps"),
    ("train", ["--model=resnet"],
     "unknown model 'resnet'; choose one of: cnn, resnet18_small, vgg16_gap, or a torchvision"),
    ("train", ["--model=resnet18", "--weights=V9"], "--weights='V9' is not a weights name of resnet18"),
    ("train", ["--model=cnn", "--weights=DEFAULT"],
     "--weights loads torchvision's pretrained weights, and cnn is this repo's own model"),
    ("train", ["--backbone_lr=-1"], "--backbone_lr must be >= 0"),
    ("train", ["--backbone_lr=0.5"],
     "--backbone_lr sets the learning rate of pretrained features, and this run has no --weights"),
    ("train", ["--dataset=imagenet"], "--dataset='imagenet' is unknown; choose one of: fashion-mnist"),
    ("train", ["--schedule=linear"], "--schedule='linear' is unknown; choose one of: onecycle, cosine, step, constant"),
    ("train", ["--decay_every=3"],
     "--decay_every sets the epochs between the decays of --schedule=step, and this run has --schedule=onecycle"),
    ("train", ["--schedule=step", "--decay_every=0"], "--decay_every must be at least 1"),
    ("train", ["--precision=fp16"], "--precision='fp16' is unknown; choose one of: auto, bf16, fp32"),
    ("train", ["--device=tpu"], "unknown device 'tpu'; use auto, cpu, cuda, cuda:N or mps"),
    ("train", ["--epoch=3"], "unknown hyperparameter '--epoch'; did you mean --epochs?"),
    ("train", ["--no_such_thing=1"], "unknown hyperparameter '--no_such_thing'"),
    # train.py: data that is missing or malformed
    ("train", ["--dataset=cifar10", "--download=false"], "dataset 'cifar10' not found in"),
    ("train", ["--dataset=folder", "--data_dir=NOFOLDER"], "the folder dataset needs"),
    ("train", ["--dataset=folder", "--data_dir=EMPTY"], "holds no images in class subfolders"),
    ("train", ["--dataset=folder", "--data_dir=MISMATCH"], "must hold the same class folders"),
    ("train", ["--dataset=folder", "--data_dir=CORRUPT", "--image_size=16"], "broken.png is not a readable image"),
    ("train", ["--dataset=folder", "--data_dir=TRUNCATEDIMG", "--image_size=16"], "cut.png is not a readable image"),
    ("train", ["--data_dir=TRUNCATEDGZ"],
     "TRUNCATEDGZ/fashion-mnist/train-images-idx3-ubyte.gz is damaged (Compressed file ended"),
    ("train", ["--data_dir=CORRUPTGZ"], "CORRUPTGZ/fashion-mnist/train-images-idx3-ubyte.gz is damaged ("),
    ("train", ["--data_dir=SHORTLABELS"],
     "train-labels-idx1-ubyte.gz is damaged (it holds 15 labels for the 20 images"),
    ("train", ["--data_dir=BADLABELS"], "is damaged (it holds a label of 12, where labels go from 0 to 9)"),
    # train.py: checkpoints and folders
    ("train", ["--resume", "--checkpoint_dir=NOWHERE"], "--resume: NOWHERE/last.pt not found"),
    ("train", ["--resume", "--checkpoint_dir=CUTCHECKPOINT"], "last.pt is not a readable checkpoint"),
    ("train", ["--resume", "--checkpoint_dir=BESTONLY"], "holds no training state (optimizer, scheduler)"),
    ("train", ["--output_dir=BLOCKER/outputs"], "cannot write to folder BLOCKER/outputs"),
    ("train", ["--checkpoint_dir=BLOCKER/checkpoints"], "cannot write to folder BLOCKER/checkpoints"),
    ("train", ["--checkpoint_dir=FINISHED"], ("FINISHED holds last.pt and best.pt of an earlier run; continue that run "
                                              "with --resume, or start a new one with --checkpoint_dir=ANOTHER_FOLDER, "
                                              "or replace it with --overwrite")),
    ("train", ["--checkpoint_dir=FINISHED", "--resume", "--lr=0.3"], ("--resume goes on with the saved run's settings, "
     "and --epochs=1 (saved: 5), --lr=0.3 (saved: 0.05) differ; drop them, or start a new run with --overwrite")),
    ("train", ["--output_dir=USEDOUTPUT"],
     "USEDOUTPUT holds metrics.csv of an earlier run; choose another --output_dir, or replace them with --overwrite"),
    ("train", ["--checkpoint_dir=LOCKED"], "LOCKED is in use by another training run (process 4242 on"),
    ("train", ["--checkpoint_dir=LOCKED", "--resume"], "LOCKED is in use by another training run"),
    # visualize_cam.py
    ("visualize_cam", ["--checkpoint=NOWHERE/best.pt"], "checkpoint NOWHERE/best.pt not found"),
    ("visualize_cam", ["--checkpoint=CUTCHECKPOINT/last.pt"], "is not a readable checkpoint"),
    ("visualize_cam", ["--checkpoint=TEXT"], "is not a readable checkpoint"),
    ("visualize_cam", ["--checkpoint=WEIGHTSONLY"], "lacks its dataset and hyperparameters description"),
    ("visualize_cam", ["--image=missing.png"], "image missing.png not found"),
    ("visualize_cam", ["--image=TEXT"], "is not a readable image"),
    ("visualize_cam", ["--image=TRUNCATEDIMG/train/a/cut.png"], "cut.png is not a readable image"),
    ("visualize_cam", ["--image=TRUNCATEDIMG"], "--image=TRUNCATEDIMG is a folder; pass one image file"),
    ("visualize_cam", ["--image=BOMB.png"],
     "BOMB.png is too large to read safely (10,000 pixels, more than Pillow's limit of 4,096 against"),
    ("visualize_cam", ["--checkpoint=NANWEIGHTS"],
     "holds NaN or infinite weights (features.1.running_mean): its training"),
    ("visualize_cam", ["--data_dir=TRUNCATEDGZ"],
     "TRUNCATEDGZ/mnist/train-images-idx3-ubyte.gz is damaged (Compressed"),
    ("visualize_cam", ["--data_dir=SHORTLABELS"],
     "mnist/train-labels-idx1-ubyte.gz is damaged (it holds 15 labels for the 20"),
    ("visualize_cam", ["--index=100000"], "--index=100000 is out of range"),
    ("visualize_cam", ["--samples=0"], "--samples must be in [1, 256]"),
    ("visualize_cam", ["--samples=100000", "--display_size=64"], "--samples must be in [1, 256]"),
    ("visualize_cam", ["--samples=256", "--display_size=4096"], "the figure would hold 12,885 megapixels (4096 px"),
    ("visualize_cam", ["--checkpoint=HUGESIZE"], "HUGESIZE states an image size of 100000, not one in [1, 8192]"),
    ("visualize_cam", ["--topk=11"], "--topk=11 is more than the 10 classes"),
    ("visualize_cam", ["--alpha=1.5"], "--alpha must be in [0, 1]"),
    ("visualize_cam", ["--box_threshold=1"], "--box_threshold must be in [0, 1)"),
    ("visualize_cam", ["--display_size=-1"], "--display_size must be in [0, 8192], got -1"),
    ("visualize_cam", ["--display_size=40000"], "--display_size must be in [0, 8192], got 40000"),
    ("visualize_cam", ["--colormap=rainbowz"], "unknown colormap 'rainbowz'"),
    ("visualize_cam", ["--normalization=softmax"],
     "--normalization='softmax' is unknown; choose one of: minmax, max, ivr"),
    ("visualize_cam", ["--percentile=1"], "--percentile must be in [0, 1), got 1.0"),
    ("visualize_cam", ["--device=cuda:x"], "unknown device 'cuda:x'"),
    ("visualize_cam", ["--output_dir=BLOCKER/out"], "cannot write to folder BLOCKER/out"),
    ("visualize_cam", ["--sample=3"], "did you mean --samples?"),
    # evaluate_cam.py
    ("evaluate_cam", [], "whose test set has no ground-truth boxes"),
    ("evaluate_cam", ["--checkpoint=NOWHERE/best.pt"], "checkpoint NOWHERE/best.pt not found"),
    ("evaluate_cam", ["--checkpoint=WEIGHTSONLY"], "lacks its dataset and hyperparameters description"),
    ("evaluate_cam", ["--batch_size=0"], "--batch_size must be at least 1"),
    ("evaluate_cam", ["--limit=-1"], "--limit must be >= 0"),
    ("evaluate_cam", ["--cam_threshold=1"], "--cam_threshold must be in [0, 1)"),
    ("evaluate_cam", ["--threshold_step=0"], "--threshold_step must be in [0.001, 0.5]"),
    ("evaluate_cam", ["--threshold_step=1e-7"], "--threshold_step must be in [0.001, 0.5] (a finer sweep"),
    ("evaluate_cam", ["--gallery=-1"], "--gallery must be >= 0 (0: no gallery), got -1"),
    ("evaluate_cam", ["--examples=-1"], "--examples must be >= 0"),
    ("evaluate_cam", ["--split=train"], "--split='train' is unknown; choose one of: test, validation"),
    ("evaluate_cam", ["--normalization=softmax"], "--normalization='softmax' is unknown"),
    ("evaluate_cam", ["--groups=localization,speed"],
     "--groups='speed' is unknown; choose one of: localization, faithfulness"),
    ("evaluate_cam", ["--explained=-1"], "--explained must be >= 0"),
    ("evaluate_cam", ["--road_images=-1"], "--road_images must be >= 0"),
    ("evaluate_cam", ["--tolerance=-1"], "--tolerance must be >= 0"),
    ("evaluate_cam", ["--random_labels_checkpoint=NOWHERE/last.pt"], "checkpoint NOWHERE/last.pt not found"),
    # benchmark.py
    ("benchmark", ["--model_names=cnn,alexnet"], "unknown model 'alexnet' in --model_names"),
    ("benchmark", ["--dataset_names=imagenet"], "unknown dataset 'imagenet'"),
    ("benchmark", ["--dataset_names=fashion-mnist,imagenet"], "unknown dataset 'imagenet' in --dataset_names"),
    ("benchmark", ["--repeats=0"], "--map_batch_size, --peer_images and --peer_repeats >= 1"),
    ("benchmark", ["--peer_images=0"], "--map_batch_size, --peer_images and --peer_repeats >= 1"),
    ("benchmark", ["--train_warmup=-1"], "--warmup and --train_warmup must be >= 0"),
    ("benchmark", ["--precision=fp8"], "--precision='fp8' is unknown"),
    ("benchmark", ["--output_dir=BLOCKER/out"], "cannot write to folder BLOCKER/out"),
]


def write_damaged_datasets(root):
    """Folders under root, each holding a small Fashion-MNIST and MNIST (as fashion-mnist/ and mnist/)
    damaged in one way: a .gz file cut short, corrupted compressed data, a labels file shorter than
    its images file, a label out of range."""
    for name in ("TRUNCATEDGZ", "CORRUPTGZ", "SHORTLABELS", "BADLABELS"):
        for dataset in ("fashion-mnist", "mnist"):
            folder = root / name / dataset
            arrays = write_mnist_like(folder, train_size=20, test_size=20)
            for prefix in ("train", "t10k"):
                images, labels = folder / f"{prefix}-images-idx3-ubyte.gz", folder / f"{prefix}-labels-idx1-ubyte.gz"
                if name == "TRUNCATEDGZ":
                    images.write_bytes(images.read_bytes()[:-100])
                elif name == "CORRUPTGZ":
                    content = bytearray(images.read_bytes())
                    content[len(content) // 2 : len(content) // 2 + 64] = bytes(64)
                    images.write_bytes(bytes(content))
                elif name == "SHORTLABELS":
                    write_idx(labels, arrays[prefix][1][:15])
                else:
                    write_idx(labels, np.where(np.arange(20) == 3, 12, arrays[prefix][1]))


@pytest.fixture(scope="session")
def wrong_inputs(tmp_path_factory, trained):
    """A folder holding one of each wrong input the CASES name, made once: every case only reads it
    (a case that wrote a file would fail its own check that nothing was written)."""
    tmp_path = tmp_path_factory.mktemp("wrong_inputs")
    write_damaged_datasets(tmp_path)
    (tmp_path / "TRUNCATEDIMG").mkdir()
    Image.fromarray(np.zeros((100, 100), dtype=np.uint8)).save(tmp_path / "BOMB.png")
    write_mnist_like(tmp_path / "data" / "fashion-mnist", train_size=20, test_size=10)
    (tmp_path / "BLOCKER").write_text("a file where a folder is needed")
    (tmp_path / "USEDOUTPUT").mkdir()
    (tmp_path / "USEDOUTPUT" / "metrics.csv").write_text("epoch\n1\n")
    (tmp_path / "TEXT").write_text("neither an image nor a checkpoint")
    (tmp_path / "EMPTY" / "train" / "a").mkdir(parents=True)
    (tmp_path / "EMPTY" / "test" / "a").mkdir(parents=True)
    pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    for name, classes in (("MISMATCH", {"train": "ab", "test": "ac"}), ("CORRUPT", {"train": "ab", "test": "ab"}),
                          ("TRUNCATEDIMG", {"train": "ab", "test": "ab"})):
        for split, letters in classes.items():
            for letter in letters:
                (tmp_path / name / split / letter).mkdir(parents=True)
                Image.fromarray(pixels).save(tmp_path / name / split / letter / "fine.png")
    (tmp_path / "CORRUPT" / "train" / "a" / "broken.png").write_text("not a png")
    for split in ("train", "test"):  # one class, and a hidden folder a file manager does not show
        for folder in ("a", ".ipynb_checkpoints"):
            (tmp_path / "ONECLASS" / split / folder).mkdir(parents=True)
            Image.fromarray(pixels).save(tmp_path / "ONECLASS" / split / folder / "fine.png")
    Image.fromarray(np.full((64, 64, 3), 7, dtype=np.uint8)).save(tmp_path / "whole.png")
    (tmp_path / "TRUNCATEDIMG" / "train" / "a" / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:60])
    good = trained / "checkpoints"
    (tmp_path / "CUTCHECKPOINT").mkdir()
    (tmp_path / "CUTCHECKPOINT" / "last.pt").write_bytes((good / "last.pt").read_bytes()[:3000])
    (tmp_path / "BESTONLY").mkdir()
    (tmp_path / "BESTONLY" / "last.pt").write_bytes((good / "best.pt").read_bytes())
    models.save_checkpoint(tmp_path / "WEIGHTSONLY", models.build_model("cnn", 10, 1))
    checkpoint = torch.load(good / "best.pt", weights_only=True)
    checkpoint["state_dict"]["features.1.running_mean"][0] = float("nan")
    torch.save(checkpoint, tmp_path / "NANWEIGHTS")
    checkpoint = torch.load(good / "best.pt", weights_only=True)
    checkpoint["dataset"]["image_size"] = 100000
    torch.save(checkpoint, tmp_path / "HUGESIZE")
    (tmp_path / "FINISHED").mkdir()
    for name in ("last.pt", "best.pt"):
        (tmp_path / "FINISHED" / name).write_bytes((good / name).read_bytes())
    (tmp_path / "LOCKED").mkdir()
    (tmp_path / "LOCKED" / "last.pt").write_bytes((good / "last.pt").read_bytes())
    descriptor = os.open(tmp_path / "LOCKED" / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(descriptor, fcntl.LOCK_EX)  # as a running train.py holds it
    os.write(descriptor, b"process 4242 on a-host, since 2026-11-27 10:00:00")
    yield tmp_path
    os.close(descriptor)


@pytest.fixture
def workspace(wrong_inputs, monkeypatch):
    """wrong_inputs as the working folder, with no good system copy of a dataset to stand in for a
    damaged one and a small limit of Pillow's that makes BOMB.png a decompression bomb."""
    monkeypatch.chdir(wrong_inputs)
    for name in ("fashion-mnist", "mnist"):
        monkeypatch.setitem(idx_files.SYSTEM_DIRS, name, (wrong_inputs / "nowhere", ""))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4096)  # 100x100 is then over the limit: a "bomb"
    return wrong_inputs


def default_arguments(script: str, trained) -> list[str]:
    """What makes each script otherwise runnable here: the small data, the trained checkpoint."""
    if script == "train":
        return ["--data_dir=data", "--download=false", "--epochs=1", "--precision=fp32"]
    if script == "benchmark":
        return ["--data_dir=data", "--download=false", "--dataset_names=fashion-mnist", "--model_names=cnn"]
    return [f"--checkpoint={trained / 'checkpoints' / 'best.pt'}", f"--data_dir={trained / 'data'}", "--download=false"]


@pytest.mark.parametrize("script, arguments, message", CASES,
                         ids=[f"{s}:{' '.join(a) or 'defaults'}" for s, a, _ in CASES])
def test_wrong_input_ends_in_one_clear_message(workspace, trained, script, arguments, message):
    argv = default_arguments(script, trained) + arguments  # later values win
    with pytest.raises(cli.UserError) as raised:
        SCRIPTS[script].main(argv)
    text = str(raised.value)
    assert message in text and "\n" not in text and "Traceback" not in text
    written = [path for folder in ("outputs", "checkpoints") for path in (workspace / folder).rglob("*")
               if path.is_file()]
    assert written == []  # nothing written (a folder may have been made, empty)
    for name in ("last.pt", "best.pt"):  # another run's checkpoints are never touched
        assert (workspace / "FINISHED" / name).read_bytes() == (trained / "checkpoints" / name).read_bytes()


def test_a_color_image_is_converted_for_a_grayscale_checkpoint(workspace, trained):
    visualize_cam.main(default_arguments("visualize_cam", trained) + ["--image=whole.png", "--output_dir=drawn"])
    written = sorted(path.name for path in (workspace / "drawn").iterdir())
    shutil.rmtree(workspace / "drawn")  # the workspace is shared by the session's cases
    assert written == ["cam_whole_heatmap.png", "cam_whole_input.png", "cam_whole_overlay.png", "cams_whole.png"]
    tensor, _ = data.load_image(workspace / "whole.png", data.DatasetInfo(
        "mnist", tuple("0123456789"), 1, 28, (0.5,), (0.5,)))
    assert tensor.shape == (1, 28, 28) and torch.allclose(tensor, torch.full_like(tensor, (7 / 255 - 0.5) / 0.5))
