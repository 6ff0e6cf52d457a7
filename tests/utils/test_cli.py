import importlib
import signal
import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO

from utils import cli

SCRIPT = '''"""A script.

More text."""
# model
name: str = "cnn"  # which network
    # (a continued help line)
# training
epochs: int = 5  # passes over the data
lr: float = 0.1  # peak rate (100% at the peak of the schedule)
resume: bool = False  # go on from the last run
batch_size: int = 128  # images per step
CONSTANT = 3  # not annotated: not a hyperparameter
items: list = []  # not a plain type: not a hyperparameter
'''


@pytest.fixture
def script(tmp_path, monkeypatch):
    path = tmp_path / "fake_script.py"
    path.write_text(SCRIPT)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("fake_script", None)
    import fake_script

    return fake_script


def test_declared_hyperparameters_reads_types_defaults_and_comments(script):
    assert cli.declared_hyperparameters(script) == [
        ("name", str, "cnn", "which network (a continued help line)", "model"),
        ("epochs", int, 5, "passes over the data", "training"),
        ("lr", float, 0.1, "peak rate (100% at the peak of the schedule)", "training"),
        ("resume", bool, False, "go on from the last run", "training"),
        ("batch_size", int, 128, "images per step", "training"),
    ]


def test_defaults_when_nothing_is_given(script):
    assert vars(cli.parse_hyperparameters(script, [])) == {
        "name": "cnn", "epochs": 5, "lr": 0.1, "resume": False, "batch_size": 128,
    }


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--epochs=3"], {"epochs": 3}),
        (["--epochs", "3"], {"epochs": 3}),
        (["--lr=2e-3", "--name=resnet18"], {"lr": 0.002, "name": "resnet18"}),
        (["--batch_size=7"], {"batch_size": 7}),
        (["--batch-size", "7"], {"batch_size": 7}),
        (["--resume"], {"resume": True}),
        (["--resume=true"], {"resume": True}),
        (["--resume=False"], {"resume": False}),
        (["--resume", "no"], {"resume": False}),
        (["--epochs=3", "--epochs=4"], {"epochs": 4}),
    ],
)
def test_overrides_are_typed(script, argv, expected):
    values = vars(cli.parse_hyperparameters(script, argv))
    for key, value in expected.items():
        assert values[key] == value and type(values[key]) is type(value)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epoch=3"], "unknown hyperparameter '--epoch'; did you mean --epochs?"),
        (["--colour=red"], "unknown hyperparameter '--colour'"),
        (["stray"], "unknown hyperparameter 'stray'"),
        (["--epochs=three"], "argument --epochs: invalid int value: 'three'"),
        (["--lr=fast"], "argument --lr: invalid float value: 'fast'"),
        (["--resume=maybe"], "expected true or false, got 'maybe'"),
        (["--epochs"], "argument --epochs: expected one argument"),
        (["--ep=3"], "unknown hyperparameter '--ep'"),  # no prefix matching
    ],
)
def test_bad_overrides_raise_user_error(script, argv, message):
    with pytest.raises(cli.UserError) as error:
        cli.parse_hyperparameters(script, argv)
    assert message in str(error.value)
    assert "--help" in str(error.value)


def test_help_lists_every_hyperparameter_with_default_and_help(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_hyperparameters(script, ["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for fragment in [
        "model: --name STR which network (a continued help line) (default: 'cnn')",
        "training: --epochs INT passes over the data (default: 5)",
        "--lr FLOAT peak rate (100% at the peak of the schedule) (default: 0.1)",
        "--resume [BOOL] go on from the last run (default: False)",
        "--batch_size INT, --batch-size INT images per step (default: 128)", "A script.",
    ]:
        assert fragment in text
    assert "CONSTANT" not in text and "items" not in text


def test_edited_value_at_the_top_becomes_the_default(script):
    script.epochs = 9  # as if the line at the top of the file said 9
    assert cli.parse_hyperparameters(script, []).epochs == 9


def test_run_turns_user_error_into_one_line_and_exit_1(capsys):
    def main():
        raise cli.UserError("checkpoint x.pt not found; train one")

    with pytest.raises(SystemExit) as exit_info:
        cli.run(main)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "error: checkpoint x.pt not found; train one\n"


def test_run_lets_bugs_through():
    def main():
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        cli.run(main)


@pytest.mark.slow
def test_an_uncaught_ctrl_c_ends_in_one_line():
    """As when Ctrl-C lands while a script's libraries load, before cli.run is reached."""
    code = "from utils import cli; cli.quiet_interrupts(); raise KeyboardInterrupt"
    result = subprocess.run([sys.executable, "-c", code],
                            capture_output=True, text=True, cwd=REPO, check=False)
    assert result.stderr == "interrupted\n" and result.returncode in (130, -signal.SIGINT)


SCRIPTS = sorted(path.name for path in REPO.glob("*.py") if '__name__ == "__main__"' in path.read_text())


def test_every_script_is_found():
    assert {"train.py", "visualize_cam.py", "evaluate_cam.py", "benchmark.py", "export_wsol.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_scripts_help_prints_its_options(script, capsys):
    """As a newcomer types it: a `%` in a help comment once crashed argparse's formatting."""
    module = importlib.import_module(script.removesuffix(".py"))
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and out.startswith(f"usage: python {script}")
    assert all(f"--{name}" in out for name, *_ in cli.declared_hyperparameters(module))


@pytest.mark.slow
def test_importing_the_library_leaves_the_interpreter_alone():
    """Only a script's entry point installs process-wide behaviour (sys.excepthook)."""
    modules = sorted([path.stem for path in REPO.glob("*.py")] + [
        f"{path.parent.name}.{path.stem}" for path in REPO.glob("*/*.py") if (path.parent / "__init__.py").exists()
        and path.parent.name != "tests" and path.stem != "__init__"])
    code = f"import sys; import {', '.join(modules)}; assert sys.excepthook is sys.__excepthook__, sys.excepthook"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert result.returncode == 0, result.stderr[-2000:]


def test_enough_memory_names_the_setting_to_change():
    memory_error = pytest.raises(cli.UserError, match=r"^out of memory \(Unable to allocate .*\); lower --batch_size$")
    with memory_error, cli.enough_memory("lower --batch_size"):
        np.zeros((10**7, 10**7))  # 800 TB: refused at once
    with pytest.raises(RuntimeError, match="not about memory"), cli.enough_memory("lower --batch_size"):
        raise RuntimeError("not about memory")


def test_require_raises_the_first_failing_message():
    cli.require([(True, "fine")])
    with pytest.raises(cli.UserError, match="^second$"):
        cli.require([(True, "first"), (False, "second"), (False, "third")])
