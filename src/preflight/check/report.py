"""The check report: one row per experiment, as JSON, Markdown and HTML (pure builders)."""

from __future__ import annotations

import html
import shlex
from dataclasses import dataclass, field
from typing import Any

from preflight.check.drive.schedule import FaultExperiment
from preflight.check.history import FaultHistory, Reference
from preflight.check.verdicts import FAIL, PASS, SKIP, CheckVerdict, lost_work_per_fault
from preflight.host import rule as hostrule

DETAIL_CHARS = 800  # BatteryRow.detail: the failed verdicts, cut to this length


@dataclass(frozen=True)
class BatteryRow:
    """One judged experiment as a caller of the battery needs it (the gate's fault
    experiment): typed and frozen, nothing to unpick (CheckRow.summary)."""

    id: str
    status: str  # PASS | FAIL | SILENT-CORRUPTION | SKIP (CheckRow.status)
    detail: str  # the failed verdicts, named
    replay: str
    lost: tuple[int, ...]  # units lost per fault, for rows without corruption
    exact: bool | None  # None: the row judged no exact resume


@dataclass(frozen=True)
class CheckRow:
    experiment: FaultExperiment
    history: FaultHistory
    verdicts: tuple[CheckVerdict, ...]
    replay: str

    @property
    def status(self) -> str:
        if any(v.critical for v in self.verdicts):
            return "SILENT-CORRUPTION"
        if any(v.status == FAIL for v in self.verdicts):
            return "FAIL"
        if all(v.status != PASS for v in self.verdicts):
            return "SKIP"
        return "PASS"

    @property
    def failed(self) -> bool:
        return self.status in ("FAIL", "SILENT-CORRUPTION")

    def lost_work(self) -> str:
        if self.history.corruptions:
            return "—"  # a damaged checkpoint may rightly force a restart from scratch
        losses = lost_work_per_fault(self.history)
        return ", ".join("?" if lost is None else str(lost) for _, lost in losses) or "—"

    def summary(self) -> BatteryRow:
        exact = [v for v in self.verdicts if v.name == "exact" and v.status != SKIP]
        lost = (
            ()
            if self.history.corruptions
            else tuple(lost for _, lost in lost_work_per_fault(self.history) if lost is not None)
        )
        detail = ", ".join(f"{v.name}: {v.detail}" for v in self.verdicts if v.failed)
        return BatteryRow(
            self.experiment.id,
            self.status,
            detail[:DETAIL_CHARS],
            self.replay,
            lost,
            all(v.status == PASS for v in exact) if exact else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.experiment.id,
            "fault": self.experiment.kind,
            "status": self.status,
            "seed": self.history.seed,
            "schedule": self.experiment.schedule,
            "verdicts": [v.to_json() for v in self.verdicts],
            "lost_work": []
            if self.history.corruptions
            else [lost for _, lost in lost_work_per_fault(self.history)],
            "injected": self.history.injected,
            "injected_detail": self.history.injected_detail,
            "recover_s": self.history.recover_s,
            "duration_s": self.history.duration_s,
            "replay": self.replay,
            "history": self.history.to_json(),
        }


@dataclass(frozen=True)
class CheckReport:
    workload: str
    meta: dict[str, Any]
    reference: Reference | None
    rows: tuple[CheckRow, ...]
    wall_s: float
    errors: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return (
            not self.errors and self.reference is not None and not any(r.failed for r in self.rows)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "passed": self.passed,
            "experiments": len(self.rows),
            "failed": sum(r.failed for r in self.rows),
            "wall_s": round(self.wall_s, 3),
            "meta": self.meta,
            "errors": list(self.errors),
            "reference": self.reference.to_json() if self.reference else None,
            "rows": [r.to_json() for r in self.rows],
        }


def replay_command(meta: dict[str, Any], kind: str, experiment_id: str | None = None) -> str:
    """The one command that replays a single experiment (same seed, same schedule), or the
    whole battery of ``kind`` (comma-separated kinds) when no experiment is named."""
    argv = ["preflight", "check", str(meta["workload"])]
    if meta.get("spec"):
        argv += ["--spec", str(meta["spec"])]
    argv += ["--scale", str(meta["scale"]), "--faults", kind, "--seed", str(meta["seed"])]
    if meta.get("ckpt_interval") is not None:
        argv += ["--ckpt-interval", str(meta["ckpt_interval"])]
    if experiment_id is not None:
        argv += ["--only", experiment_id]
    return shlex.join(argv)


def _schedule_text(schedule: dict[str, Any]) -> str:
    return "; ".join(f"{k}={v}" for k, v in schedule.items() if k != "fault_exit") or "—"


def _verdict_text(verdicts: tuple[CheckVerdict, ...]) -> str:
    return ", ".join(f"{v.name}:{v.status}" for v in verdicts)


def injected_text(history: FaultHistory) -> str:
    """yes / NO / — (not recorded), with how or why not."""
    if history.skipped:
        return "—"
    if history.injected is None:
        return "—"
    word = "yes" if history.injected else "NO"
    return f"{word}: {history.injected_detail}" if history.injected_detail else word


def host_text(history: FaultHistory) -> str:
    """What the machine took while the experiment ran: the host's steal and the share of the
    time the harness was frozen (a frozen cgroup shows no steal); — when not measured."""
    return hostrule.attempt_host_text(history.host_steal, history.host_frozen)


def _row_cells(row: CheckRow) -> list[str]:
    recover = "—" if row.history.recover_s is None else f"{row.history.recover_s:.2f}"
    return [
        row.experiment.id,
        row.experiment.kind,
        _schedule_text(row.experiment.schedule),
        injected_text(row.history),
        row.status,
        _verdict_text(row.verdicts),
        row.lost_work(),
        recover,
        f"{row.history.duration_s:.2f}",
        host_text(row.history),
    ]


HEADER = (
    "experiment",
    "fault",
    "schedule",
    "injected",
    "result",
    "verdicts",
    "lost work",
    "recover s",
    "s",
    "host",
)


def _failure_lines(row: CheckRow) -> list[str]:
    lines = [f"{v.name}: {v.detail}" for v in row.verdicts if v.status == FAIL]
    lines += [f"note: {n}" for n in row.history.notes]
    return lines


def to_markdown(report: CheckReport) -> str:
    status = "PASS" if report.passed else "FAIL"
    lines = [f"# preflight check {report.workload}: {status}", ""]
    lines += [f"- {k}: {v}" for k, v in report.meta.items()]
    lines += [f"- experiments: {len(report.rows)}, wall: {report.wall_s:.1f} s"]
    if report.reference is not None:
        ref = report.reference
        lines += [
            f"- reference: exit {ref.rc}, {ref.duration_s:.2f} s, fingerprint "
            f"{(ref.fingerprint or '—')[:16]}, checkpoint interval {ref.ckpt_interval} "
            f"({ref.ckpt_interval_source})"
        ]
    lines += [f"- error: {e}" for e in report.errors]
    lines += ["", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in report.rows:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in _row_cells(row)) + " |")
    failed = [r for r in report.rows if r.failed]
    if failed:
        lines += ["", "## Failures", ""]
        for row in failed:
            lines += [f"### {row.experiment.id}", "", f"replay: `{row.replay}`", ""]
            lines += [f"- {line}" for line in _failure_lines(row)]
            lines.append("")
    return "\n".join(lines) + "\n"


def to_html(report: CheckReport) -> str:
    esc = html.escape
    status = "PASS" if report.passed else "FAIL"
    head = "".join(f"<th>{esc(h)}</th>" for h in HEADER)
    body = "".join(
        f"<tr class='{row.status.lower()}'>"
        + "".join(f"<td>{esc(c)}</td>" for c in _row_cells(row))
        + "</tr>"
        for row in report.rows
    )
    info = "".join(f"<li>{esc(str(k))}: {esc(str(v))}</li>" for k, v in report.meta.items())
    errors = "".join(f"<li>{esc(e)}</li>" for e in report.errors)
    failures = "".join(
        f"<h3>{esc(r.experiment.id)}</h3><p>replay: <code>{esc(r.replay)}</code></p><ul>"
        + "".join(f"<li>{esc(line)}</li>" for line in _failure_lines(r))
        + "</ul>"
        for r in report.rows
        if r.failed
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>preflight check {esc(report.workload)}</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #999;padding:4px}"
        "table{border-collapse:collapse}.fail{background:#fdd}.pass{background:#dfd}"
        ".silent-corruption{background:#f99}.skip{background:#eee}</style></head><body>"
        f"<h1>preflight check {esc(report.workload)}: {status}</h1><ul>{info}"
        f"<li>experiments: {len(report.rows)}, wall: {report.wall_s:.1f} s</li>{errors}</ul>"
        f"<table><tr>{head}</tr>{body}</table>"
        + (f"<h2>Failures</h2>{failures}" if failures else "")
        + "</body></html>\n"
    )
