"""`trainer` command line: fit | fingerprint | verify | status, plus the subcommands other
packages register (``EXTENSION_GROUP``): preflight_examples.serving adds export | evaluate |
predict | bench-infer | serve | promote | rollback. trainer imports none of them.

Exit codes (docs/contract.md): 0 done; 1 failed (or not complete yet); 2 bad input, nothing
written; 3 RUN_DIR locked by a live run; 4 refused: data or checkpoint failed its checksum
and cannot be repaired; 75 stopped on SIGTERM after a clean checkpoint.
"""

from __future__ import annotations

import sys

from preflight_examples.trainer import early_signals

# First, before any heavy import (numpy via durable, torch later): a preemption while the
# interpreter loads must end with exit 75, not -15, and a torchrun rank must die with its
# launcher from its first instruction on.
if sys.argv[1:2] == ["fit"]:
    early_signals.install()
    if early_signals.under_launcher():
        early_signals.die_with_launcher()

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import fields  # noqa: E402
from typing import Any  # noqa: E402

from preflight.durable import (
    BadInputError,
    ConfigDriftError,
    LockedError,
    VerifyError,
    read_progress,
)
from preflight_examples.telemetry.clihelp import finish_help, print_usage  # noqa: E402

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_LOCKED = 3
EXIT_REFUSED = 4
EXIT_STOPPED = 75
EXIT_CODES = """\
exit codes:
  0   done
  1   failed (verify, fingerprint: not complete yet; evaluate: below the regression gate)
  2   bad input: a clear message, nothing written
  3   RUN_DIR (or the deploy dir) is locked by a live run
  4   refused: data, checkpoint or bundle failed its checksum and cannot be repaired
  75  stopped on SIGTERM after a clean checkpoint; rerun the same command to resume"""
# Shown raw (the exit codes' line breaks are kept), so broken by hand.
DESCRIPTION = (
    "Train a video classifier on a datagen dataset with bit-exact resume,\n"
    "then export, evaluate, serve and deploy it."
)
# Subcommands other packages add to `trainer`: each entry point of this group names a module
# with ``add_commands(subparsers)`` and ``dispatch(args) -> int | None`` (None: not its
# command). examples/pyproject.toml registers preflight_examples.serving.cli; found through
# the installed metadata, so trainer never imports serving (serving imports trainer).
EXTENSION_GROUP = "preflight_examples.trainer.commands"


def _add_fit(subparsers: Any) -> None:
    from preflight_examples.telemetry import add_cli_options
    from preflight_examples.trainer.config import FitConfig

    defaults = {f.name: f.default for f in fields(FitConfig)}
    fit = subparsers.add_parser("fit", help="train (or resume) a video classifier")
    fit.add_argument("--data", required=True, help="dataset directory written by datagen")
    fit.add_argument("--out", required=True, help="run directory (resumed when it exists)")
    fit.add_argument("--steps", type=int, required=True, help="optimizer steps in total")
    options: list[tuple[str, type, str]] = [
        ("--batch-size", int, "samples per micro-batch"),
        ("--lr", float, "peak learning rate (AdamW)"),
        ("--weight-decay", float, "AdamW weight decay"),
        ("--warmup-steps", int, "linear warm-up steps (-1: 5%% of --steps)"),
        ("--min-lr", float, "learning rate at the end of the cosine decay"),
        ("--accum", int, "micro-batches accumulated per optimizer step"),
        ("--clip", float, "gradient-norm clipping threshold (0: off)"),
        ("--seed", int, "seed for initialisation, sample order and dropout"),
        ("--channels", int, "width of the first conv block (doubles per block)"),
        ("--depth", int, "number of conv blocks"),
        ("--dropout", float, "dropout before the classifier head"),
        ("--max-skips", int, "with --skip-nonfinite: fail after this many skipped steps"),
        ("--ckpt-every", int, "checkpoint every K steps (0: only the final state)"),
        ("--keep", int, "committed checkpoints to keep"),
        ("--threads", int, "torch CPU threads (fixed, for exact resume)"),
        ("--log-every", int, "write a metrics line every N steps"),
        ("--progress-every-ms", int, "rewrite PROGRESS.json at most this often"),
    ]
    for flag, kind, text in options:
        dest = flag[2:].replace("-", "_")
        fit.add_argument(
            flag, type=kind, default=defaults[dest], help=f"{text} (default {defaults[dest]})"
        )
    fit.add_argument("--device", choices=("auto", "cpu", "cuda"), default=defaults["device"])
    fit.add_argument(
        "--verify-data",
        choices=("changed", "always"),
        default=defaults["verify_data"],
        help="re-hash the dataset on every start (always) or only when a file changed since "
        "this run hashed it (changed, default; sizes and the manifest are always checked)",
    )
    fit.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CPU and CUDA)")
    fit.add_argument(
        "--skip-nonfinite",
        action="store_true",
        help="skip and count steps with a non-finite loss/gradient instead of failing",
    )
    fit.add_argument(
        "--new",
        action="store_true",
        help="discard an existing run in --out with different hyper-parameters",
    )
    fit.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="data-parallel processes on this machine: runs torchrun --standalone with "
        "DistributedDataParallel (gloo on CPU, nccl on CUDA) (default 1: one process)",
    )
    fit.add_argument(
        "--max-restarts",
        type=int,
        default=0,
        help="with --nproc: torchrun restarts the group this many times after a rank fails; "
        "it resumes from the last checkpoint (default 0)",
    )
    add_cli_options(fit)


@functools.cache
def extensions() -> tuple[Any, ...]:
    """The modules registered under EXTENSION_GROUP, by entry point name (one per module)."""
    from importlib.metadata import entry_points

    found = {ep.value: ep for ep in entry_points(group=EXTENSION_GROUP)}
    return tuple(ep.load() for ep in sorted(found.values(), key=lambda ep: ep.name))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainer", description=DESCRIPTION)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_fit(subparsers)
    for extension in extensions():
        extension.add_commands(subparsers)
    for name, text in (
        ("fingerprint", "print one line: sha256 over the final model + optimizer state"),
        ("verify", "exit 0 when the run's final state is committed and valid"),
        ("status", "print the run's PROGRESS.json"),
    ):
        sub = subparsers.add_parser(name, help=text)
        sub.add_argument("run_dir", metavar="RUN_DIR")
    finish_help(parser, EXIT_CODES)
    return parser


def _cmd_fit(args: argparse.Namespace) -> int:
    from preflight_examples.trainer.config import FitConfig, validate
    from preflight_examples.trainer.fit import run_fit

    values = {f.name: getattr(args, f.name) for f in fields(FitConfig)}
    cfg = validate(FitConfig(**values))
    if args.nproc != 1 or os.environ.get("WORLD_SIZE", "") not in ("", "1"):
        return _cmd_fit_distributed(args, cfg)
    tel = _telemetry(args)
    try:
        run_fit(cfg, lambda summary: print(json.dumps(summary), flush=True), tel)
    except Exception as exc:
        if classify(exc)[0] != EXIT_STOPPED:  # a clean stop is not an error
            tel.error(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        tel.close()
    return EXIT_OK


def _telemetry(args: argparse.Namespace) -> Any:
    """A --log-json (or similar) path that cannot be opened (a directory, /proc/x) is bad
    input (exit 2) naming it, not a failed run."""
    from preflight_examples.telemetry import Telemetry

    try:
        return Telemetry.from_args(args, job="trainer")
    except OSError as exc:
        where = exc.filename or "telemetry output"
        raise BadInputError(f"cannot open {where}: {exc.strerror or exc}") from None


def _launch_passthrough(args: argparse.Namespace) -> list[str]:
    """The fit options that are not FitConfig fields (telemetry), as given, for the argv
    torchrun starts each rank with."""
    from preflight_examples.trainer.config import FitConfig

    sub = argparse.ArgumentParser().add_subparsers()
    _add_fit(sub)
    skip = {f.name for f in fields(FitConfig)} | {"help", "nproc", "max_restarts"}
    argv: list[str] = []
    for action in sub.choices["fit"]._actions:
        value = getattr(args, action.dest, action.default)
        if action.dest in skip or not action.option_strings or value == action.default:
            continue
        flag = max(action.option_strings, key=len)
        argv += [flag] if action.nargs == 0 else [flag, str(value)]
    return argv


def _cmd_fit_distributed(args: argparse.Namespace, cfg: Any) -> int:
    """--nproc P: exec torchrun; under torchrun: one rank of a data-parallel fit."""
    from preflight_examples.telemetry import Telemetry
    from preflight_examples.trainer import distributed

    world = distributed.world_from_env()
    if not world.distributed:  # exec'd: does not return
        distributed.exec_torchrun(cfg, args.nproc, args.max_restarts, _launch_passthrough(args))
    # One job, one set of metrics: only rank 0 publishes telemetry.
    tel = _telemetry(args) if world.leader else Telemetry("trainer")
    try:
        emit = lambda summary: print(json.dumps(summary), flush=True)  # noqa: E731
        distributed.run_fit_distributed(cfg, emit, world, tel)
    except Exception as exc:
        if classify(exc)[0] != EXIT_STOPPED:  # a clean stop is not an error
            tel.error(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        tel.close()
    return EXIT_OK


def _cmd_fingerprint(args: argparse.Namespace) -> int:
    from preflight_examples.trainer.final import read_final

    print(read_final(args.run_dir).fingerprint)
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from preflight_examples.trainer.final import read_final

    info = read_final(args.run_dir)
    print(f"{args.run_dir}: complete at step {info.step}; fingerprint {info.fingerprint}")
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    from preflight_examples.trainer.rundir import RunPaths

    print(json.dumps(read_progress(RunPaths(args.run_dir).progress).to_json()))
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "fit": _cmd_fit,
    "fingerprint": _cmd_fingerprint,
    "verify": _cmd_verify,
    "status": _cmd_status,
}


def run_command(args: argparse.Namespace) -> int:
    """Run ``args.command``: one of ours, else the extension that added it."""
    own = COMMANDS.get(args.command)
    if own is not None:
        return own(args)
    for extension in extensions():
        code = extension.dispatch(args)
        if code is not None:
            return code
    raise AssertionError(f"no handler for command {args.command!r}")  # argparse allows none


def classify(exc: BaseException) -> tuple[int, bool]:
    """(exit code, expected): the class decides, never the message. Expected failures
    carry a message that names the step, option or file; others also get a traceback."""
    from preflight_examples.trainer.final import IncompleteError
    from preflight_examples.trainer.fit import NonFiniteError, Stopped

    if isinstance(exc, Stopped):
        return EXIT_STOPPED, True
    if isinstance(exc, LockedError):
        return EXIT_LOCKED, True
    if isinstance(exc, VerifyError):
        return EXIT_REFUSED, True
    if isinstance(exc, BadInputError):
        return EXIT_BAD_INPUT, True
    # Disk full, I/O errors and memory exhaustion are the environment's, not a bug here:
    # the message says what failed; the committed checkpoints are intact for a rerun.
    return EXIT_FAILED, isinstance(exc, NonFiniteError | IncompleteError | OSError | MemoryError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "fit":
        early_signals.install()  # before torch is imported: preemption at start-up is exit 75
        if early_signals.under_launcher():
            early_signals.die_with_launcher()
    try:
        return run_command(args)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message and an exit code
        code, expected = classify(exc)
        if not expected:
            traceback.print_exc()
        if code == EXIT_BAD_INPUT and not isinstance(exc, ConfigDriftError):
            print_usage(parser, args.command)  # a drift is RUN_DIR's, not the syntax's
        print(f"trainer: {exc}", file=sys.stderr, flush=True)
        return code


def entry() -> int:
    """The console script. After `fit` has returned, the run is complete or stopped and a
    stop signal has nothing left to stop; Python resets handlers to the default during
    interpreter shutdown, so block them, or a late SIGTERM would turn exit 0/75 into -15."""
    code = main()
    if sys.argv[1:2] == ["fit"]:
        signal.pthread_sigmask(signal.SIG_BLOCK, early_signals.STOP_SIGNALS)
    return code


if __name__ == "__main__":
    sys.exit(entry())
