"""The corpus of real defects (issue 18): create the pinned virtual environments, then drive
every case and its control through `preflight check` (and `preflight soak` for leaks and fd
growth) over several seeds; write reports/corpus.json and reports/corpus.md.

    python corpus/run.py setup                 # create corpus/.venvs/* from corpus/venvs.toml
    python corpus/run.py run [--seeds 0,1,2] [--cases a,b] [--soak-s 40]
    python corpus/run.py table                 # re-render reports/corpus.md from the JSON

Each case is a folder corpus/CASE with workloads.toml (two workloads: the defect and its
control), case.toml (what to run and the expected verdicts) and README.md (ground truth
measured by hand). Every check and soak runs under a wall-clock bound.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from preflight.host.load import Jiffies, read_jiffies
from preflight.reports.session import git_commit

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
VENVS = CORPUS / ".venvs"
REPORTS = ROOT / "reports"
PREFLIGHT = ROOT / ".venv" / "bin" / "preflight"
STAMP = ".corpus-stamp"
NAME = "corpus"  # reports/NAME.json, reports/NAME.md, reports/NAME/ (run --name)
PIP_TIMEOUT_S = 900
CHECK_BOUND_S = 900  # one `preflight check` of one workload and seed
SOAK_SLACK_S = 120  # a soak may overrun its duration by the time the last job takes to stop


# ---------------------------------------------------------------------------------- setup


def _venv_steps(name: str, table: dict[str, Any]) -> list[list[str]]:
    steps = table.get("steps")
    if not isinstance(steps, list) or not all(isinstance(s, list) for s in steps):
        raise SystemExit(f"corpus/venvs.toml: venvs.{name}.steps must be a list of lists")
    first = steps[0] if steps else []
    if first != ["torch==2.13.0"]:
        raise SystemExit(f"corpus/venvs.toml: venvs.{name}: the first step must be torch==2.13.0")
    return steps


def setup(names: list[str] | None = None) -> int:
    manifest = tomllib.loads((CORPUS / "venvs.toml").read_text())["venvs"]
    VENVS.mkdir(parents=True, exist_ok=True)
    for name, table in manifest.items():
        if names and name not in names:
            continue
        steps = _venv_steps(name, table)
        digest = hashlib.sha256(json.dumps(steps).encode()).hexdigest()[:16]
        venv = VENVS / name
        stamp = venv / STAMP
        if stamp.is_file() and stamp.read_text().strip() == digest:
            print(f"venv {name}: up to date")
            continue
        print(f"venv {name}: creating", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        for step in steps:
            subprocess.run(pip + step, check=True, timeout=PIP_TIMEOUT_S)
        _assert_torch(venv)
        stamp.write_text(digest + "\n")
    return 0


def _assert_torch(venv: Path) -> None:
    """No library may have moved torch off 2.13.0."""
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import torch; print(torch.__version__)"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout.strip()
    if not out.startswith("2.13.0"):
        raise SystemExit(f"{venv}: torch is {out}, not 2.13.0")


# ---------------------------------------------------------------------------------- cases


def load_cases(only: list[str] | None) -> list[dict[str, Any]]:
    cases = []
    for path in sorted(CORPUS.glob("*/case.toml")):
        name = path.parent.name
        if only and name not in only:
            continue
        case = tomllib.loads(path.read_text())
        case["name"] = name
        case["spec"] = str((path.parent / "workloads.toml").relative_to(ROOT))
        for key in ("project", "issue", "defect", "mode", "defect_workload", "control_workload"):
            if key not in case:
                raise SystemExit(f"{path}: missing key {key!r}")
        if case["mode"] not in ("check", "soak"):
            raise SystemExit(f"{path}: mode must be check or soak")
        cases.append(case)
    return cases


def _harness_crashed(rc: int | None, out: str, report: Path) -> bool:
    """preflight itself failed (a traceback out of the harness, no report written): not a
    verdict on the job, and reported as a harness error, never retried away."""
    if rc in (0, None):
        return False
    wrote = any(report.rglob("check-*.json")) or any(report.rglob("soak-*.json"))
    return not wrote and "Traceback (most recent call last)" in out


def _preflight(args: list[str], bound_s: float, log: Path,
               report: Path) -> tuple[int | None, float, str, bool]:
    """Run preflight once under a wall-clock bound: (rc, wall, output, harness crashed)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    shutil.rmtree(report, ignore_errors=True)
    start = time.monotonic()
    try:
        proc = subprocess.run([str(PREFLIGHT), *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=bound_s, env=env, start_new_session=True)
        rc: int | None = proc.returncode
        out = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc = None
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) \
            else (exc.stdout or "")
        out += f"\n*** bound of {bound_s:.0f} s reached\n"
    wall = time.monotonic() - start
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(out)
    return rc, wall, out, _harness_crashed(rc, out, report)


def _check_findings(report: Path) -> dict[str, Any]:
    """Failed verdicts per experiment from a check report (JSON)."""
    files = sorted(report.glob("check-*.json"))
    if not files:
        return {"rows": [], "failed_verdicts": [], "not_injected": []}
    data = json.loads(files[0].read_text())
    rows, failed, not_injected = [], set(), []
    for row in data.get("rows", []):
        bad = [v["name"] for v in row.get("verdicts", []) if v.get("status") == "fail"]
        failed.update(bad)
        if not row.get("injected", True):
            not_injected.append(row["id"])
        rows.append({"id": row["id"], "status": row.get("status"), "failed": bad,
                     "detail": "; ".join(v.get("detail", "") for v in row.get("verdicts", [])
                                         if v.get("status") == "fail")[:400],
                     "injected": row.get("injected")})
    return {"rows": rows, "failed_verdicts": sorted(failed), "not_injected": not_injected,
            "errors": data.get("errors")}


def _soak_findings(report: Path) -> dict[str, Any]:
    """Every detector that fired in a soak report: leak:METRIC per iteration, and any other
    top-level verdict (throughput, stall, crashed iterations)."""
    fired: set[str] = set()
    detail: list[str] = []
    for f in sorted(report.rglob("soak-*.json")):
        try:
            verdicts = json.loads(f.read_text()).get("verdicts", {})
        except (ValueError, AttributeError):
            continue
        for key, value in verdicts.items():
            if key == "leak" and isinstance(value, list):
                for v in value:
                    if isinstance(v, dict) and v.get("ok") is False:
                        fired.add(f"leak:{v.get('metric')}")
                        detail.append(f"iteration {v.get('iteration')}: {v.get('reason')}")
            elif isinstance(value, list):  # per-iteration verdicts: throughput_within
                for v in value:
                    if isinstance(v, dict) and v.get("ok") is False:
                        fired.add(key)
                        detail.append(f"{key} iteration {v.get('iteration')}: "
                                      f"{v.get('reason', '')}")
            elif isinstance(value, dict) and value.get("ok") is False:
                fired.add(key)
                detail.append(f"{key}: {value.get('reason', '')}")
            elif key == "crashed_iterations" and value:
                fired.add("crashed_iterations")
                detail.append(f"{value} iteration(s) crashed")
    return {"fired": sorted(fired), "detail": detail[:12]}


def _host_figures(before: Jiffies | None, load_before: float) -> dict[str, Any]:
    """The machine during one run: 1-min load average before and after, and the share of
    all CPUs busy (this run's processes and everyone else's), for judging a wall-clock
    detector's verdict (throughput, stall) against machine load."""
    after = read_jiffies()
    share = None
    if before is not None and after is not None and after.total > before.total:
        idle = (after.idle - before.idle) + (after.iowait - before.iowait)
        share = 1.0 - idle / (after.total - before.total)
    return {"cpus": os.cpu_count(), "load1_before": round(load_before, 2),
            "load1_after": round(os.getloadavg()[0], 2),
            "cpu_busy_share": round(share, 3) if share is not None else None}


def run_one(case: dict[str, Any], role: str, seed: int, soak_s: float) -> dict[str, Any]:
    before, load = read_jiffies(), os.getloadavg()[0]
    res = _run_one(case, role, seed, soak_s)
    res["host"] = _host_figures(before, load)
    return res


def _run_one(case: dict[str, Any], role: str, seed: int, soak_s: float) -> dict[str, Any]:
    workload = case[f"{role}_workload"]["name"]
    out = REPORTS / NAME / case["name"] / workload / f"seed{seed}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if case["mode"] == "check":
        args = ["check", workload, "--spec", case["spec"], "--faults", case.get("faults", "kill"),
                "--seed", str(seed), "--report", str(out / "report")]
        if case.get("only"):
            args += ["--only", ",".join(case["only"])]
        rc, wall, text, crashed = _preflight(args, case.get("bound_s", CHECK_BOUND_S),
                                             out / "preflight.log", out / "report")
        findings = _check_findings(out / "report")
        expect = case.get("expect_verdicts", [])
        if role == "defect":
            found = rc == 1 and (not expect or bool(set(expect) & set(findings["failed_verdicts"])))
        else:
            found = rc != 0
    else:
        state = Path(tempfile.mkdtemp(prefix=f"corpus-soak-{workload}-"))
        args = ["soak", workload, "--spec", case["spec"], "--duration", f"{soak_s:.0f}s",
                "--scale", case.get("soak_scale", "10pct"), "--state", str(state),
                "--report", str(out / "report")]
        rc, wall, text, crashed = _preflight(args, soak_s + SOAK_SLACK_S + 60,
                                             out / "preflight.log", out / "report")
        findings = _soak_findings(out / "report")
        shutil.rmtree(state, ignore_errors=True)
        expect = case.get("expect_detectors", [])
        if role == "defect":
            found = rc == 1 and (not expect or bool(set(expect) & set(findings["fired"])))
        else:
            found = rc != 0
    return {"case": case["name"], "role": role, "workload": workload, "seed": seed, "rc": rc,
            "wall_s": round(wall, 1), "found": found and not crashed, "harness_error": crashed,
            "findings": findings, "tail": text[-1500:]}


def measure(cases: list[dict[str, Any]], seeds: list[int], soak_s: float,
            merge: bool = False, deadline: datetime | None = None) -> dict[str, Any]:
    """Run the cases; with merge, keep the runs reports/NAME.json holds for other cases and
    other seeds (a run of a case and seed asked for now replaces the stored one)."""
    seeds_asked = list(seeds)
    results: list[dict[str, Any]] = []
    shown = list(cases)
    if merge and (REPORTS / f"{NAME}.json").is_file():
        names = {c["name"] for c in cases}
        old = json.loads((REPORTS / f"{NAME}.json").read_text())
        results = [r for r in old["runs"] if not (r["case"] in names and r["seed"] in seeds)]
        kept = {r["case"] for r in results}
        shown = [c for c in load_cases(None) if c["name"] in kept | names]
        seeds = sorted(set(seeds) | {r["seed"] for r in results})
    cases_run, seeds_run = cases, list(seeds_asked)
    cases = shown
    started = time.monotonic()
    # Seed-major: a measurement stopped early (a deadline, a bound) leaves whole seeds.
    for seed in seeds_run:
        for case in cases_run:
            for role in ("defect", "control"):
                if deadline is not None and datetime.now(UTC) >= deadline:
                    print(f"== deadline {deadline:%H:%M} UTC reached: {case['name']} {role} "
                          f"seed {seed} and later runs not started", flush=True)
                    return _write(cases, seeds, results, time.monotonic() - started, soak_s,
                                  stopped=deadline.isoformat(timespec="minutes"))
                print(f"== {case['name']} {role} ({case[f'{role}_workload']['name']}) "
                      f"seed {seed}", flush=True)
                res = run_one(case, role, seed, soak_s)
                print(f"   rc {res['rc']}  found={res['found']}  {res['wall_s']} s  "
                      f"{_fired(res)}"
                      f"  host {res['host']}", flush=True)
                results.append(res)
                _write(cases, seeds, results, time.monotonic() - started, soak_s)
    return _write(cases, seeds, results, time.monotonic() - started, soak_s)


def _fired(run: dict[str, Any]) -> list[str]:
    return run["findings"].get("failed_verdicts") or run["findings"].get("fired") or []


def _summary(cases: list[dict[str, Any]], seeds: list[int], results: list[dict[str, Any]]):
    rows = []
    for case in cases:
        mine = [r for r in results if r["case"] == case["name"]]
        errors = [r for r in mine if r.get("harness_error")]
        d = [r for r in mine if r["role"] == "defect" and not r.get("harness_error")]
        c = [r for r in mine if r["role"] == "control" and not r.get("harness_error")]
        fired_d = sorted({v for r in d for v in _fired(r)})
        fired_c = sorted({v for r in c for v in _fired(r)})
        expect = case.get("expect_verdicts") or case.get("expect_detectors") or ["any"]
        rows.append({
            "case": case["name"], "project": case["project"], "issue": case["issue"],
            "defect": case["defect"], "mode": case["mode"],
            "defect_workload": case["defect_workload"],
            "control_workload": case["control_workload"],
            "expected": {"defect": "fail (" + ", ".join(expect) + ")", "control": "pass"},
            "defect_found_seeds": [r["seed"] for r in d if r["found"]],
            "defect_missed_seeds": [r["seed"] for r in d if not r["found"]],
            "control_seeds": [r["seed"] for r in c],
            "control_false_alarm_seeds": [r["seed"] for r in c if r["found"]],
            "defect_verdicts": fired_d,
            "control_verdicts": fired_c,
            "wall_s": round(sum(r["wall_s"] for r in mine), 1),
            "runs": len(mine),
            "harness_errors": [f"{r['role']} seed {r['seed']}" for r in errors],
            "note": case.get("note", ""),
        })
    per_seed = {}
    for seed in seeds:
        ran = [row for row in rows if any(r["case"] == row["case"] and r["seed"] == seed
                                          and r["role"] == "defect"
                                          and not r.get("harness_error") for r in results)]
        found = [row for row in ran if seed in row["defect_found_seeds"]]
        per_seed[str(seed)] = {"cases": len(ran), "found": len(found),
                               "rate": round(len(found) / len(ran), 3) if ran else None}
    false_alarms = sum(len(row["control_false_alarm_seeds"]) for row in rows)
    control_runs = sum(1 for r in results if r["role"] == "control"
                       and not r.get("harness_error"))
    return rows, per_seed, false_alarms, control_runs


def _write(cases, seeds, results, wall_s, soak_s, stopped: str | None = None) -> dict[str, Any]:
    rows, per_seed, false_alarms, control_runs = _summary(cases, seeds, results)
    target = all(v["rate"] is not None and v["rate"] >= 0.9 for v in per_seed.values())
    doc = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(ROOT) or "",
        "host": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "seeds": seeds, "soak_s": soak_s, "wall_s": round(wall_s, 1),
        "stopped_at_deadline": stopped,
        "command": "python corpus/run.py " + " ".join(sys.argv[1:]),
        "detection_per_seed": per_seed,
        "detection_target_met": target and false_alarms == 0,
        "false_alarms": false_alarms, "control_runs": control_runs,
        "cases": rows, "runs": results,
    }
    REPORTS.mkdir(exist_ok=True)
    tmp = REPORTS / f"{NAME}.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, REPORTS / f"{NAME}.json")
    (REPORTS / f"{NAME}.md").write_text(render(doc))
    return doc


def _seeds_text(seeds: list[int]) -> str:
    return ",".join(str(s) for s in seeds) or "-"


def _verdicts_text(names: list[str], expected_pass: bool) -> str:
    return "fail (" + ", ".join(names) + ")" if names else ("pass" if expected_pass else "-")


def render(doc: dict[str, Any]) -> str:
    stopped = doc.get("stopped_at_deadline")
    lines = [
        "# preflight corpus: real defects and their controls",
        "",
        f"Generated {doc['generated']} at commit `{doc['git_commit'][:12]}`; seeds "
        f"{_seeds_text(doc['seeds'])}; soak {doc['soak_s']:.0f} s per run; wall "
        f"{doc['wall_s']:.0f} s; host {doc['host']['cpus']} CPUs. Command: `make corpus` "
        f"(`{doc.get('command') or 'python corpus/run.py run --seeds 0,1,2'}`).",
        "",
    ]
    if stopped:
        lines += [f"**Stopped at the deadline {stopped}**: the runs not started are not in the "
                  "tables (see seeds tried).", ""]
    lines += ["## Cases", "",
              "| case | project, issue | mode | defect workload | control workload |",
              "|---|---|---|---|---|"]
    for row in doc["cases"]:
        d, c = row["defect_workload"], row["control_workload"]
        lines.append(f"| {row['case']} | {row['project']} {row['issue']} | {row['mode']} | "
                     f"`{d['name']}`: {d.get('versions', '')} | "
                     f"`{c['name']}`: {c.get('versions', '')} |")
    lines += ["", "## Verdicts", "",
              "| case | expected (defect / control) | reached on defect | reached on control "
              "| seeds tried | defect found on | missed on | control false alarms | wall s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in doc["cases"]:
        tried = sorted(set(row["defect_found_seeds"]) | set(row["defect_missed_seeds"]))
        lines.append(
            f"| {row['case']} | {row['expected']['defect']} / {row['expected']['control']} | "
            f"{_verdicts_text(row['defect_verdicts'], False)} | "
            f"{_verdicts_text(row['control_verdicts'], bool(row.get('control_seeds')))} | "
            f"{_seeds_text(tried)} | {_seeds_text(row['defect_found_seeds'])} | "
            f"{_seeds_text(row['defect_missed_seeds'])} | "
            f"{_seeds_text(row['control_false_alarm_seeds'])} | {row['wall_s']:.0f} |")
    lines += ["", "Detection per seed (cases whose defect was found / cases run):", ""]
    for seed, v in doc["detection_per_seed"].items():
        lines.append(f"- seed {seed}: {v['found']}/{v['cases']} ({v['rate']})")
    lines += ["", f"False alarms on controls: {doc['false_alarms']} of {doc['control_runs']} "
              "control runs.", "",
              f"Target (>= 90% per seed, 0 false alarms) met: {doc['detection_target_met']}.", ""]
    misses = [r for r in doc["runs"]
              if (r["role"] == "defect") != r["found"] and not r.get("harness_error")]
    if misses:
        lines += ["## Misses and false alarms", ""]
        for r in misses:
            what = "missed" if r["role"] == "defect" else "false alarm"
            detail = _fired(r)
            host = r.get("host") or {}
            lines.append(f"- {r['case']} {r['workload']} seed {r['seed']}: {what}; rc {r['rc']}; "
                         f"verdicts {detail}; host during the run: load1 "
                         f"{host.get('load1_before')} -> {host.get('load1_after')}, CPUs busy "
                         f"{host.get('cpu_busy_share')} of {host.get('cpus')}")
        lines.append("")
    errors = [r for r in doc["runs"] if r.get("harness_error")]
    if errors:
        lines += ["## Harness errors (not verdicts; not counted)", ""]
        for r in errors:
            last = r["tail"].strip().splitlines()[-1] if r["tail"].strip() else ""
            lines.append(f"- {r['case']} {r['workload']} seed {r['seed']}: preflight crashed: "
                         f"`{last[:160]}`")
        lines.append("")
    notes = [r for r in doc["cases"] if r["note"]]
    if notes:
        lines += ["## Notes", ""] + [f"- {r['case']}: {r['note']}" for r in notes] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("venvs", nargs="*")
    r = sub.add_parser("run")
    r.add_argument("--seeds", default="0,1,2")
    r.add_argument("--cases", default="")
    r.add_argument("--soak-s", type=float, default=40.0)
    r.add_argument("--merge", action="store_true",
                   help="keep reports/corpus.json's runs of the cases not run now")
    r.add_argument("--deadline", default="",
                   help="HH:MM (UTC, today): start no run after it; the report says so")
    t = sub.add_parser("table")
    for q in (r, t):
        q.add_argument("--name", default="corpus",
                       help="reports/NAME.json and reports/NAME.md (default corpus)")
    args = p.parse_args(argv)
    global NAME
    NAME = getattr(args, "name", NAME)
    if args.cmd == "setup":
        return setup(args.venvs or None)
    if args.cmd == "table":
        doc = json.loads((REPORTS / f"{NAME}.json").read_text())
        for run in doc["runs"]:  # soak findings re-read with this version's parser
            report = REPORTS / NAME / run["case"] / run["workload"] / f"seed{run['seed']}"
            if "fired" in run["findings"] and (report / "report").is_dir():
                run["findings"] = _soak_findings(report / "report")
        cases = [c for c in load_cases(None) if c["name"] in {r["case"] for r in doc["runs"]}]
        rows, _, _, _ = _summary(cases, doc["seeds"], doc["runs"])
        doc["cases"] = rows
        (REPORTS / f"{NAME}.json").write_text(json.dumps(doc, indent=1))
        (REPORTS / f"{NAME}.md").write_text(render(doc))
        return 0
    if not PREFLIGHT.exists():
        raise SystemExit(f"{PREFLIGHT} missing: run make venv first")
    cases = load_cases([c for c in args.cases.split(",") if c] or None)
    seeds = [int(x) for x in args.seeds.split(",") if x != ""]
    deadline = None
    if args.deadline:
        hh, mm = (int(x) for x in args.deadline.split(":"))
        deadline = datetime.now(UTC).replace(hour=hh, minute=mm, second=0, microsecond=0)
    doc = measure(cases, seeds, args.soak_s, args.merge, deadline)
    print((REPORTS / f"{NAME}.md").read_text())
    return 0 if doc["detection_target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
