"""The `preflight` command: check | gate | soak | report.

Extension point: `check`, `gate` and `soak` live in their own modules and own their
arguments. Each module in DELEGATED provides `main(argv: list[str]) -> int`; this file only
dispatches to it (imported lazily, so `preflight report` never pays for torch or the fault
machinery). `report` is implemented here: it shows the report of a run (reports/latest by
default): the session report the pytest plugin writes (report.json|md|html), or a gate's
readiness report (readiness.md|html beside its report.json; run_views).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from preflight.durable.errors import EXIT_BAD_INPUT, EXIT_OK

DEFAULT_REPORTS = "reports"
LATEST = "latest"
TEXT_BYTES_MAX = 32 << 20
LIST_MAX = 1000
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")  # report order
SESSION, GATE = "session", "gate"

# subcommand -> (module with main(argv) -> int, one-line help)
DELEGATED: dict[str, tuple[str, str]] = {
    "check": ("preflight.check.command",
              "fault-inject a workload and judge it (kills, corruption, ...)"),
    "gate": ("preflight.gate.cli", "the pre-launch readiness gate: report + exit code"),
    "soak": ("preflight.soak.command",
             "run a workload for a duration; leak, slowdown, stall verdicts"),
}


EXIT_CODES = """\
exit codes (every command; `preflight COMMAND --help` for its own):
  0   ok: the check or soak passed, the gate is ready, the report was shown
  1   failed: a check or soak verdict failed, the gate is not ready, a regression
  2   bad input: a clear message (unknown workload, malformed spec or option), nothing run"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preflight",
        description="Prove a long-running job is ready for production.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in DELEGATED.items():
        commands.add_parser(name, help=help_text, add_help=False)
    report = commands.add_parser(
        "report",
        help="show a session report (default: the latest)",
        # Raw (the epilog's line breaks are kept), so broken by hand.
        description="Show a session report (default: the latest), or compare gate and soak\n"
        "results over time (history, trends, a baseline, --fail-on thresholds).",
    )
    report.add_argument("run", nargs="?", default=LATEST, help="run id (default: latest)")
    report.add_argument("--dir", default=DEFAULT_REPORTS, type=Path, help="reports directory")
    report.add_argument(
        "--format", choices=("md", "json", "path"), default="md",
        help="print the Markdown, the JSON, or the path of report.html (a gate's run:"
        " readiness.md, report.json, readiness.html)",
    )
    report.add_argument("--list", action="store_true", help="list the recorded runs")
    report.add_argument(
        "--rebuild", action="store_true", help="re-render report.md/html from report.json"
    )
    report.add_argument(
        "--trend", action="store_true",
        help="compare the latest gate/soak result with earlier ones (reports/history.sqlite)"
        " and plot each measurement's trend (reports/trend/index.html)",
    )
    report.add_argument("--kind", choices=("gate", "soak"), default=None,
                        help="with --trend/--compare: which results (default: all)")
    _add_history_arguments(report)
    return parser


REPORT_HISTORY_HELP = """\
history (reports/history.sqlite): RUN is a run id, `latest` or `baseline`. --baseline or
--fail-on without --compare compare the baseline with the latest result. The baseline is
--baseline RUN, else the one stored by --set-baseline (one per kind), else the previous result.
--fail-on MEASUREMENT:+AMOUNT or :+PERCENT% fails when a measurement (matched by its name or
its last dotted parts) got worse by more than that; the sign is optional and must point the
bad way (+ where lower is better, - where higher is better, as the gate policy says).

exit codes: 0 ok; 1 a --fail-on threshold exceeded or --trend flagged a regression;
2 bad input (malformed --fail-on, unknown run, no history, no report)."""


def _add_history_arguments(report: argparse.ArgumentParser) -> None:
    report.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="per measurement: A, B, the change and a regression mark")
    report.add_argument("--baseline", metavar="RUN", help="the baseline for this call only")
    report.add_argument("--set-baseline", metavar="RUN",
                        help="store RUN as the baseline of its kind (gate or soak)")
    report.add_argument("--fail-on", action="append", default=[], metavar="EXPR",
                        help="e.g. leak_bytes_per_unit:+10%% or checkpoint_overhead:+0.05;"
                        " repeatable; exit 1 when exceeded, 2 when malformed")
    report.epilog = REPORT_HISTORY_HELP
    report.formatter_class = argparse.RawDescriptionHelpFormatter


def _delegate(name: str, argv: list[str]) -> int:
    module_name = DELEGATED[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            print(f"preflight {name}: not available ({module_name} is missing)", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise
    from preflight.durable.errors import BadInputError
    from preflight.spec.parse import SpecError

    try:
        return int(module.main(argv, **_handed_in(module)))
    except (BadInputError, SpecError) as exc:
        # A command that lets bad input escape still exits 2 with its usage, not a traceback.
        sys.stderr.write(_usage(name, module))
        print(f"preflight {name}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _handed_in(module: object) -> dict[str, object]:
    """What a command below the reports room is handed from above: `preflight check`'s
    JUnit writer (preflight.reports.junit; check and reports do not import each other)."""
    main = getattr(module, "main", None)
    if not callable(main) or "junit_writer" not in inspect.signature(main).parameters:
        return {}
    from preflight.reports.junit import write_rows

    return {"junit_writer": write_rows}


def _usage(name: str, module: object) -> str:
    """The delegated command's usage line, from its own parser when it exposes one."""
    build = getattr(module, "build_parser", None)
    if not callable(build):
        return f"usage: preflight {name} --help\n"
    # preflight.soak.command's build_parser fills a parser it is given; the others make their own.
    wants_parser = bool(inspect.signature(build).parameters)
    parser = build(argparse.ArgumentParser(prog=f"preflight {name}")) if wants_parser else build()
    return str(parser.format_usage())


def _read_text(path: Path) -> str:
    with open(path, "rb") as handle:
        return handle.read(TEXT_BYTES_MAX).decode("utf-8", errors="replace")


def _run_dirs(reports: Path) -> list[Path]:
    runs = [p for p in reports.iterdir() if p.is_dir() and not p.is_symlink()]
    return sorted(runs, key=lambda p: p.name)[-LIST_MAX:]


@dataclass(frozen=True)
class RunViews:
    """The files of one run directory that `preflight report RUN` prints (--format md, json)
    or names (--format path)."""

    kind: str  # SESSION: the pytest plugin's report.*; GATE: `preflight gate`'s readiness.*
    markdown: Path
    json: Path
    html: Path


def run_views(run_dir: Path) -> RunViews:
    """A session report's report.{md,json,html}; a gate's readiness.md and readiness.html
    beside its report.json (a gate writes no report.md: docs/contract.md "Command lines").
    A run with a report.md is shown as before, whatever else it holds."""
    if not (run_dir / "report.md").is_file() and (run_dir / "readiness.md").is_file():
        return RunViews(GATE, run_dir / "readiness.md", run_dir / "report.json",
                        run_dir / "readiness.html")
    return RunViews(SESSION, run_dir / "report.md", run_dir / "report.json",
                    run_dir / "report.html")


def _list_runs(reports: Path) -> int:
    for run_dir in _run_dirs(reports):
        summary = ""
        if (run_dir / "report.json").is_file():
            counts = json.loads(_read_text(run_dir / "report.json")).get("summary", {})
            summary = ", ".join(f"{counts[o]} {o}" for o in OUTCOMES if counts.get(o))
        print(f"{run_dir.name}  {summary}")
    return EXIT_OK


def _report_history(reports: Path, args: argparse.Namespace) -> int:
    # Imported here: plain `preflight report` should not pay for scipy and the policy.
    from preflight.history.cli import HistoryRequest, history_main

    return history_main(reports, HistoryRequest(
        args.kind, args.trend, tuple(args.compare) if args.compare else None,
        args.baseline, args.set_baseline, tuple(args.fail_on)))


def report_command(args: argparse.Namespace) -> int:
    reports: Path = args.dir
    if not reports.is_dir():
        print(f"preflight report: {reports} does not exist; run the tests first", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.list:
        return _list_runs(reports)
    if args.trend or args.compare or args.baseline or args.set_baseline or args.fail_on:
        return _report_history(reports, args)
    run_dir = reports / args.run
    if not (run_dir / "report.json").is_file():
        print(f"preflight report: no report.json in {run_dir}", file=sys.stderr)
        return EXIT_BAD_INPUT
    views = run_views(run_dir)
    if args.rebuild:
        if views.kind == GATE:
            print(f"preflight report: {run_dir} is a gate's readiness report; --rebuild "
                  "re-renders session reports only", file=sys.stderr)
            return EXIT_BAD_INPUT
        from preflight.reports.session import rewrite_views

        rewrite_views(run_dir)
    if args.format == "path":
        print(views.html.resolve())
    else:
        sys.stdout.write(_read_text(views.markdown if args.format == "md" else views.json))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # Delegated commands parse their own arguments, --help included.
    if args_list and args_list[0] in DELEGATED:
        return _delegate(args_list[0], args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command == "report":
        return report_command(args)
    parser.print_help()
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
