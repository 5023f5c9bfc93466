"""The alert rules: one definition, two forms.

Each rule has a PromQL expression (rendered into alerts/preflight.rules.yml for a production
Prometheus) and a pure Python condition over recorded snapshots (what the harness evaluates
during runs). Both are built from the same `Thresholds`, and each condition is the
expression read literally, one snapshot at a time, with the scrape time as PromQL's time():

  loss_explosion   preflight_loss > k * preflight_loss_median and preflight_loss_median > 0
  nonfinite        increase(preflight_nonfinite_total[W]) > 0
  memory           preflight_rss_bytes > f * preflight_memory_budget_bytes
  stall            time() - preflight_progress_last_advance_timestamp_seconds > S
                   and preflight_progress_done < preflight_progress_planned and preflight_up == 1
  checkpoint_stale time() - preflight_checkpoint_last_success_timestamp_seconds > T
                   and preflight_up == 1

The running median is computed in the job (telemetry), over its last 100 finite losses, so
the explosion rule needs no range query. Ages are built on timestamps the job exports, so a
job frozen solid (no scrape changes at all) still ages, and a data-loader sleep is a stall.

Each rendered rule carries `for:` (the profile's for_s: a condition must hold that long, so
one odd scrape does not page) and a `runbook_url` annotation pointing at its section of
docs/runbooks.md. The PromQL itself is proven by `promtool test rules alerts/tests/*.yml`
(suites/preflight/alerts/test_promtool.py), this module's conditions by suites/preflight/alerts.

Regenerate the shipped file after changing anything here:
    .venv/bin/python -m preflight.alerts > alerts/preflight.rules.yml
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from preflight.alerts.snapshot import Snapshot

# The exposition contract (examples/src/preflight_examples/telemetry/names.py); read from the
# text, never imported.
UP = "preflight_up"
DONE = "preflight_progress_done"
PLANNED = "preflight_progress_planned"
LAST_ADVANCE = "preflight_progress_last_advance_timestamp_seconds"
LOSS = "preflight_loss"
LOSS_MEDIAN = "preflight_loss_median"
NONFINITE_TOTAL = "preflight_nonfinite_total"
RSS = "preflight_rss_bytes"
MEMORY_BUDGET = "preflight_memory_budget_bytes"
CHECKPOINT_LAST = "preflight_checkpoint_last_success_timestamp_seconds"
METRICS_USED = frozenset(
    {
        UP,
        DONE,
        PLANNED,
        LAST_ADVANCE,
        LOSS,
        LOSS_MEDIAN,
        NONFINITE_TOTAL,
        RSS,
        MEMORY_BUDGET,
        CHECKPOINT_LAST,
    }
)
GROUP_NAME = "preflight"
RULES_FILE = "alerts/preflight.rules.yml"
# Where the runbook anchors resolve. The default is the file's path in this repository;
# `python -m preflight.alerts production --runbook-base URL` renders links to where the
# docs are hosted (URL of docs/runbooks.md itself, anchors are appended).
RUNBOOK_BASE = "docs/runbooks.md"


@dataclass(frozen=True)
class Thresholds:
    """The numbers in the rules. Named profiles below; tiers pick one (`thresholds_for`)."""

    loss_factor: float  # k: loss above k times its running median
    memory_fraction: float  # f: RSS above this fraction of the job's memory budget
    stall_s: float  # S: no progress for this long
    checkpoint_age_s: float  # T: last successful checkpoint older than this
    nonfinite_window_s: float  # W: a non-finite value within this window
    for_s: float = 0.0  # how long a condition must hold before the alert fires

    def __post_init__(self) -> None:
        assert self.loss_factor > 1, self.loss_factor
        assert 0 < self.memory_fraction <= 1, self.memory_fraction
        assert self.stall_s > 0 and self.checkpoint_age_s > 0, self
        assert self.nonfinite_window_s > 0 and self.for_s >= 0, self

    def dilated(self, factor: float) -> Thresholds:
        """Every duration ``factor`` times longer: the same rules on a machine whose seconds
        run ``factor`` times slower for the job (preflight.host.load.dilation). Ratios stay."""
        assert factor >= 1.0, factor
        return replace(
            self,
            stall_s=self.stall_s * factor,
            checkpoint_age_s=self.checkpoint_age_s * factor,
            nonfinite_window_s=self.nonfinite_window_s * factor,
            for_s=self.for_s * factor,
        )


# small: the harness's seconds-long fixture runs; the data-stall fixture sleeps between
# stall_s and checkpoint_age_s, so it trips the stall rule and not the checkpoint rule.
# production: Prometheus scrapes every 15 s; a condition must hold for a minute (four
# evaluations) before it pages, so NaN, memory and loss fire within about 90 s (stall and
# checkpoint: S and T plus that). for_s stays 0 at small: runs there last seconds.
PROFILES = {
    "small": Thresholds(
        loss_factor=4.0,
        memory_fraction=0.9,
        stall_s=1.5,
        checkpoint_age_s=3.5,
        nonfinite_window_s=10.0,
    ),
    "production": Thresholds(
        loss_factor=4.0,
        memory_fraction=0.9,
        stall_s=120.0,
        checkpoint_age_s=1800.0,
        nonfinite_window_s=300.0,
        for_s=60.0,
    ),
}


def thresholds_for(tier: str) -> Thresholds:
    """small runs for seconds and gets the fast profile; 10pct and production rehearse
    the real thing and get the production numbers."""
    return PROFILES["small" if tier == "small" else "production"]


# ---------------------------------------------------------------------------- conditions

Condition = Callable[[Sequence[Snapshot], int, Thresholds], bool]


def _values(snap: Snapshot, *metrics: str) -> list[float] | None:
    found = [snap.get(m) for m in metrics]
    return None if any(v is None for v in found) else [float(v) for v in found]  # type: ignore[arg-type]


def loss_explosion(history: Sequence[Snapshot], i: int, th: Thresholds) -> bool:
    got = _values(history[i], LOSS, LOSS_MEDIAN)
    # NaN compares false, as in PromQL: a NaN loss is the nonfinite rule's, not this one's.
    return got is not None and got[1] > 0 and got[0] > th.loss_factor * got[1]


def counter_increased(history: Sequence[Snapshot], i: int, metric: str, window_s: float) -> bool:
    """increase(metric[window]) > 0 at snapshot i: some step between two samples inside
    (t_i - window, t_i] went up, a counter reset (drop) counting as growth from zero."""
    t_from = history[i].t_s - window_s
    j = i
    while j > 0 and history[j - 1].t_s > t_from:
        now, before = history[j].get(metric), history[j - 1].get(metric)
        if now is not None and before is not None and (now > before or (now < before and now > 0)):
            return True
        j -= 1
    return False


def nonfinite(history: Sequence[Snapshot], i: int, th: Thresholds) -> bool:
    return counter_increased(history, i, NONFINITE_TOTAL, th.nonfinite_window_s)


def memory(history: Sequence[Snapshot], i: int, th: Thresholds) -> bool:
    got = _values(history[i], RSS, MEMORY_BUDGET)
    return got is not None and got[0] > th.memory_fraction * got[1]


def stall(history: Sequence[Snapshot], i: int, th: Thresholds) -> bool:
    snap = history[i]
    got = _values(snap, LAST_ADVANCE, DONE, PLANNED, UP)
    if got is None:
        return False
    last_advance_s, done, planned, up = got
    return snap.t_s - last_advance_s > th.stall_s and done < planned and up == 1


def checkpoint_stale(history: Sequence[Snapshot], i: int, th: Thresholds) -> bool:
    snap = history[i]
    got = _values(snap, CHECKPOINT_LAST, UP)
    return got is not None and snap.t_s - got[0] > th.checkpoint_age_s and got[1] == 1


# ---------------------------------------------------------------------------- rules


def duration(seconds: float) -> str:
    """A Prometheus duration: integer units only ("1.5s" is invalid, "1500ms" is not)."""
    assert seconds >= 0 and math.isfinite(seconds), seconds
    if float(seconds).is_integer():
        whole = int(seconds)
        for unit, size in (("h", 3600), ("m", 60)):
            if whole and whole % size == 0:
                return f"{whole // size}{unit}"
        return f"{whole}s"
    return f"{round(seconds * 1000)}ms"


def _num(value: float) -> str:
    return repr(float(value)).removesuffix(".0")


@dataclass(frozen=True)
class Rule:
    key: str  # the harness's name, used in measurement names: alerts.<key>.*
    alert: str  # the Prometheus alert name
    severity: str
    summary: str
    description: str
    condition: Condition
    expr: Callable[[Thresholds], str]


RULES: tuple[Rule, ...] = (
    Rule(
        "loss_explosion",
        "PreflightLossExplosion",
        "warning",
        "Loss exploded on {{ $labels.workload }} ({{ $labels.run_id }})",
        "Loss is {{ $value }}, above k times its running median (the divergence starts).",
        loss_explosion,
        lambda th: f"{LOSS} > {_num(th.loss_factor)} * {LOSS_MEDIAN} and {LOSS_MEDIAN} > 0",
    ),
    Rule(
        "nonfinite",
        "PreflightNonFinite",
        "critical",
        "NaN/Inf loss or gradient on {{ $labels.workload }} ({{ $labels.run_id }})",
        "{{ $value }} non-finite values lately; the run is skipping steps or about to fail.",
        nonfinite,
        lambda th: f"increase({NONFINITE_TOTAL}[{duration(th.nonfinite_window_s)}]) > 0",
    ),
    Rule(
        "memory",
        "PreflightMemoryHigh",
        "critical",
        "Memory above budget on {{ $labels.workload }} ({{ $labels.run_id }})",
        "Resident memory of the process tree is {{ $value | humanize1024 }}B, above "
        "the fraction of its budget; the OOM killer is next.",
        memory,
        lambda th: f"{RSS} > {_num(th.memory_fraction)} * {MEMORY_BUDGET}",
    ),
    Rule(
        "stall",
        "PreflightStalled",
        "warning",
        "No progress on {{ $labels.workload }} ({{ $labels.run_id }})",
        "No progress for {{ $value | humanizeDuration }} (a data-loading stall, a lock "
        "wait or a hang).",
        stall,
        lambda th: (
            f"(time() - {LAST_ADVANCE} > {_num(th.stall_s)}) and ({DONE} < {PLANNED})"
            f" and ({UP} == 1)"
        ),
    ),
    Rule(
        "checkpoint_stale",
        "PreflightCheckpointStale",
        "warning",
        "Checkpoint too old on {{ $labels.workload }} ({{ $labels.run_id }})",
        "The last successful checkpoint is {{ $value | humanizeDuration }} old; a crash "
        "now loses that much work.",
        checkpoint_stale,
        lambda th: f"(time() - {CHECKPOINT_LAST} > {_num(th.checkpoint_age_s)}) and ({UP} == 1)",
    ),
)
RULE_KEYS = tuple(rule.key for rule in RULES)


def rule(key: str) -> Rule:
    for candidate in RULES:
        if candidate.key == key:
            return candidate
    raise KeyError(f"no alert rule {key!r}; rules: {', '.join(RULE_KEYS)}")


# ---------------------------------------------------------------------------- YAML


def _q(text: str) -> str:
    # JSON strings are YAML double-quoted scalars: no YAML library needed to write them.
    return json.dumps(text)


def runbook_url(alert: str, base: str = RUNBOOK_BASE) -> str:
    """The link to an alert's runbook section: docs/runbooks.md has one `## Alert` heading
    per alert, whose anchor (GitHub, GitLab, mkdocs) is the lowercased name."""
    return f"{base}#{alert.lower()}"


def render_rules_yaml(
    th: Thresholds, rules: Sequence[Rule] = RULES, runbook_base: str = RUNBOOK_BASE
) -> str:
    """The Prometheus alerting-rules file for `th` (pure)."""
    lines = [
        "# Prometheus alerting rules for preflight jobs (datagen, trainer).",
        "# Generated by `python -m preflight.alerts` from src/preflight/alerts/rules.py, which",
        "# also evaluates the same rules during harness runs; edit there, then regenerate.",
        "# Metrics come from the jobs' --metrics-port endpoint or their --metrics-file",
        "# (node_exporter textfile collector). Labels: workload, run_id (and the scrape's job).",
        "# Tested by `promtool test rules alerts/tests/*.yml`.",
        "groups:",
        f"  - name: {_q(GROUP_NAME)}",
        "    rules:",
    ]
    for item in rules:
        lines += [
            f"      - alert: {_q(item.alert)}",
            f"        expr: {_q(item.expr(th))}",
            f"        for: {_q(duration(th.for_s))}",
            "        labels:",
            f"          severity: {_q(item.severity)}",
            f"          preflight_rule: {_q(item.key)}",
            "        annotations:",
            f"          summary: {_q(item.summary)}",
            f"          description: {_q(item.description)}",
            f"          runbook_url: {_q(runbook_url(item.alert, runbook_base))}",
        ]
    return "\n".join(lines) + "\n"


USAGE = f"usage: python -m preflight.alerts [{'|'.join(PROFILES)}] [--runbook-base URL]"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    base = RUNBOOK_BASE
    if "--runbook-base" in args:
        at = args.index("--runbook-base")
        if at + 1 >= len(args):
            print(USAGE, file=sys.stderr)
            return 2
        base = args[at + 1]
        del args[at : at + 2]
    profile = args[0] if args else "production"
    if profile not in PROFILES or len(args) > 1:
        print(USAGE, file=sys.stderr)
        return 2
    sys.stdout.write(render_rules_yaml(PROFILES[profile], runbook_base=base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
