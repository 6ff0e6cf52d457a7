"""Command-line parsing and error exits: typed hyperparameter overrides, one-line errors, a quiet Ctrl-C.

A script declares its hyperparameters as annotated module-level values under short banners, each
with its help as a trailing comment (continued on indented comment lines), nanoGPT style:

    # training
    epochs: int = 5  # passes over the training set

`parse_hyperparameters(module, argv)` turns those lines into an argparse parser, so that
`--epochs=3` and `--epochs 3` override the value, `--help` lists every value with its type,
default and help, and an unknown name or a value of the wrong type is a clear error.
Types are int, float, bool and str.

A script calls `quiet_interrupts()` first, when run as a script: a Ctrl-C that no code catches (one
while the libraries load, say) then ends in one line instead of a traceback. Importing this module
changes nothing in the interpreter.
"""

import argparse
import ast
import contextlib
import difflib
import inspect
import io
import sys
import tokenize
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import NamedTuple

HYPERPARAMETER_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


class UserError(Exception):
    """A problem the user can fix (a bad value, a missing file); its message names the fix."""


class DatasetError(UserError):
    """A dataset that is unknown, missing offline, or malformed."""


class Reported(UserError):
    """A UserError that this process has already printed (see distributed.Processes.agree): run()
    exits with 1 without printing it again."""


class Stopped(Exception):
    """A run stopped on request (Ctrl-C, SIGTERM) after saving; its message says what was saved."""


def quiet_keyboard_interrupt(kind, value, trace) -> None:
    """sys.excepthook: an uncaught KeyboardInterrupt prints one line; anything else as before."""
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
    else:
        sys.__excepthook__(kind, value, trace)


def quiet_interrupts() -> None:
    """Make an uncaught Ctrl-C end the process with one line: for a script's entry point only, since
    it changes the whole interpreter (sys.excepthook)."""
    sys.excepthook = quiet_keyboard_interrupt


def parse_bool(text: str) -> bool:
    """'true'/'yes'/'1'/'on' -> True, 'false'/'no'/'0'/'off' -> False (any case)."""
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class Hyperparameter(NamedTuple):
    """One `name: type = value  # help` line of a script, with the banner it sits under."""

    name: str
    kind: type
    default: object
    help: str
    section: str  # the nearest comment line above it that starts at column 0 ("" when none)


def declared_hyperparameters(module: ModuleType) -> list[Hyperparameter]:
    """Each `name: type = value  # help` line of the module, in order. Indented comment lines right
    below it continue its help; a comment line that starts at column 0 is a banner (`# data`) over
    the hyperparameters below it."""
    source = inspect.getsource(module)
    comments = {
        token.start[0]: (token.start[1], token.string.lstrip("#").strip(), token.line.strip().startswith("#"))
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    declared = []
    for node in ast.parse(source).body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(node.annotation, ast.Name)
            and node.annotation.id in HYPERPARAMETER_TYPES
        ):
            parts = [comments[node.lineno][1]] if node.lineno in comments else []
            line = node.end_lineno + 1
            while line in comments and comments[line][2] and comments[line][0] > 0:  # an indented comment line
                parts.append(comments[line][1])
                line += 1
            banners = [line for line, (column, _, alone) in comments.items()
                       if alone and column == 0 and line < node.lineno]
            section = comments[max(banners)][1] if banners else ""
            name = node.target.id
            declared.append(Hyperparameter(name, HYPERPARAMETER_TYPES[node.annotation.id], getattr(module, name),
                                           " ".join(parts), section))
    return declared


def parse_hyperparameters(module: ModuleType, argv: list[str] | None = None) -> SimpleNamespace:
    """Parse `--name=value` overrides of the module's hyperparameters.

    Returns a namespace holding every hyperparameter, typed. `--help` prints them and exits 0;
    an unknown name (with the closest known one) or a badly typed value raises UserError.
    A bool may be given bare (`--resume`) or with a value (`--resume=false`).
    Both `--batch_size` and `--batch-size` are accepted.
    """
    script = Path(getattr(module, "__file__", None) or module.__name__).name
    parser = StrictParser(
        prog=f"python {script}",
        description=(module.__doc__ or "").strip().split("\n\n")[0] or None,
        epilog="Defaults are the values at the top of the script: edit them there or override them here.",
        allow_abbrev=False,
    )
    sections = {}  # banner -> its argparse group: --help lists the hyperparameters under their banners
    for name, kind, default, help_text, section in declared_hyperparameters(module):
        flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        if section not in sections:
            sections[section] = parser.add_argument_group(section) if section else parser
        sections[section].add_argument(
            *flags,
            dest=name,
            type=parse_bool if kind is bool else kind,
            default=default,
            nargs="?" if kind is bool else None,
            const=True if kind is bool else None,
            metavar=kind.__name__.upper(),
            help=f"{help_text} (default: {default!r})".replace("%", "%%"),  # argparse formats help with %
        )
    values, unknown = parser.parse_known_args(argv)
    if unknown:
        name = unknown[0].split("=")[0]
        known = [flag for action in parser._actions for flag in action.option_strings]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise UserError(f"unknown hyperparameter {name!r}{hint} (`python {script} --help` lists them all)")
    return SimpleNamespace(**vars(values))


def given_names(argv: list[str] | None = None) -> set[str]:
    """The names of the hyperparameters that argv (default: sys.argv[1:]) sets: {"batch_size"} for
    ["--batch_size=3"], ["--batch-size", "3"] or ["--batch_size", "3"]."""
    arguments = sys.argv[1:] if argv is None else argv
    return {argument[2:].split("=", 1)[0].replace("-", "_") for argument in arguments if argument.startswith("--")}


class StrictParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors (a badly typed value, a missing value) raise UserError."""

    def error(self, message: str):
        raise UserError(f"{message} (`{self.prog} --help` lists every hyperparameter and its type)")


OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "cannot allocate memory", "insufficient memory",
                 "failed to allocate")  # how torch's, OpenCV's and CUDA's allocators say it


def is_out_of_memory(error: BaseException) -> bool:
    """Whether error says that memory ran out: MemoryError (numpy's too), torch's OutOfMemoryError,
    or an allocator's RuntimeError or cv2.error."""
    text = str(error).lower()
    return isinstance(error, MemoryError) or any(phrase in text for phrase in OUT_OF_MEMORY)


@contextlib.contextmanager
def enough_memory(fix: str):
    """Within: running out of memory raises UserError("out of memory ...; <fix>") instead, where fix
    names the setting to change (for example "lower --batch_size")."""
    try:
        yield
    except UserError:
        raise
    except Exception as error:  # allocators raise many types; the others are re-raised
        if not is_out_of_memory(error):
            raise
        detail = " ".join(str(error).split())[:160] or type(error).__name__
        raise UserError(f"out of memory ({detail}); {fix}") from None


def run(main) -> None:
    """Call main(); a UserError or Ctrl-C ends the program with one line on stderr and a non-zero exit."""
    try:
        main()
    except Reported:
        sys.exit(1)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except Stopped as stopped:
        if str(stopped):
            print(stopped, file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def require(checks: list[tuple[bool, str]]) -> None:
    """UserError with the message of the first (ok, message) whose ok is false."""
    for ok, message in checks:
        if not ok:
            raise UserError(message)


def check_choice(option: str, value: str, choices) -> None:
    """UserError listing the choices when value is not one of them."""
    if value not in choices:
        raise UserError(f"--{option}={value!r} is unknown; choose one of: {', '.join(choices)}")
