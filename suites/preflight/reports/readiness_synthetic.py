"""A synthetic failing gate for the readiness report's tests: no job runs. The stability
evidence is made of real Sample records judged by the real detectors and saved by the
stability experiment's own evidence_doc; the fault battery's is a check report whose rows
hold real FaultHistory/Attempt records. Deterministic (seeded noise, fixed times)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from preflight.analysis import leak_verdict, stall_verdict, throughput_verdict
from preflight.check.history import FAULT_SIGKILL, Attempt, FaultHistory
from preflight.durable.atomic import atomic_write
from preflight.experiments.stability import evidence_doc
from preflight.gate.policy import Policy, default_policy
from preflight.gate.verdict import Verdict, validate_ready_for_production
from preflight.run.sampler import Sample

WORKLOAD = "myjob"
SPEC = "/src/their-repo/pyproject.toml"
UNITS = 300
LEAK_BYTES_PER_UNIT = 256 * 1024
SAMPLE_S = 0.02


def replay(experiment: str) -> str:
    return (f"preflight gate --spec {SPEC} --workload {WORKLOAD} --scale small "
            f"--only {experiment}")


def samples(units: int = UNITS, leak: float = LEAK_BYTES_PER_UNIT) -> list[Sample]:
    """One sample per unit of work (plus noise): memory grows ``leak`` bytes per unit."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(units + 1):
        uss = int(40e6 + leak * i + rng.normal(0, 2e5))
        out.append(Sample(t_s=round(0.2 + i * SAMPLE_S + rng.uniform(0, 0.004), 4),
                          rss_bytes=uss + 10_000_000, uss_bytes=uss, cpu_s=i * SAMPLE_S,
                          open_files=5, threads=2, read_bytes=0, write_bytes=0,
                          progress_done=i, n_procs=1))
    return out


def stability_doc(series: list[Sample], bounds: dict[str, float]) -> dict[str, Any]:
    verdicts = {
        "memory": leak_verdict(series, metric="uss_bytes", tier="small"),
        "open_files": leak_verdict(series, metric="open_files", tier="small"),
        "throughput": throughput_verdict(series, tier="small"),
        "stall": stall_verdict(series, tier="small", total=UNITS),
    }
    return evidence_doc(series, verdicts, workload=WORKLOAD, tier="small", run=1, attempt=1,
                        total=UNITS, bounds=bounds)


def battery_doc() -> dict[str, Any]:
    """A kill battery: one row resumed inexactly (FAIL), one clean (PASS)."""
    def history(name: str, cut: int) -> dict[str, Any]:
        attempts = (Attempt(0, False, FAULT_SIGKILL, start_done=0, last_done=cut,
                            fault_at_done=cut, duration_s=0.6),
                    Attempt(1, True, start_done=cut - 4, last_done=60, rc=0, duration_s=0.5))
        return FaultHistory(name, "kill", 0, {"at_done": cut}, attempts=attempts).to_json()

    return {"workload": WORKLOAD, "passed": False, "rows": [
        {"id": "kill-time", "fault": "kill", "status": "FAIL", "history": history("kill-time", 31),
         "replay": "preflight check myjob --faults kill --seed 0 --only kill-time"},
        {"id": "kill-progress", "fault": "kill", "status": "PASS",
         "history": history("kill-progress", 22), "replay": "preflight check myjob"},
    ]}


def entry(experiment: str, outcome: str, measurements: dict[str, Any], reason: str = "",
          artifacts: tuple[str, ...] = (), metrics: tuple[str, ...] = (), host: str = ""
          ) -> dict[str, Any]:
    """A gate report entry shaped as preflight.experiments.schedule.entry makes them."""
    return {"nodeid": f"{WORKLOAD}::{experiment}", "workload": WORKLOAD,
            "experiment": experiment, "outcome": outcome, "tier": "small", "reason": reason,
            "host": host, "injected": None, "wall_s": 1.5, "attempts": 1,
            "timing": experiment in ("stability", "overhead"), "metrics": list(metrics),
            "replay": replay(experiment), "artifacts": list(artifacts),
            "measurements": [{"name": f"{WORKLOAD}.{k}", "value": v, "unit": "",
                              "inconclusive": outcome == "inconclusive"}
                             for k, v in measurements.items()]}


LEAK_REASON = ("memory: LEAK: uss_bytes grows 2.6e+05 bytes/unit (95% CI 2.5e+05..2.7e+05, "
               "limit 1024)")
KILL_REASON = ("kill-time: FAIL (exact: fingerprint 62b331921040 != reference 01ad7b424ba5) — "
               "replay: preflight check myjob --faults kill --seed 0 --only kill-time")
SUITE_LONGREPR = "def test_alert():\n>       assert latency < 5\nE       assert 7.5 < 5"


def failing_gate(run_dir: Path, policy: Policy | None = None
                 ) -> tuple[Verdict, list[dict[str, Any]], dict[str, Any]]:
    """Write the evidence into ``run_dir/evidence`` and return (verdict, entries, meta) of a
    gate that fails on a leak, an inexact resume and a project suite test."""
    policy = policy or default_policy()
    bounds = {r.id: policy.threshold(r, "small") for r in policy.requirements}
    (run_dir / "evidence").mkdir(parents=True, exist_ok=True)
    doc = stability_doc(samples(), bounds)
    atomic_write(run_dir / "evidence" / "stability-r1.json", doc)
    atomic_write(run_dir / "evidence" / "check-myjob-kill.json", battery_doc())
    memory = doc["verdicts"]["memory"]
    tests = [
        entry("completion", "passed", {"wall_s": 2.0}),
        entry("faults.kill", "failed", {"kill.experiments": 2, "kill.failed": 1,
                                        "kill.exact": False, "kill.lost_work_intervals": 0.4},
              KILL_REASON, ("evidence/check-myjob-kill.json",), ("exact", "lost_work_intervals")),
        entry("stability", "failed",
              {"leak_bytes_per_unit": memory["per_unit"], "fd_leak_per_unit": 0.0,
               "throughput_ratio": doc["verdicts"]["throughput"]["ratio_last_first"],
               "stall_s_max": doc["verdicts"]["stall"]["longest_stall_s"]},
              LEAK_REASON, ("evidence/stability-r1.json",),
              ("leak_bytes_per_unit", "fd_leak_per_unit", "throughput_ratio", "stall_s_max"),
              host="steal 2%, harness frozen 0%"),
        entry("overhead", "passed", {"checkpoint_overhead": 0.012}, host="steal 1%"),
        entry("accounting", "not_applicable", {}, "readiness.items not given"),
        {"nodeid": "suites/alerts/test_latency.py::test_alert", "outcome": "failed",
         "tier": "small", "longrepr": SUITE_LONGREPR,
         "measurements": [{"name": "alerts.detection_latency_s", "value": 7.5}]},
    ]
    verdict = validate_ready_for_production(
        {"experiments": True, "scale": "small", "tests": tests}, policy)
    meta = {"run_id": "20260101T000000Z-gate-1", "scale": "small", "spec": SPEC,
            "git_commit": "0123456789abcdef0123456789abcdef01234567", "code_hash": "c0de",
            "config_hash": "c0f1",
            "workloads": {WORKLOAD: {"spec": SPEC, "sizes": {"steps": 60, "ckpt_every": 10},
                                     "run": ["completion", "faults.kill", "stability",
                                             "overhead"],
                                     "not_applicable": {"accounting": "readiness.items not "
                                                                      "given"}}}}
    return verdict, tests, meta
