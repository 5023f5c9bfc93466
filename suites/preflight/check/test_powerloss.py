"""The power-loss fault on real jobs: the durable control passes, the three planted
defects fail with the damaged file named (trace mode; needs strace, not root or FUSE)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from preflight.check import command as check
from preflight.check.drive.runner import DriveContext
from preflight.check.history import Reference
from preflight.check.kinds.powerloss import kind as powerloss
from preflight.check.kinds.powerloss import trace as trace

SPEC = Path(__file__).resolve().parents[3] / "fixtures" / "powerloss.toml"
needs_strace = pytest.mark.skipif(
    shutil.which("strace") is None, reason="trace mode needs strace (apt-get install strace)"
)


def run_check(workload: str, tmp_path: Path) -> tuple[int, dict]:
    out = tmp_path / "report"
    argv = [workload, "--spec", str(SPEC), "--faults", "powerloss", "--report", str(out)]
    argv += ["--work-root", str(tmp_path)]
    rc = check.main(argv)
    return rc, json.loads((out / f"check-{workload}.json").read_text())


def failures(report: dict) -> list[str]:
    """Each failed row as one text: its verdicts' details and its notes."""
    texts = []
    for row in report["rows"]:
        if row["status"] in ("FAIL", "SILENT-CORRUPTION"):
            details = [v["detail"] for v in row["verdicts"] if v["status"] == "fail"]
            texts.append(" | ".join(details + list(row["history"]["notes"])))
    return texts


@pytest.mark.long
@needs_strace
def test_durable_control_passes(tmp_path: Path) -> None:
    rc, report = run_check("durable", tmp_path)
    assert rc == 0, failures(report)
    assert all(row["status"] == "PASS" for row in report["rows"])


@pytest.mark.long
@needs_strace
@pytest.mark.parametrize(
    ("workload", "named"),
    [("rename_nofsync", "ckpt.json"), ("nodirsync", "ckpt.json"), ("inplace", "ckpt.json")],
)
def test_planted_defect_fails_naming_the_file(workload: str, named: str, tmp_path: Path) -> None:
    rc, report = run_check(workload, tmp_path)
    assert rc == 1
    texts = failures(report)
    assert texts, "no experiment failed"
    assert all(named in text for text in texts), texts


def test_without_strace_every_experiment_is_skipped_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(trace, "strace_path", lambda: None)
    reference = Reference(rc=0, fingerprint="f", verify_rc=0, duration_s=1.0)
    exp = powerloss.plan(reference, 0)[0]
    ctx = DriveContext(spec=None, params={}, root=tmp_path)  # type: ignore[arg-type]
    history = powerloss.execute(ctx, exp, 0)
    assert "strace is not installed" in history.skipped
