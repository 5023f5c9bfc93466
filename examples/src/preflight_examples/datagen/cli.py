"""The `datagen` command line (contract: docs/contract.md "Command lines" and "Exit codes")."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from preflight.durable import BadInputError, ConfigDriftError, LockedError, VerifyError
from preflight_examples.datagen.config import GenConfig
from preflight_examples.datagen.generate import RunOptions, generate, read_status
from preflight_examples.datagen.ranks import from_environment
from preflight_examples.datagen.report import Reporter
from preflight_examples.datagen.verify import scan
from preflight_examples.telemetry import Telemetry, add_cli_options
from preflight_examples.telemetry.clihelp import finish_help, print_usage

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_LOCKED, EXIT_REFUSED = 1, 2, 3, 4
EXIT_CODES = """\
exit codes:
  0   done (verify: the dataset is complete and every checksum holds)
  1   failed (a shard could not be generated; --retry-errors retries only those)
  2   bad input: a clear message, nothing written
  3   --out is locked by another live run
  4   refused: data failed its checksum and cannot be repaired (verify: damaged or
      incomplete)
  75  stopped on SIGTERM after committing the finished shards; rerun to resume"""


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="datagen", description="Generate a labelled dataset of trajectory videos."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    gen = commands.add_parser("generate", help="generate or resume a dataset in --out")
    # str, not Path: Path("") is ".", and an empty --out must be refused, not mean "here".
    gen.add_argument("--out", required=True, help="dataset directory")
    gen.add_argument("--samples", required=True, type=int, help="number of videos")
    gen.add_argument("--frames", type=int, default=16, help="frames per video (16)")
    gen.add_argument("--size", type=int, default=64, help="frame height and width (64)")
    gen.add_argument("--channels", type=int, default=3, help="3: RGB, 1: grayscale (3)")
    gen.add_argument("--classes", type=int, default=4, help="trajectory classes, 1-4 (4)")
    gen.add_argument("--shard-size", type=int, default=1000, help="samples per shard (1000)")
    cores = _default_workers()
    gen.add_argument(
        "--workers", type=int, default=cores, help=f"worker processes (the cores: {cores})"
    )
    gen.add_argument("--seed", type=int, default=42, help="random seed (42)")
    gen.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="noise, brightness and position jitter (on)",
    )
    gen.add_argument("--new", action="store_true", help="discard an existing dataset in --out")
    gen.add_argument(
        "--retry-errors", action="store_true", help="reprocess only the shards that failed"
    )
    add_cli_options(gen)
    gen.add_argument(
        "--rank",
        type=int,
        default=None,
        help="this process's rank: it generates the shards i with i %% world-size == rank "
        "(default: $RANK, set by torchrun)",
    )
    gen.add_argument(
        "--world-size",
        type=int,
        default=None,
        help="number of ranks sharing --out; rank 0 finalizes (default: $WORLD_SIZE, or 1)",
    )
    for name, text in (
        ("status", "print the progress record as JSON"),
        ("verify", "check a finished dataset completely (exit 0 only when valid)"),
        ("fingerprint", "print one sha256 line over the dataset's content"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("dir", type=Path)
    finish_help(parser, EXIT_CODES)
    return parser


def _telemetry(args: argparse.Namespace) -> Telemetry:
    """A --log-json (or similar) path that cannot be opened is bad input (exit 2)."""
    try:
        return Telemetry.from_args(args, job="datagen")
    except OSError as exc:
        where = exc.filename or "telemetry output"
        raise BadInputError(f"cannot open {where}: {exc.strerror or exc}") from None


def _run(args: argparse.Namespace) -> int:
    if args.command == "generate":
        cfg = GenConfig(
            samples=args.samples,
            frames=args.frames,
            size=args.size,
            channels=args.channels,
            classes=args.classes,
            shard_size=args.shard_size,
            seed=args.seed,
            augment=args.augment,
        )
        ranks = from_environment(args.rank, args.world_size)
        if not args.out:
            raise BadInputError("--out: must not be empty (it would mean the current directory)")
        opts = RunOptions(Path(args.out), args.workers, args.new, args.retry_errors, ranks)
        with _telemetry(args) as tel:
            return generate(cfg, opts, Reporter(telemetry=tel))
    if args.command == "status":
        print(json.dumps(read_status(args.dir), sort_keys=True))
        return 0
    report = scan(args.dir)
    print(report.fingerprint if args.command == "fingerprint" else report.summary())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except LockedError as exc:
        print(f"datagen: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except BadInputError as exc:  # includes ConfigDriftError
        if not isinstance(exc, ConfigDriftError):  # a drift is --out's, not the syntax's
            print_usage(parser, args.command)
        print(f"datagen: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except VerifyError as exc:
        print(f"datagen: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except Exception as exc:  # the exit code contract: anything else is "failed"
        print(f"datagen: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
