"""The readiness report as HTML: the model (preflight.reports.readiness_model) through a jinja2
template shipped as package data (src/preflight/reports/templates/readiness.html.j2). Autoescaped:
reasons and replay commands are the job's own text and may hold anything."""

from __future__ import annotations

from functools import cache

import jinja2

from preflight.reports.readiness_model import ReadinessModel, fmt

TEMPLATE = "readiness.html.j2"
# CSS class per status: the colours a reader scans the page by.
CSS = {"passed": "pass", "failed": "fail", "error": "fail", "inconclusive": "inconclusive",
       "not_applicable": "na"}


def css(status: str) -> str:
    return CSS.get(status, "na")


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("preflight.reports", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["fmt"] = fmt
    env.filters["css"] = css
    return env


def to_html(model: ReadinessModel) -> str:
    return environment().get_template(TEMPLATE).render(m=model)
