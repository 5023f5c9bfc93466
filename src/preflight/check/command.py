"""``preflight check WORKLOAD``: a reference run, then the fault battery, then verdicts.

    preflight check WORKLOAD [--spec FILE] [--scale small] [--faults kill,crashpoints,...,rank]
                             [--seed S] [--report DIR] [--only ID[,ID]] [--ckpt-interval N]

Every experiment is planned from the seed and the reference run, recorded as a history,
and judged by the pure checker (preflight.check.checker); the battery itself is
preflight.check.battery. The report (JSON, Markdown, HTML) has one row per experiment; every
failure prints the one command that replays it. Exit 0 only when every verdict passes; 1 when
one fails; 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from preflight.check import checker
from preflight.check.battery import Battery, BatteryResult, run_battery
from preflight.check.drive.schedule import parse_kinds
from preflight.check.history import KINDS
from preflight.check.interrupt import Interrupted
from preflight.check.options import DEFAULT_SCALE, CheckOptions, validate
from preflight.check.verdicts import SIGTERM_MODES
from preflight.durable.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from preflight.spec import tiers
from preflight.workload import RunError, SpecError

__all__ = ["Battery", "CheckOptions", "CheckResult", "build_parser", "main", "options_from"]

# The name docs/contract.md gives the fault_check fixture's result (users' tests import it).
CheckResult = BatteryResult


def build_parser() -> argparse.ArgumentParser:
    from preflight.check import registry

    kinds = ", ".join(registry.names())
    parser = argparse.ArgumentParser(
        prog="preflight check",
        description="Run WORKLOAD uninterrupted, then under every fault; judge the results.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(f"fault kinds (--faults, comma-separated): {kinds}\n"
                f"tiers (--scale): {', '.join(tiers.TIER_NAMES)}\n"
                "exit codes:\n"
                "  0  every experiment passed\n"
                "  1  an experiment failed (the report names it and its replay command)\n"
                "  2  bad input: unknown workload or fault kind, malformed spec; nothing run"),
    )
    parser.add_argument("workload")
    parser.add_argument("--spec", help="workload spec file (default ./workloads.toml, pyproject)")
    parser.add_argument("--scale", default=DEFAULT_SCALE, choices=tiers.TIER_NAMES,
                        help="the tier whose sizes the job runs at")
    parser.add_argument("--faults", default=",".join(KINDS), help="comma-separated fault kinds")
    parser.add_argument("--seed", type=int, default=0, help="seed of every fault schedule")
    parser.add_argument("--report", help="report directory (default reports/<run id>/)")
    parser.add_argument("--only", default="", help="comma-separated experiment ids to replay")
    parser.add_argument("--ckpt-interval", type=int, help="checkpoint interval, progress units")
    parser.add_argument("--restarts", type=int, default=checker.RESTARTS_MAX)
    parser.add_argument("--attempt-timeout-s", type=float, help="bound per attempt")
    parser.add_argument("--work-root", help="where experiment workdirs go (default: tmp)")
    parser.add_argument("--keep", action="store_true", help="keep experiment workdirs")
    parser.add_argument(
        "--sigterm",
        choices=SIGTERM_MODES,
        help="what SIGTERM must do (default: the spec's sigterm key, else any)",
    )
    return parser


def options_from(args: argparse.Namespace) -> CheckOptions:
    validate(args)
    return CheckOptions(
        workload=args.workload,
        spec_file=args.spec,
        scale=args.scale,
        faults=parse_kinds(args.faults),
        seed=args.seed,
        report_dir=args.report,
        only=tuple(i.strip() for i in args.only.split(",") if i.strip()),
        ckpt_interval=args.ckpt_interval,
        restarts_max=args.restarts,
        attempt_timeout_s=args.attempt_timeout_s,
        work_root=args.work_root,
        keep=args.keep,
        sigterm=args.sigterm,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        result = run_battery(options_from(args))
    except (SpecError, ValueError) as exc:
        print(f"preflight check: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RunError, Interrupted) as exc:
        print(f"preflight check: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if result.passed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
