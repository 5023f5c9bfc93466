"""The session report: what tests record, how it travels, and how it is written.

Contract (schema "preflight.report/1", read by the gate):

    {"schema", "run_id", "scale", "git_commit", "started_at", "finished_at", "duration_s",
     "exitstatus", "summary": {outcome: count},
     "tests": [{"nodeid", "outcome", "duration_s", "tier", "message",
                "measurements": [{"name", "value", "unit", "threshold", "ok"}],
                "verdicts": [{"name", "kind", "ok", "conclusive", "reason", ...figures}],
                "series": [{"name", "columns": {t_s: [...], progress_done: [...], ...}}],
                "plots": ["relative/path.png", ...]}]}

outcome is one of passed, failed, error, skipped, xfailed, xpassed. A test records through
`Recorder`, which appends ("preflight.<kind>", payload) pairs to the pytest item's
`user_properties`; pytest copies those into every TestReport and pytest-xdist ships them
from the workers to the controller, where `SessionCollector` turns them into test records.
So measurements reach the report whether or not the session runs in parallel.
"""

from __future__ import annotations

import math
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from preflight.reports.session_views import OUTCOMES, render_html, render_markdown

SCHEMA = "preflight.report/1"
PROP_TIER = "preflight.tier"
PROP_MEASUREMENT = "preflight.measurement"
PROP_VERDICT = "preflight.verdict"
PROP_SERIES = "preflight.series"
SERIES_POINTS_MAX = 240  # per series in the report: plots need shape, not every sample
SERIES_COLUMNS = (
    "t_s",
    "progress_done",
    "rss_bytes",
    "uss_bytes",
    "cpu_s",
    "open_files",
    "threads",
    "read_bytes",
    "write_bytes",
    "n_procs",
)
LATEST_LINK = "latest"
GIT_TIMEOUT_S = 5.0
MESSAGE_CHARS_MAX = 2000
RUN_DIR_ATTEMPTS_MAX = 100


class VerdictLike(Protocol):
    @property
    def ok(self) -> bool: ...

    def to_json(self) -> dict[str, Any]: ...


class RunLike(Protocol):
    """What the recorder needs of a preflight.workload.Run."""

    returncode: int | None
    timed_out: bool

    @property
    def samples(self) -> Sequence[Any]: ...

    @property
    def duration_s(self) -> float: ...


# ---------------------------------------------------------------------------- recording


def jsonable(data: Any) -> Any:
    """Plain JSON types all the way down: numpy scalars unwrapped (duck-typed, so this
    module never imports numpy), NaN and infinity become null, str subclasses plain str
    (pytest-xdist's execnet ships only plain types)."""
    if isinstance(data, Mapping):
        return {str(k): jsonable(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [jsonable(v) for v in data]
    if type(data).__module__ == "numpy" and hasattr(data, "item"):
        data = data.item()
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, str):
        return str(data)  # a StrEnum (preflight.evidence.Status) travels as its plain value
    if data is None or isinstance(data, bool | int):
        return data
    if isinstance(data, Iterable):
        return [jsonable(v) for v in data]
    return str(data)



class Recorder:
    """Records measurements, verdicts and series for one test (the `preflight_record`
    fixture). Values must be JSON-able; numpy scalars and non-finite floats are cleaned."""

    def __init__(self, user_properties: list[tuple[str, object]]) -> None:
        self._props = user_properties

    def __call__(
        self,
        name: str,
        value: object,
        *,
        unit: str = "",
        threshold: float | None = None,
        ok: bool | None = None,
    ) -> None:
        payload = {"name": name, "value": value, "unit": unit, "threshold": threshold, "ok": ok}
        self._props.append((PROP_MEASUREMENT, jsonable(payload)))

    def verdict(self, name: str, verdict: VerdictLike) -> None:
        payload = {"name": name, **verdict.to_json(), "ok": bool(verdict.ok)}
        self._props.append((PROP_VERDICT, jsonable(payload)))

    def series(self, name: str, samples: Sequence[Any]) -> None:
        rows = downsample(list(samples), SERIES_POINTS_MAX)
        columns = {c: [_get(s, c) for s in rows] for c in SERIES_COLUMNS}
        self._props.append((PROP_SERIES, jsonable({"name": name, "columns": columns})))

    def run(self, name: str, run: RunLike) -> None:
        """The standard figures of a finished Run, plus its series for the plots."""
        samples = run.samples
        self(f"{name}.duration_s", run.duration_s, unit="s")
        self(f"{name}.exit_code", run.returncode, ok=run.returncode == 0 and not run.timed_out)
        steal = getattr(run, "host_steal_fraction", None)
        if steal is not None:  # the host's share of the CPU: a wall-clock figure's context
            self(f"{name}.host_steal_fraction", round(steal, 4), unit="fraction")
        for column, unit in (
            ("rss_bytes", "bytes"),
            ("uss_bytes", "bytes"),
            ("open_files", "fds"),
            ("threads", "threads"),
        ):
            peak = max((_get(s, column) or 0 for s in samples), default=None)
            self(f"{name}.{column}_max", peak, unit=unit)
        if samples:
            self.series(name, samples)


def _get(sample: Any, name: str) -> Any:
    return sample.get(name) if isinstance(sample, Mapping) else getattr(sample, name, None)


def downsample(rows: list[Any], points_max: int) -> list[Any]:
    """Evenly spaced rows, always keeping the first and the last."""
    if len(rows) <= points_max:
        return rows
    step = (len(rows) - 1) / (points_max - 1)
    return [rows[round(i * step)] for i in range(points_max)]


# ---------------------------------------------------------------------------- collecting


@dataclass
class TestRecord:
    nodeid: str
    phases: dict[str, str] = field(default_factory=dict)  # when -> outcome
    duration_s: float = 0.0
    properties: list[tuple[str, Any]] = field(default_factory=list)
    message: str = ""
    xfail: bool = False

    def outcome(self) -> str:
        if any(self.phases.get(w) == "failed" for w in ("setup", "teardown")):
            return "error"
        call = self.phases.get("call")
        if self.xfail:
            return "xfailed" if call in (None, "skipped") else "xpassed"
        if call == "failed":
            return "failed"
        if "skipped" in self.phases.values():
            return "skipped"
        return "passed" if call == "passed" else "error"

    def to_json(self) -> dict[str, Any]:
        def payloads(kind: str) -> list[Any]:
            return [value for key, value in self.properties if key == kind]

        tiers = payloads(PROP_TIER)
        return {
            "nodeid": self.nodeid,
            "outcome": self.outcome(),
            "duration_s": round(self.duration_s, 6),
            "tier": tiers[-1] if tiers else None,
            "message": self.message,
            "measurements": payloads(PROP_MEASUREMENT),
            "verdicts": payloads(PROP_VERDICT),
            "series": payloads(PROP_SERIES),
            "plots": [],
        }


class SessionCollector:
    """Accumulates test reports on the controller (or the only process without xdist)."""

    def __init__(self, scale: str, started_at: datetime | None = None) -> None:
        self.scale = scale
        self.started_at = started_at or datetime.now(UTC)
        self.run_id = run_id_for(self.started_at)
        self.tests: dict[str, TestRecord] = {}

    def add(
        self,
        nodeid: str,
        when: str,
        outcome: str,
        duration_s: float,
        user_properties: Sequence[tuple[str, Any]],
        *,
        message: str = "",
        xfail: bool = False,
    ) -> None:
        record = self.tests.setdefault(nodeid, TestRecord(nodeid))
        record.phases[when] = outcome
        record.duration_s += duration_s
        # Every phase carries the item's properties so far; the latest is the fullest.
        record.properties = [p for p in user_properties if str(p[0]).startswith("preflight.")]
        record.xfail = record.xfail or xfail
        if message and not record.message:
            record.message = message[:MESSAGE_CHARS_MAX]

    def build(
        self, *, exitstatus: int, git_commit: str | None, finished_at: datetime | None = None
    ) -> dict[str, Any]:
        finished = finished_at or datetime.now(UTC)
        tests = [record.to_json() for record in self.tests.values()]
        summary = {o: 0 for o in OUTCOMES}
        for test in tests:
            summary[test["outcome"]] += 1
        return {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "scale": self.scale,
            "git_commit": git_commit,
            "started_at": self.started_at.isoformat(timespec="milliseconds"),
            "finished_at": finished.isoformat(timespec="milliseconds"),
            "duration_s": round((finished - self.started_at).total_seconds(), 3),
            "exitstatus": int(exitstatus),
            "summary": summary,
            "tests": tests,
        }


def run_id_for(moment: datetime) -> str:
    """ISO-8601 basic format in UTC, to the millisecond: sortable and path-safe."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y%m%dT%H%M%S}.{utc.microsecond // 1000:03d}Z"


def git_commit(cwd: str | os.PathLike[str]) -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


# ---------------------------------------------------------------------------- rendering


def _new_run_dir(reports_dir: Path, run_id: str) -> Path:
    for attempt in range(RUN_DIR_ATTEMPTS_MAX):
        candidate = reports_dir / (run_id if attempt == 0 else f"{run_id}-{attempt + 1}")
        try:
            candidate.mkdir(parents=True)
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"{reports_dir}: {RUN_DIR_ATTEMPTS_MAX} report directories for {run_id}")


def point_latest(reports_dir: Path, run_dir: Path) -> None:
    """Swap reports/latest atomically: a new symlink under a temp name, then rename."""
    link = reports_dir / LATEST_LINK
    temp = reports_dir / f".{LATEST_LINK}.tmp-{os.getpid()}"
    if temp.is_symlink():
        temp.unlink()
    os.symlink(run_dir.name, temp)
    os.replace(temp, link)


def write_report(report: dict[str, Any], reports_dir: str | os.PathLike[str]) -> Path:
    """Write report.json, report.md, report.html and the plots into a new
    reports_dir/<run id>/, atomically file by file, then point reports_dir/latest at it."""
    from preflight.durable import atomic_write
    from preflight.reports import plots

    root = Path(reports_dir)
    run_dir = _new_run_dir(root, report["run_id"])
    report = {**report, "run_id": run_dir.name}
    budget = [plots.PLOTS_MAX]
    for index, test in enumerate(report["tests"]):
        test["plots"] = plots.plot_test(test, run_dir, index, budget)
    atomic_write(run_dir / "report.json", jsonable(report))
    atomic_write(run_dir / "report.md", render_markdown(report))
    atomic_write(run_dir / "report.html", render_html(report))
    point_latest(root, run_dir)
    return run_dir


def rewrite_views(run_dir: str | os.PathLike[str]) -> None:
    """Re-render report.md and report.html from a run's report.json (plots untouched)."""
    from preflight.durable import atomic_write, read_json

    path = Path(run_dir)
    report = read_json(path / "report.json")
    atomic_write(path / "report.md", render_markdown(report))
    atomic_write(path / "report.html", render_html(report))
