"""`preflight soak WORKLOAD --duration 8h`: run a job for a duration, restarting it fresh
whenever it finishes, sampling throughout; leak, degradation and stall verdicts over the
whole duration; JSON, Markdown, JUnit XML (preflight.reports.junit: a testcase per verdict;
also to ``--junit PATH``) and plots.

The soak checkpoints its own state (elapsed time, iterations, the sampled series) in its
state directory after every slice, so a killed soak continues where it was.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from preflight.analysis import leak_verdict, stall_from_series, throughput_from_series
from preflight.analysis.settings import settings_for
from preflight.durable.atomic import atomic_write
from preflight.durable.errors import EXIT_FAILED, EXIT_OK, BadInputError
from preflight.durable.jsonio import read_json
from preflight.evidence import Row, Status
from preflight.host.rule import disturbed, excused
from preflight.reports import junit
from preflight.workload import Run, load_spec

SLICE_S = 1.0
POLL_S = 0.05
ITERATIONS_MAX = 100_000
DURATION_S_MAX = 14 * 24 * 3600.0
SERIES_LINES_MAX = 2_000_000
STATE_NAME = "state.json"
SERIES_NAME = "series.jsonl"
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """'60s', '30m', '8h', '1.5d' or plain seconds -> seconds (pure)."""
    match = _DURATION_RE.match(text)
    if not match:
        raise BadInputError(f"--duration: {text!r} is not a duration like 60s, 30m or 8h")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if not 0 < seconds <= DURATION_S_MAX:
        raise BadInputError(f"--duration: {text!r} must be > 0 and at most 14 days")
    return seconds


@dataclass
class SoakState:
    workload: str
    scale: str
    duration_s: float
    elapsed_s: float = 0.0
    iterations: list[dict[str, Any]] = field(default_factory=list)
    units_before: int = 0  # units completed by finished iterations

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def load_state(state_dir: Path, workload: str, scale: str, duration_s: float) -> SoakState:
    """Continue a soak of the same workload, scale and duration, or start a new one."""
    path = state_dir / STATE_NAME
    if not path.is_file():
        return SoakState(workload, scale, duration_s)
    raw = read_json(path)
    same = (raw.get("workload"), raw.get("scale"), raw.get("duration_s")) == (
        workload, scale, duration_s,
    )
    if not same:
        raise BadInputError(
            f"{path}: holds a soak of {raw.get('workload')} at {raw.get('scale')} for "
            f"{raw.get('duration_s')} s; use another --state directory or delete it"
        )
    return SoakState(
        workload, scale, duration_s, float(raw.get("elapsed_s", 0.0)),
        list(raw.get("iterations", [])), int(raw.get("units_before", 0)),
    )


def reconcile(state: SoakState, series: list[dict[str, Any]]) -> None:
    """Close an iteration that a killed soak left open, so its samples stay its own."""
    open_rows = [r for r in series if r["iteration"] >= len(state.iterations)]
    if not open_rows:
        return
    units = max((r["progress_done"] or 0 for r in open_rows), default=0)
    state.units_before += units
    state.iterations.append(
        {"returncode": None, "units": units, "duration_s": open_rows[-1]["t_s"],
         "finished": False, "interrupted": True}
    )


def _append_series(path: Path, rows: list[dict[str, Any]]) -> None:
    if rows:
        with open(path, "a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r, allow_nan=False) + "\n" for r in rows)


def read_series(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            if number >= SERIES_LINES_MAX:
                break
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a torn last line from a killed soak
    return rows


def _rows_for(run: Run, state: SoakState, start_s: float, seen: int) -> list[dict[str, Any]]:
    rows = []
    for sample in run.samples[seen:]:
        row = sample.to_json()
        row["iteration"] = len(state.iterations)
        row["t_global_s"] = start_s + sample.t_s
        done = sample.progress_done
        row["units_global"] = None if done is None else state.units_before + done
        rows.append(row)
    return rows


def _wait_slice(run: Run, slice_s: float) -> int | None:
    """Wait up to ``slice_s`` for the job to end without killing it (Run.wait would)."""
    deadline = time.monotonic() + slice_s
    while (code := run.poll()) is None and time.monotonic() < deadline:
        time.sleep(POLL_S)
    return code


def _run_iteration(spec: Any, state: SoakState, state_dir: Path, params: dict, interval_s: float):
    workdir = state_dir / "work"
    shutil.rmtree(workdir, ignore_errors=True)  # every iteration starts the job fresh
    workdir.mkdir(parents=True)
    start_s = state.elapsed_s
    seen = 0
    # A frozen cgroup or a throttled container shows no steal in /proc/stat; the Run's own
    # watch measures the harness frozen too (watch_frozen).
    with Run(spec, workdir, params, sample_interval_s=interval_s,
             log_dir=state_dir / "logs", watch_frozen=True).start() as run:
        slice_start = time.monotonic()
        while True:
            code = _wait_slice(run, SLICE_S)
            now = time.monotonic()
            state.elapsed_s += now - slice_start
            slice_start = now
            rows = _rows_for(run, state, start_s, seen)
            seen += len(rows)
            _append_series(state_dir / SERIES_NAME, rows)
            if run.returncode is not None or state.elapsed_s >= state.duration_s:
                break
            atomic_write(state_dir / STATE_NAME, state.to_json())
        if run.returncode is None:
            code = run.terminate_group()  # the duration ended mid-iteration
        progress = run.progress()
    units = progress[0] if progress else 0
    state.units_before += units
    # What the machine did meanwhile: a wall-clock alarm raised under it is inconclusive.
    host = run.host
    state.iterations.append(
        {"returncode": code, "units": units, "duration_s": run.duration_s,
         "finished": run.returncode is not None and state.elapsed_s < state.duration_s,
         "steal": host.steal, "frozen": host.frozen, "neighbours": host.neighbours}
    )
    atomic_write(state_dir / STATE_NAME, state.to_json())


def soak(spec: Any, state: SoakState, state_dir: Path, params: dict, interval_s: float) -> None:
    while state.elapsed_s < state.duration_s:
        if len(state.iterations) >= ITERATIONS_MAX:
            raise RuntimeError(f"soak: more than {ITERATIONS_MAX} iterations")
        _run_iteration(spec, state, state_dir, params, interval_s)


RESOURCES = ("uss_bytes", "open_files", "threads")  # what a leak grows, per unit of work


def _by_iteration(series: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    runs: dict[int, list[dict[str, Any]]] = {}
    for row in series:
        runs.setdefault(row["iteration"], []).append(row)
    return dict(sorted(runs.items()))


def _within(part: list[dict[str, Any]], settings: Any) -> dict[str, Any]:
    """Throughput inside one run: a slowdown that a restart resets averages out over the
    whole soak, but shows in every run (too few points: inconclusive, which is ok)."""
    known = [r for r in part if r.get("progress_done") is not None]
    t_s = [r["t_s"] for r in known]
    done = [r["progress_done"] for r in known]
    return throughput_from_series(t_s, done, settings.throughput).to_json()


def evaluate(series: list[dict[str, Any]], state: SoakState) -> dict[str, Any]:
    """Pure: the stability experiment's detectors over the soak — per run: memory, open
    files and threads against units of work, and throughput within the run; across runs:
    throughput and stalls over the whole duration; and crashed runs."""
    settings = settings_for(state.scale)
    leaks, within = [], []
    for number, part in _by_iteration(series).items():
        for metric in RESOURCES:
            verdict = leak_verdict(part, metric=metric, tier=state.scale).to_json()
            leaks.append(verdict | {"iteration": number})
        within.append(_within(part, settings) | {"iteration": number})
    known = [r for r in series if r.get("units_global") is not None]
    t_s = [r["t_global_s"] for r in known]
    units = [r["units_global"] for r in known]
    throughput = throughput_from_series(t_s, units, settings.throughput).to_json()
    stall = stall_from_series(t_s, units, settings.stall, observed_s=state.elapsed_s).to_json()
    crashed = [it for it in state.iterations if it["finished"] and it["returncode"] != 0]
    leak_ok = all(v["ok"] for v in leaks)
    taken = _disturbed_iterations(state)
    for verdict in within:  # a run's own slowdown while the machine was taken: unknown
        if (not verdict["ok"] and verdict["iteration"] in taken
                and excused(verdict)):
            verdict["inconclusive"] = True
    within_ok = all(v["ok"] or v.get("inconclusive") for v in within)
    for verdict in (throughput, stall):
        if not verdict["ok"] and taken and excused(verdict):
            verdict["inconclusive"] = True
    timing_ok = all(v["ok"] or v.get("inconclusive") for v in (throughput, stall))
    inconclusive = [v for v in (*within, throughput, stall) if v.get("inconclusive")]
    return {
        "leak": leaks,
        "leak_ok": leak_ok,
        "throughput": throughput,
        "throughput_within": within,
        "throughput_within_ok": within_ok,
        "stall": stall,
        "crashed_iterations": len(crashed),
        "inconclusive": len(inconclusive),
        "host": [{"steal": it.get("steal"), "frozen": it.get("frozen"),
                  "neighbours": it.get("neighbours")} for it in state.iterations],
        "ok": leak_ok and within_ok and timing_ok and not crashed,
    }


def _disturbed_iterations(state: SoakState) -> set[int]:
    """The runs during which the host stole the CPU, froze the harness, or other processes
    used more than half of the machine (preflight.host.rule.disturbed), by iteration
    number (pure)."""
    return {number for number, it in enumerate(state.iterations)
            if disturbed(it.get("steal"), it.get("frozen"), it.get("neighbours"))}


def _failing(verdicts: list[dict[str, Any]]) -> str:
    bad = [v for v in verdicts if not v["ok"]]
    return "; ".join(
        f"run {v['iteration']}: {v.get('metric', 'throughput')}: {v['reason']}" for v in bad
    )


def _case(workload: str, name: str, status: Status, reason: str, replay: str) -> Row:
    return Row(nodeid=f"soak.{workload}::{name}", outcome=status.value, status=status,
               experiment=name, workload=f"soak.{workload}", reason=reason,
               replay=replay if status is Status.FAILED else "")


def _timing_status(verdict: dict[str, Any]) -> Status:
    if verdict.get("inconclusive"):
        return Status.INCONCLUSIVE  # failed while the machine was taken (evaluate)
    return Status.PASSED if verdict["ok"] else Status.FAILED


def junit_rows(workload: str, verdicts: dict[str, Any], replay: str = "") -> list[Row]:
    """One row per soak verdict (pure): leak, throughput within runs and over the duration,
    stall, crashes; a wall-clock one measured while the host took the machine is
    inconclusive (a JUnit skip), as the soak's own exit code counts it."""
    within = verdicts["throughput_within"]
    unsure = [v for v in within if v.get("inconclusive")]
    within_status = (Status.FAILED if not verdicts["throughput_within_ok"] else
                     Status.INCONCLUSIVE if unsure else Status.PASSED)
    within_text = _failing(within) or "steady in every run"
    if within_status is Status.INCONCLUSIVE:
        within_text = "; ".join(f"run {v['iteration']}: {v['reason']}" for v in unsure)
    crashed = verdicts["crashed_iterations"]
    cases = [("no-leak", Status.PASSED if verdicts["leak_ok"] else Status.FAILED,
              _failing(verdicts["leak"]) or "no leak"),
             ("throughput-within-runs", within_status, within_text),
             ("throughput", _timing_status(verdicts["throughput"]),
              verdicts["throughput"]["reason"]),
             ("no-stall", _timing_status(verdicts["stall"]), verdicts["stall"]["reason"]),
             ("no-crash", Status.PASSED if crashed == 0 else Status.FAILED,
              f"{crashed} iteration(s) exited non-zero")]
    return [_case(workload, name, status, text, replay) for name, status, text in cases]


def replay_command(state: SoakState, spec: str | None) -> str:
    argv = ["preflight", "soak", state.workload, "--duration", f"{state.duration_s:g}s",
            "--scale", state.scale]
    return shlex.join(argv + (["--spec", spec] if spec else []))


def write_junit(path: Path, state: SoakState, verdicts: dict[str, Any],
                replay: str = "") -> Path:
    return junit.write_rows(path, "preflight-soak", junit_rows(state.workload, verdicts, replay),
                            {"workload": state.workload, "scale": state.scale,
                             "verdict": "PASS" if verdicts["ok"] else "FAIL"},
                            time_s=state.elapsed_s)


def write_outputs(out_dir: Path, state: SoakState, series: list[dict], verdicts: dict,
                  replay: str = "") -> Path:
    from preflight.reports.plots import render_png

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"soak-{state.workload}"
    columns = {k: [r.get(k) for r in series] for k in ("t_s", "rss_bytes", "uss_bytes")}
    columns["t_s"] = [r["t_global_s"] for r in series]
    columns["progress_done"] = [r.get("units_global") for r in series]
    png = render_png(stem, columns) if series else None
    if png:
        atomic_write(out_dir / f"{stem}.png", png)
    summary = {"soak": state.to_json(), "verdicts": verdicts, "samples": len(series)}
    atomic_write(out_dir / f"{stem}.json", summary)
    write_junit(out_dir / f"{stem}.junit.xml", state, verdicts, replay)
    status = "PASS" if verdicts["ok"] else "FAIL"
    lines = [f"# Soak {state.workload}: {status}", "",
             f"- duration: {state.elapsed_s:.1f} s of {state.duration_s:.0f} s",
             f"- iterations: {len(state.iterations)}, units: {state.units_before}",
             f"- leak (memory, open files, threads per run): "
             f"{'ok' if verdicts['leak_ok'] else 'LEAK: ' + _failing(verdicts['leak'])}",
             "- throughput within runs: " + (
                 "ok" if verdicts["throughput_within_ok"]
                 else _failing(verdicts["throughput_within"])),
             f"- throughput: {verdicts['throughput']['reason']}",
             f"- stall: {verdicts['stall']['reason']}",
             f"- crashed iterations: {verdicts['crashed_iterations']}"]
    if png:
        lines += ["", f"![memory and throughput]({stem}.png)"]
    atomic_write(out_dir / f"{stem}.md", "\n".join(lines) + "\n")
    return out_dir / f"{stem}.json"


def _record_history(reports: Path, state: SoakState, verdicts: dict, report_path: Path) -> None:
    from preflight.history.identity import code_hash, preflight_config_hash
    from preflight.history.store import History

    throughput = verdicts["throughput"]
    metrics = [(f"{state.workload}.throughput_ratio", throughput.get("ratio") or 0.0)]
    metrics += [(f"{state.workload}.leak_bytes_per_unit", v["per_unit"])
                for v in verdicts["leak"] if v["metric"] == "uss_bytes"]
    with History(reports / "history.sqlite") as history:
        history.add(run_id=report_path.parent.name, kind="soak", workload=state.workload,
                    scale=state.scale, code_hash=code_hash(), config_hash=preflight_config_hash(),
                    ready=verdicts["ok"], metrics=metrics, report_path=str(report_path))


SOAK_EPILOG = """\
exit codes:
  0   every verdict passed over the whole duration (leak, slowdown, stall)
  1   a verdict failed (the report names it), or the workload could not run
  2   bad input: unknown workload, malformed --duration or spec

A killed soak continues where it was when run again with the same --state."""


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.description = parser.description or (
        "Run WORKLOAD for a duration, restarting it whenever it finishes; judge leak,\n"
        "slowdown and stall over the whole duration."
    )
    parser.epilog = SOAK_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("workload")
    parser.add_argument("--duration", required=True, help="e.g. 60s, 30m, 8h")
    parser.add_argument("--spec", default=None, help="workloads.toml or pyproject.toml")
    parser.add_argument("--scale", default="small", choices=("small", "10pct", "production"))
    parser.add_argument("--state", type=Path, default=None,
                        help="soak state directory (default reports/soak-WORKLOAD)")
    parser.add_argument("--report", type=Path, default=Path("reports"))
    parser.add_argument("--junit", type=Path, default=None, metavar="PATH",
                        help="also write the JUnit XML here (a testcase per verdict)")
    # Enough points inside each run for its own trends (a small run lasts seconds).
    parser.add_argument("--sample-interval", type=float, default=0.1)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(argparse.ArgumentParser(prog="preflight soak")).parse_args(argv)
    duration_s = parse_duration(args.duration)
    if args.junit is not None:
        junit.check_path(args.junit)
    spec = load_spec(args.workload, args.spec)
    state_dir = (args.state or args.report / f"soak-{args.workload}").absolute()
    state_dir.mkdir(parents=True, exist_ok=True)
    state = load_state(state_dir, args.workload, args.scale, duration_s)
    reconcile(state, read_series(state_dir / SERIES_NAME))
    if state.elapsed_s > 0:
        print(f"soak: continuing at {state.elapsed_s:.1f} s of {duration_s:.0f} s")
    soak(spec, state, state_dir, spec.params(args.scale), args.sample_interval)
    series = read_series(state_dir / SERIES_NAME)
    verdicts = evaluate(series, state)
    run_dir = args.report / time.strftime("soak-%Y%m%dT%H%M%S")
    replay = replay_command(state, args.spec)
    report_path = write_outputs(run_dir, state, series, verdicts, replay)
    if args.junit is not None:
        write_junit(args.junit, state, verdicts, replay)
    _record_history(args.report, state, verdicts, report_path)
    if verdicts.get("inconclusive"):
        print(f"soak {args.workload}: {verdicts['inconclusive']} wall-clock verdict(s) "
              "inconclusive: the machine was taken while they were measured (host per run: "
              f"{verdicts['host']})")
    print(f"soak {args.workload}: {'PASS' if verdicts['ok'] else 'FAIL'} after "
          f"{len(state.iterations)} iteration(s), {state.elapsed_s:.1f} s; report {report_path}")
    return EXIT_OK if verdicts["ok"] else EXIT_FAILED
