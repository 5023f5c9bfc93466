"""`preflight gate [--scale 10pct] [--require 10pct]`: the pre-launch gate.

Runs the readiness suites at the tier (pytest underneath, ``-n auto``), evaluates the launch
policy of ``[tool.preflight.gate]`` against the session report, writes readiness.json/md/html
next to it, records the result in ``reports/history.sqlite`` and exits 0 only when ready.
With ``--require T`` it refuses to start unless a passing gate at tier T exists for the same
code and configuration (the "only after the 10% rehearsal passes" rule of seed 000).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from durable import BadInputError
from harness import tiers
from harness.gate.history import History
from harness.gate.identity import code_hash, preflight_config_hash
from harness.gate.policy import load_policy
from harness.gate.readiness import bad_inputs_rows, write_readiness
from harness.gate.report import point_latest
from harness.gate.verdict import Verdict, validate_ready_for_production

EXIT_READY, EXIT_NOT_READY, EXIT_BAD_INPUT = 0, 1, 2
# The whole gate run is bounded; a readiness suite that hangs fails the gate. The bounds
# are far above the usual figures (small: 5 min, 10pct: 9 min): a host that takes 70% of
# the CPU triples them, and timing tests may wait for it (harness.plugin.TIMING_CPU_WAIT_S).
SUITE_TIMEOUT_S = {"small": 2400.0, "10pct": 3600.0, "production": 6 * 3600.0}
# The security fuzz suite feeds the gate its parser-crash evidence (max_parser_crashes).
DEFAULT_SUITES = ["suites/readiness", "suites/security"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="preflight gate", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", default="small", choices=[t.name for t in tiers.TIERS])
    parser.add_argument("--require", default=None, choices=[t.name for t in tiers.TIERS],
                        help="refuse unless a passing gate at this tier exists for this code")
    parser.add_argument("--report", type=Path, default=Path("reports"), help="reports directory")
    parser.add_argument("--suites", action="append", default=None,
                        help="suite to run; repeat for several (default: "
                        + " and ".join(DEFAULT_SUITES) + ")")
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--workers", default="auto", help="pytest-xdist workers (auto)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    return parser


def _pytest_argv(args: argparse.Namespace, session_dir: Path) -> list[str]:
    suites = args.suites or DEFAULT_SUITES
    return [sys.executable, "-m", "pytest", *suites, "--scale", args.scale,
            "-n", str(args.workers), "-q", "-p", "no:cacheprovider",
            "--preflight-report", str(session_dir), *args.pytest_args]


def run_suites(args: argparse.Namespace, reports: Path) -> tuple[int, Path | None]:
    """Run pytest into a private directory, then move its run dir into ``reports``."""
    private = reports / f".gate-{os.getpid()}"
    shutil.rmtree(private, ignore_errors=True)
    private.mkdir(parents=True)
    try:
        done = subprocess.run(_pytest_argv(args, private), timeout=SUITE_TIMEOUT_S[args.scale],
                              check=False)
        code = done.returncode
    except subprocess.TimeoutExpired:
        print(f"preflight gate: readiness suites exceeded {SUITE_TIMEOUT_S[args.scale]} s",
              file=sys.stderr)
        code = EXIT_NOT_READY
    runs = [p for p in private.iterdir() if p.is_dir() and not p.is_symlink()]
    run_dir = None
    if len(runs) == 1 and (runs[0] / "report.json").is_file():
        run_dir = reports / runs[0].name
        os.replace(runs[0], run_dir)
        point_latest(reports, run_dir)
    shutil.rmtree(private, ignore_errors=True)
    return code, run_dir


def _metrics(report: dict[str, Any]) -> list[tuple[str, float]]:
    out = []
    for test in report.get("tests", []):
        for item in test.get("measurements", []):
            value = item.get("value")
            if isinstance(value, bool | int | float):
                out.append((str(item.get("name")), float(value)))
    return out


def _plots(run_dir: Path, report: dict[str, Any]) -> list[str]:
    plots = [p for t in report.get("tests", []) for p in t.get("plots", [])]
    return [p for p in plots if (run_dir / p).is_file()]


def _print_summary(verdict: Verdict, run_dir: Path) -> None:
    for result in verdict.results:
        mark = "PASS" if result.ok else "FAIL"
        measured = "—" if result.measured is None else f"{result.measured:.4g}"
        name = result.id + (f" [{result.tier}]" if result.tier else "")
        print(f"  {mark}  {name}: {measured} {result.comparator} {result.threshold:g}"
              f" {result.unit}" + (f"  ({result.note})" if result.note else ""))
    for nodeid in verdict.tests_failed:
        print(f"  FAIL  test {nodeid}")
    status = "READY" if verdict.ready else "NOT READY"
    print(f"preflight gate: {status}; report {run_dir / 'readiness.html'}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return gate(args)
    except BadInputError as exc:  # a malformed pyproject.toml: name it, run nothing
        print(f"preflight gate: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def gate(args: argparse.Namespace) -> int:
    reports = args.report.absolute()
    reports.mkdir(parents=True, exist_ok=True)
    code, config = code_hash(), preflight_config_hash(args.pyproject)
    if args.require:
        with History(reports / "history.sqlite") as history:
            found = history.find_ready(args.require, code, config)
        if found is None:
            print(f"preflight gate: refused: no passing {args.require} gate for this code "
                  f"(code hash {code[:12]}, config hash {config[:12]}); run "
                  f"`preflight gate --scale {args.require}` first", file=sys.stderr)
            return EXIT_NOT_READY
        print(f"preflight gate: {args.require} gate {found.run_id} passed for this code")
    policy = load_policy(args.pyproject, args.scale)
    pytest_code, run_dir = run_suites(args, reports)
    if run_dir is None:
        print(f"preflight gate: the readiness suites wrote no report (pytest exit {pytest_code})",
              file=sys.stderr)
        return EXIT_NOT_READY
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    verdict = validate_ready_for_production(report, policy)
    meta = {"run_id": run_dir.name, "scale": args.scale, "code_hash": code,
            "config_hash": config, "pytest_exit": pytest_code, "session_report": "report.html"}
    write_readiness(run_dir, verdict, meta, _plots(run_dir, report), bad_inputs_rows(report))
    with History(reports / "history.sqlite") as history:
        history.add(run_id=run_dir.name, kind="gate", workload="all", scale=args.scale,
                    code_hash=code, config_hash=config, ready=verdict.ready,
                    metrics=_metrics(report), report_path=str(run_dir / "readiness.json"))
    _print_summary(verdict, run_dir)
    return EXIT_READY if verdict.ready else EXIT_NOT_READY
