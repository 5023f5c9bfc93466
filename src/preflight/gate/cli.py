"""`preflight gate`: the pre-launch gate for every workload in a spec.

    preflight gate [--spec FILE] [--workload NAME ...] [--scale small|10pct|production]
                   [--require TIER] [--only EXPERIMENT ...] [--seed S] [--report DIR]
                   [--junit PATH]

Runs the readiness experiments (preflight.experiments) and fault batteries for each workload
directly, plus the project's own pytest suites when ``[tool.preflight.gate] suites`` names
any; judges the evidence by the launch policy; writes readiness.json/md/html and
report.json into ``reports/<run id>/`` (and with ``--junit PATH`` JUnit XML: a testcase per
workload and experiment, preflight.reports.junit); records the result in
``reports/history.sqlite``.
With ``--require T`` it refuses unless a passing gate at tier T exists for the same code and
configuration (the "only after the 10% rehearsal passes" rule).

Exit codes: 0 READY; 1 NOT READY (or refused by --require); 2 bad input (spec, policy).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from preflight.durable import BadInputError
from preflight.durable.atomic import atomic_write
from preflight.durable.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from preflight.evidence import Row
from preflight.experiments.schedule import plan, run_planned
from preflight.gate.policy import Policy, load_policy
from preflight.gate.suites import run_suites
from preflight.gate.verdict import Verdict, validate_ready_for_production
from preflight.history.identity import code_hash, preflight_config_hash
from preflight.history.store import History
from preflight.reports import junit
from preflight.reports.evidence import keep_evidence
from preflight.reports.readiness import bad_inputs_rows, write_readiness
from preflight.reports.session import git_commit, point_latest
from preflight.spec import tiers
from preflight.spec.parse import PYPROJECT_FILE, WORKLOADS_FILE, SpecError, WorkloadSpec, load_specs

EXIT_READY, EXIT_NOT_READY = EXIT_OK, EXIT_FAILED
REPORT_BYTES_MAX = 64 << 20


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preflight gate", description=__doc__.split("\n")[0],
        epilog="exit codes: 0 READY, 1 NOT READY or refused by --require, 2 bad input",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [t.name for t in tiers.TIERS]
    parser.add_argument("--scale", default="small", choices=names)
    parser.add_argument("--require", default=None, choices=names,
                        help="refuse unless a passing gate at this tier exists for this code")
    parser.add_argument("--spec", type=Path, default=None,
                        help=f"workload spec file (default: {PYPROJECT_FILE}, else "
                             f"{WORKLOADS_FILE})")
    parser.add_argument("--workload", action="append", default=None,
                        help="gate only this workload; repeat for several (default: all)")
    parser.add_argument("--only", action="append", default=None,
                        help="run only this experiment (e.g. stability, faults.kill); "
                             "repeatable; project suites are skipped")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault batteries")
    parser.add_argument("--report", type=Path, default=Path("reports"), help="reports directory")
    parser.add_argument("--junit", type=Path, default=None, metavar="PATH",
                        help="also write JUnit XML: a testcase per workload and experiment")
    parser.add_argument("--suites", action="append", default=None,
                        help="pytest suite to run too (default: [tool.preflight.gate] suites)")
    parser.add_argument("--no-suites", action="store_true", help="skip the project's suites")
    parser.add_argument("--pyproject", type=Path, default=None,
                        help="gate policy file (default: the spec file if it is a "
                             "pyproject.toml, else ./pyproject.toml)")
    parser.add_argument("--workers", default="auto", help="pytest-xdist workers for suites")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    return parser


def _spec_file(args: argparse.Namespace) -> Path:
    if args.spec is not None:
        if not args.spec.is_file():
            raise BadInputError(f"{args.spec}: workload spec file does not exist")
        return args.spec
    for name in (PYPROJECT_FILE, WORKLOADS_FILE):
        if Path(name).is_file():
            return Path(name)
    raise BadInputError(f"no workload spec: neither {PYPROJECT_FILE} nor {WORKLOADS_FILE} "
                        "here; give --spec FILE")


def _policy_file(args: argparse.Namespace, spec_file: Path) -> Path:
    if args.pyproject is not None:
        return args.pyproject
    return spec_file if spec_file.name == PYPROJECT_FILE else Path(PYPROJECT_FILE)


def _workloads(args: argparse.Namespace, spec_file: Path) -> list[WorkloadSpec]:
    specs = load_specs(spec_file)
    if not specs:
        raise BadInputError(f"{spec_file}: no workloads ([tool.preflight.workloads.NAME])")
    chosen = args.workload or sorted(specs)
    unknown = [n for n in chosen if n not in specs]
    if unknown:
        raise BadInputError(f"{spec_file}: no workload named {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(specs))}")
    return [specs[n] for n in chosen]


def previous_durations(reports: Path, scale: str) -> dict[str, float]:
    """Each experiment's wall time in the latest gate at this tier, by label ({} when there
    is none or it cannot be read): the scheduler starts the longest first."""
    path = reports / "latest" / "report.json"
    try:
        if path.stat().st_size > REPORT_BYTES_MAX:
            return {}
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("scale") != scale:
        return {}
    return {str(t["nodeid"]): float(t["wall_s"]) for t in doc.get("tests", [])
            if isinstance(t, dict) and isinstance(t.get("wall_s"), int | float)
            and "nodeid" in t}


def workload_summary(specs: list[WorkloadSpec], tests: list[dict[str, Any]], tier: str
                     ) -> dict[str, Any]:
    """Per workload: the sizes, the experiments run and those not applicable (pure)."""
    out: dict[str, Any] = {}
    for spec in specs:
        mine = [t for t in tests if t.get("workload") == spec.name]
        out[spec.name] = {
            "spec": str(spec.source), "sizes": spec.params(tier),
            "run": [t["experiment"] for t in mine if t["outcome"] != "not_applicable"],
            "not_applicable": {t["experiment"]: t["reason"] for t in mine
                               if t["outcome"] == "not_applicable"},
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return gate(args)
    except (BadInputError, SpecError) as exc:  # a malformed spec or policy: name it, run nothing
        print(f"preflight gate: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _refused(args: argparse.Namespace, reports: Path, code: str, config: str) -> bool:
    if not args.require:
        return False
    with History(reports / "history.sqlite") as history:
        found = history.find_ready(args.require, code, config)
    if found is None:
        print(f"preflight gate: refused: no passing {args.require} gate for this code "
              f"(code hash {code[:12]}, config hash {config[:12]}); run "
              f"`preflight gate --scale {args.require}` first", file=sys.stderr)
        return True
    print(f"preflight gate: {args.require} gate {found.run_id} passed for this code")
    return False


def _evidence(args: argparse.Namespace, specs: list[WorkloadSpec], policy: Policy,
              run_dir: Path) -> list[dict[str, Any]]:
    items = plan(specs, args.only or ())
    print(f"preflight gate: {len(items)} experiments over {len(specs)} workload(s) at "
          f"{args.scale}", flush=True)
    bounds = {r.id: policy.threshold(r, args.scale) for r in policy.requirements}
    reruns = policy.inconclusive_reruns if policy.on_inconclusive == "rerun" else 0
    tests = run_planned(items, tier=args.scale, base_dir=run_dir / "work", bounds=bounds,
                        seed=args.seed, reruns=reruns, out=sys.stdout,
                        seen_s=previous_durations(run_dir.parent, args.scale))
    suites = [] if args.no_suites or args.only else (args.suites or list(policy.suites))
    if suites:
        print(f"preflight gate: project suites {' '.join(suites)}", flush=True)
        _code, suite_tests = run_suites(suites, args.scale, str(args.workers),
                                        run_dir / "suites", Path.cwd(), args.pytest_args)
        tests += suite_tests
    return tests


def gate(args: argparse.Namespace) -> int:
    if args.junit is not None:
        junit.check_path(args.junit)
    spec_file = _spec_file(args)
    policy_file = _policy_file(args, spec_file)
    specs = _workloads(args, spec_file)
    policy = load_policy(policy_file, args.scale)
    reports = args.report.absolute()
    reports.mkdir(parents=True, exist_ok=True)
    code, config = code_hash(spec_file.parent), preflight_config_hash(policy_file)
    if _refused(args, reports, code, config):
        return EXIT_NOT_READY
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")[:-4] + f"Z-gate-{os.getpid()}"
    run_dir = reports / run_id
    run_dir.mkdir(parents=True)
    try:
        # The experiments' evidence (samples, battery histories) outlives their scratch dir:
        # the readiness report's plots are drawn from it, and it stays beside report.json.
        tests = keep_evidence(_evidence(args, specs, policy, run_dir), run_dir / "work", run_dir)
    finally:
        shutil.rmtree(run_dir / "work", ignore_errors=True)
    report = {"experiments": True, "scale": args.scale, "tests": tests}
    verdict = validate_ready_for_production(report, policy)
    meta = {"run_id": run_id, "scale": args.scale, "spec": str(spec_file),
            "git_commit": git_commit(spec_file.parent), "code_hash": code,
            "config_hash": config, "workloads": workload_summary(specs, tests, args.scale)}
    atomic_write(run_dir / "report.json", {**report, "meta": meta})
    write_readiness(run_dir, verdict, meta, [], bad_inputs_rows(report), tests)
    point_latest(reports, run_dir)
    if args.junit is not None:
        write_junit(args.junit, tests, meta, verdict)
    with History(reports / "history.sqlite") as history:
        history.add(run_id=run_id, kind="gate", workload=",".join(s.name for s in specs),
                    scale=args.scale, code_hash=code, config_hash=config, ready=verdict.ready,
                    metrics=_metrics(tests), report_path=str(run_dir / "readiness.json"))
    _print_summary(verdict, tests, run_dir)
    return EXIT_READY if verdict.ready else EXIT_NOT_READY


def write_junit(path: Path, tests: list[dict[str, Any]], meta: dict[str, Any],
                verdict: Verdict) -> Path:
    """The gate's JUnit XML: one testcase per workload and experiment (classname: the
    workload) and per project suite test."""
    props = {k: meta.get(k) for k in ("run_id", "scale", "spec", "git_commit")}
    props["verdict"] = "READY" if verdict.ready else "NOT READY"
    rows = [Row.from_json(t) for t in tests if isinstance(t, dict)]
    return junit.write_rows(path, "preflight-gate", rows, props)


def _metrics(tests: list[dict[str, Any]]) -> list[tuple[str, float]]:
    return [(str(m.get("name")), float(m["value"])) for t in tests
            for m in t.get("measurements", []) if isinstance(m.get("value"), bool | int | float)]


def _print_summary(verdict: Verdict, tests: list[dict[str, Any]], run_dir: Path) -> None:
    for r in verdict.results:
        measured = "—" if r.measured is None else f"{r.measured:.4g}"
        name = r.id + (f" [{r.tier}]" if r.tier else "")
        print(f"  {r.status.upper():14} {name}: {measured} {r.comparator} {r.threshold:g} "
              f"{r.unit}" + (f"  ({r.note})" if r.note else ""))
    for t in tests:
        if t.get("outcome") in ("failed", "error", "inconclusive"):
            reason = t.get("reason") or t.get("longrepr") or ""
            print(f"  {t['outcome'].upper():14} {t['nodeid']}: {str(reason)[:400]}")
            if t.get("replay"):
                print(f"  {'':14} replay: {t['replay']}")
    status = "READY" if verdict.ready else "NOT READY"
    if verdict.ready and verdict.tests_inconclusive:
        status += f" (with {len(verdict.tests_inconclusive)} inconclusive)"
    print(f"preflight gate: {status}; report {run_dir / 'readiness.html'}")
