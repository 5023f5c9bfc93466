"""Render the readiness verdict as JSON, Markdown and HTML (pure string builders + writer)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from durable.atomic import atomic_write
from harness.gate.verdict import RequirementResult, Verdict

SECURITY_PREFIX = "security."
BAD_INPUT_FIELDS = {"inputs": 0, "refused": 1, "parser_crashes": 2}
BAD_INPUTS_HEADER = ("parser", "inputs", "refused", "crashes")


@dataclass(frozen=True)
class BadInputRow:
    """One parser's fuzz tally: inputs tried, how many were refused, crashes (must be 0)."""

    parser: str
    inputs: int
    refused: int
    crashes: int


def bad_inputs_rows(report: dict[str, Any]) -> list[BadInputRow]:
    """Sum the ``security.<parser>.{inputs,refused,parser_crashes}`` measurements of a
    session report per parser (pure; tests may record one parser several times)."""
    totals: dict[str, list[int]] = {}
    for test in report.get("tests", []):
        for item in test.get("measurements", []):
            name, value = str(item.get("name", "")), item.get("value")
            if not name.startswith(SECURITY_PREFIX) or isinstance(value, bool):
                continue
            parser, _, field = name[len(SECURITY_PREFIX) :].rpartition(".")
            if parser and field in BAD_INPUT_FIELDS and isinstance(value, int | float):
                totals.setdefault(parser, [0, 0, 0])[BAD_INPUT_FIELDS[field]] += int(value)
    return [BadInputRow(p, *totals[p]) for p in sorted(totals)]


def _bad_input_cells(row: BadInputRow) -> tuple[str, str, str, str]:
    return (row.parser, str(row.inputs), str(row.refused), str(row.crashes))


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.4g}"


def _evidence_text(result: RequirementResult, limit: int = 3) -> str:
    if not result.evidence:
        return result.note or "none"
    names = sorted({e.nodeid.split("::")[-1] for e in result.evidence})
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _rows(verdict: Verdict) -> list[tuple[str, str, str, str, str]]:
    rows = [
        (
            r.description + (f" ({r.tier} tier)" if r.tier else ""),
            _evidence_text(r),
            _fmt(r.measured) + (f" {r.unit}" if r.measured is not None else ""),
            f"{r.comparator} {_fmt(r.threshold)} {r.unit}",
            _status_text(r),
        )
        for r in verdict.results
    ]
    failed = len(verdict.tests_failed)
    rows.insert(
        0,
        (
            "every readiness test passes",
            f"{verdict.tests_total} tests",
            f"{failed} failed",
            "0 failed",
            "PASS" if verdict.tests_total and not failed else "FAIL",
        ),
    )
    return rows


HEADER = ("requirement", "evidence", "measured", "threshold", "result")
EXPERIMENT_HEADER = ("workload", "experiment", "outcome", "why", "replay")
_STATUS_TEXT = {"passed": "PASS", "failed": "FAIL", "inconclusive": "INCONCLUSIVE",
                "not_applicable": "N/A"}


def _status_text(result: RequirementResult) -> str:
    if result.status:
        return _STATUS_TEXT.get(result.status, result.status.upper())
    return "PASS" if result.ok else "FAIL"


def experiment_rows(tests: Sequence[dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """One row per gate experiment: the failures, inconclusives and not-applicables first,
    each with its reason and the command that replays it (pure)."""
    order = {"failed": 0, "error": 0, "inconclusive": 1, "not_applicable": 2}
    rows = []
    for t in sorted(tests, key=lambda t: order.get(str(t.get("outcome")), 3)):
        if "experiment" not in t:
            continue
        outcome = str(t.get("outcome"))
        why = str(t.get("reason") or "")
        if t.get("host") and outcome in ("inconclusive", "failed"):
            why += f" [host: {t['host']}]"
        if t.get("injected") is False and outcome != "not_applicable":
            why += " [fault not injected]"
        replay = str(t.get("replay", "")) if outcome in ("failed", "inconclusive") else ""
        rows.append((str(t.get("workload")), str(t.get("experiment")),
                     _STATUS_TEXT.get(outcome, outcome.upper()), why, replay))
    return rows


def _workload_lines(meta: dict[str, Any]) -> list[str]:
    lines = []
    for name, info in (meta.get("workloads") or {}).items():
        sizes = ", ".join(f"{k}={v}" for k, v in info.get("sizes", {}).items()) or "none"
        lines.append(f"{name} ({info.get('spec')}): sizes {sizes}; experiments run: "
                     f"{', '.join(info.get('run', [])) or 'none'}")
        for exp, why in info.get("not_applicable", {}).items():
            lines.append(f"{name}: {exp} not applicable: {why}")
    return lines


def to_markdown(
    verdict: Verdict, meta: dict[str, Any], bad_inputs: Sequence[BadInputRow] = (),
    tests: Sequence[dict[str, Any]] = (),
) -> str:
    status = "READY" if verdict.ready else "NOT READY"
    lines = [f"# Readiness: {status}", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items() if k != "workloads"]
    workloads = _workload_lines(meta)
    if workloads:
        lines += ["", "## Workloads", ""] + [f"- {w}" for w in workloads]
    lines += ["", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += [
        "| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in _rows(verdict)
    ]
    if bad_inputs:
        lines += ["", "## Bad inputs tried", "", "| " + " | ".join(BAD_INPUTS_HEADER) + " |"]
        lines += ["|" + "---|" * len(BAD_INPUTS_HEADER)]
        lines += ["| " + " | ".join(_bad_input_cells(row)) + " |" for row in bad_inputs]
    rows = experiment_rows(tests)
    if rows:
        lines += ["", "## Experiments", "", "| " + " | ".join(EXPERIMENT_HEADER) + " |",
                  "|" + "---|" * len(EXPERIMENT_HEADER)]
        lines += ["| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in row[:4])
                  + (f" | `{row[4]}` |" if row[4] else " |  |") for row in rows]
    elif verdict.tests_failed:
        lines += ["", "## Failed tests", ""] + [f"- `{n}`" for n in verdict.tests_failed]
    if verdict.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in verdict.notes]
    return "\n".join(lines) + "\n"


def _bad_inputs_html(rows: Sequence[BadInputRow]) -> str:
    if not rows:
        return ""
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in BAD_INPUTS_HEADER)
    body = "".join(
        f"<tr class='{'fail' if row.crashes else 'pass'}'>"
        + "".join(f"<td>{esc(c)}</td>" for c in _bad_input_cells(row))
        + "</tr>"
        for row in rows
    )
    return f"<h2>Bad inputs tried</h2><table><tr>{head}</tr>{body}</table>"


def to_html(
    verdict: Verdict,
    meta: dict[str, Any],
    plots: list[str],
    bad_inputs: Sequence[BadInputRow] = (),
    tests: Sequence[dict[str, Any]] = (),
) -> str:
    status = "READY" if verdict.ready else "NOT READY"
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in HEADER)
    body = "".join(
        f"<tr class='{row[-1].lower()}'>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
        for row in _rows(verdict)
    )
    info = "".join(f"<li>{esc(str(k))}: {esc(str(v))}</li>" for k, v in meta.items()
                   if k != "workloads")
    info += "".join(f"<li>{esc(w)}</li>" for w in _workload_lines(meta))
    exp_head = "".join(f"<th>{esc(h)}</th>" for h in EXPERIMENT_HEADER)
    exp_body = "".join(
        f"<tr class='{row[2].lower().replace('/', '')}'>"
        + "".join(f"<td>{esc(c)}</td>" for c in row[:4]) + f"<td><code>{esc(row[4])}</code></td>"
        + "</tr>" for row in experiment_rows(tests))
    images = "".join(f"<figure><img src='{esc(p)}' alt='{esc(p)}'></figure>" for p in plots)
    failed = "".join(f"<li><code>{esc(n)}</code></li>" for n in verdict.tests_failed)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Readiness</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #999;padding:4px}"
        "table{border-collapse:collapse}.fail{background:#fdd}.pass{background:#dfd}"
        "img{max-width:640px}</style></head><body>"
        f"<h1>Readiness: {status}</h1><ul>{info}</ul>"
        f"<table><tr>{head}</tr>{body}</table>"
        + _bad_inputs_html(bad_inputs)
        + (f"<h2>Experiments</h2><table><tr>{exp_head}</tr>{exp_body}</table>"
           if exp_body else "")
        + (f"<h2>Failed tests</h2><ul>{failed}</ul>" if failed and not exp_body else "")
        + (f"<h2>Plots</h2>{images}" if images else "")
        + "</body></html>\n"
    )


def write_readiness(
    out_dir: Path,
    verdict: Verdict,
    meta: dict[str, Any],
    plots: list[str],
    bad_inputs: Sequence[BadInputRow] = (),
    tests: Sequence[dict[str, Any]] = (),
) -> list[Path]:
    """Write readiness.json/.md/.html atomically into ``out_dir``; returns the paths."""
    paths = [out_dir / "readiness.json", out_dir / "readiness.md", out_dir / "readiness.html"]
    doc: dict[str, Any] = {"meta": meta, "verdict": verdict.to_json()}
    if bad_inputs:
        doc["bad_inputs"] = [asdict(row) for row in bad_inputs]
    if tests:
        doc["experiments"] = [dict(zip(EXPERIMENT_HEADER, row, strict=True))
                              for row in experiment_rows(tests)]
    atomic_write(paths[0], doc)
    atomic_write(paths[1], to_markdown(verdict, meta, bad_inputs, tests))
    atomic_write(paths[2], to_html(verdict, meta, plots, bad_inputs, tests))
    return paths
