"""The session report as Markdown and HTML (pure builders over report.json's content)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _ok_mark(ok: Any) -> str:
    return {True: "ok", False: "FAIL"}.get(ok, "")


def _summary_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{counts[o]} {o}" for o in OUTCOMES if counts.get(o))


def render_markdown(report: Mapping[str, Any]) -> str:
    summary = _summary_text(report["summary"])
    lines = [
        f"# preflight report {report['run_id']}",
        "",
        f"- scale: {report['scale']}",
        f"- git commit: {report['git_commit'] or 'unknown'}",
        f"- started: {report['started_at']}, finished: {report['finished_at']} "
        f"({report['duration_s']} s), exit status {report['exitstatus']}",
        f"- tests: {summary or 'none'}",
        "",
        "| test | tier | outcome | duration (s) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{t['nodeid']}` | {t['tier'] or ''} | {t['outcome']} | {t['duration_s']:.3f} |"
        for t in report["tests"]
    ]
    for test in report["tests"]:
        lines += _markdown_details(test)
    return "\n".join(lines) + "\n"


def _markdown_details(test: Mapping[str, Any]) -> list[str]:
    if not (test["measurements"] or test["verdicts"] or test["plots"]):
        return []
    lines = ["", f"## `{test['nodeid']}`", ""]
    if test["verdicts"]:
        lines += [
            f"- **{v['name']}** ({v.get('kind', '')}): {_ok_mark(v['ok'])} - {v.get('reason', '')}"
            for v in test["verdicts"]
        ]
        lines.append("")
    if test["measurements"]:
        lines += ["| measurement | value | unit | threshold | ok |", "|---|---|---|---|---|"]
        lines += [
            f"| {m['name']} | {_fmt(m['value'])} | {m['unit']} | {_fmt(m['threshold'])} "
            f"| {_ok_mark(m['ok'])} |"
            for m in test["measurements"]
        ]
    if test["plots"]:
        lines.append("")
    lines += [f"![{p}]({p})" for p in test["plots"]]
    return lines


def render_html(report: Mapping[str, Any]) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr class='{esc(t['outcome'])}'><td><code>{esc(t['nodeid'])}</code></td>"
        f"<td>{esc(t['tier'] or '')}</td><td>{esc(t['outcome'])}</td>"
        f"<td>{t['duration_s']:.3f}</td></tr>"
        for t in report["tests"]
    )
    details = "".join(_html_details(t) for t in report["tests"])
    summary = _summary_text(report["summary"])
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>preflight {esc(report['run_id'])}</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px}.failed,.error,.FAIL{color:#b00}"
        "img{max-width:560px;margin:4px}</style></head><body>"
        f"<h1>preflight report {esc(report['run_id'])}</h1>"
        f"<p>scale <b>{esc(report['scale'])}</b>, commit {esc(report['git_commit'] or 'unknown')}"
        f", {esc(report['started_at'])} .. {esc(report['finished_at'])}"
        f" ({report['duration_s']} s), exit status {report['exitstatus']}: {esc(summary)}</p>"
        "<table><tr><th>test</th><th>tier</th><th>outcome</th><th>duration (s)</th></tr>"
        f"{rows}</table>{details}</body></html>\n"
    )


def _html_details(test: Mapping[str, Any]) -> str:
    if not (test["measurements"] or test["verdicts"] or test["plots"]):
        return ""
    esc = html.escape
    verdicts = "".join(
        f"<li class='{_ok_mark(v['ok'])}'><b>{esc(str(v['name']))}</b> "
        f"{esc(_ok_mark(v['ok']))}: {esc(str(v.get('reason', '')))}</li>"
        for v in test["verdicts"]
    )
    measurements = "".join(
        f"<tr class='{_ok_mark(m['ok'])}'><td>{esc(str(m['name']))}</td>"
        f"<td>{esc(_fmt(m['value']))}</td><td>{esc(str(m['unit']))}</td>"
        f"<td>{esc(_fmt(m['threshold']))}</td><td>{_ok_mark(m['ok'])}</td></tr>"
        for m in test["measurements"]
    )
    plots = "".join(f"<img src='{esc(p)}' alt='{esc(p)}'>" for p in test["plots"])
    table = (
        "<table><tr><th>measurement</th><th>value</th><th>unit</th><th>threshold</th>"
        f"<th>ok</th></tr>{measurements}</table>"
        if measurements
        else ""
    )
    return f"<h2><code>{esc(test['nodeid'])}</code></h2><ul>{verdicts}</ul>{table}{plots}"


# ---------------------------------------------------------------------------- writing
