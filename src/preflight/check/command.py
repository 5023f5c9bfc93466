"""``preflight check WORKLOAD``: a reference run, then the fault battery, then verdicts.

    preflight check WORKLOAD [--spec FILE] [--scale small] [--faults kill,crashpoints,...,rank]
                             [--seed S] [--report DIR] [--only ID[,ID]] [--ckpt-interval N]
                             [--junit PATH]

Every experiment is planned from the seed and the reference run, recorded as a history,
and judged by the pure checker (preflight.check.checker); the battery itself is
preflight.check.battery. The report (JSON, Markdown, HTML) has one row per experiment; every
failure prints the one command that replays it. ``--junit PATH`` also writes JUnit XML, a
testcase per experiment (:func:`junit_rows`; the writer, preflight.reports.junit, is handed
in by the ``preflight`` command, a room above this one). Exit 0 only when every verdict
passes; 1 when one fails; 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from preflight.check import checker
from preflight.check.battery import Battery, BatteryResult, run_battery
from preflight.check.drive.schedule import parse_kinds
from preflight.check.history import KINDS
from preflight.check.interrupt import Interrupted
from preflight.check.options import DEFAULT_SCALE, CheckOptions, validate
from preflight.check.report import CheckReport, CheckRow, replay_command
from preflight.check.verdicts import SIGTERM_MODES, SKIP
from preflight.durable.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from preflight.evidence import Row, Status
from preflight.spec import tiers
from preflight.workload import RunError, SpecError

__all__ = ["Battery", "CheckOptions", "CheckResult", "build_parser", "main", "options_from"]

# The name docs/contract.md gives the fault_check fixture's result (users' tests import it).
CheckResult = BatteryResult

# (path, suite name, rows, properties) -> the path written: preflight.reports.junit.write_rows
JunitWriter = Callable[[Path, str, Sequence[Row], Mapping[str, object]], Path]


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
    parser.add_argument("--junit", type=Path, default=None, metavar="PATH",
                        help="also write JUnit XML: a testcase per experiment")
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


def _status(row: CheckRow) -> Status:
    if row.failed:
        return Status.FAILED
    if row.status == "SKIP":
        return Status.NOT_APPLICABLE if row.history.skipped else Status.INCONCLUSIVE
    return Status.PASSED


def _why(row: CheckRow, status: Status) -> str:
    if status is Status.FAILED:
        text = ", ".join(f"{v.name}: {v.detail}" for v in row.verdicts if v.failed)
        return f"{row.status}: {text}" if row.status != "FAIL" else text
    if status is Status.PASSED:
        return ""
    if row.history.skipped:
        return row.history.skipped
    # A skip verdict's detail says "inconclusive: ..."; the JUnit message names the kind.
    return "; ".join(v.detail.removeprefix("inconclusive: ")
                     for v in row.verdicts if v.status == SKIP) or row.status


def junit_rows(report: CheckReport) -> list[Row]:
    """One row per battery experiment (classname: the workload), plus a failing ``battery``
    row for an error that stopped it (a failed reference run, a stop) (pure)."""
    rows = []
    for row in report.rows:
        status = _status(row)
        rows.append(Row(
            nodeid=f"{report.workload}::{row.experiment.id}", outcome=status.value,
            status=status, experiment=row.experiment.id, workload=report.workload,
            reason=_why(row, status), injected=row.history.injected,
            wall_s=round(row.history.duration_s, 3), replay=row.replay))
    if report.errors or report.reference is None:
        why = "; ".join(report.errors) or "no reference run"
        replay = replay_command(report.meta, str(report.meta.get("faults") or ""))
        rows.append(Row(nodeid=f"{report.workload}::battery", outcome="failed",
                        status=Status.FAILED, experiment="battery", workload=report.workload,
                        reason=why, replay=replay))
    return rows


def _junit_properties(report: CheckReport) -> dict[str, object]:
    meta = report.meta
    return {"workload": report.workload, "scale": meta.get("scale"), "seed": meta.get("seed"),
            "faults": meta.get("faults"), "spec": meta.get("spec"),
            "verdict": "PASS" if report.passed else "FAIL"}


def main(argv: Sequence[str] | None = None, *, junit_writer: JunitWriter | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.junit is not None and (junit_writer is None or args.junit.is_dir()):
        why = ("is a directory, not a file path" if junit_writer is not None else
               "needs the `preflight` command (preflight.cli hands in the writer)")
        print(f"preflight check: --junit {args.junit}: {why}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        result = run_battery(options_from(args))
    except (SpecError, ValueError) as exc:
        print(f"preflight check: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RunError, Interrupted) as exc:
        print(f"preflight check: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.junit is not None and junit_writer is not None:
        junit_writer(args.junit, "preflight-check", junit_rows(result.report),
                     _junit_properties(result.report))
    return EXIT_OK if result.passed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
