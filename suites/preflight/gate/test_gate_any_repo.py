"""`preflight gate` on somebody else's repository: a temporary folder holding only their job
(fixtures/gate_repo/job.py, standard library only) and a pyproject.toml spec. No tests, no
suites, nothing of ours copied. A clean job is READY; each planted defect is NOT READY,
naming the requirement and the replay command. Also: installing preflight changes nothing in
an unrelated project's pytest run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from suites.preflight.helpers import FIXTURES

SOURCE = FIXTURES / "gate_repo"
PREFLIGHT = Path(sys.executable).parent / "preflight"
GATE_TIMEOUT_S = 900.0
DEFECTS = {
    "clean": "",
    "leak": ', "--leak-kb", "256"',
    "inexact": ', "--inexact"',
    "inplace": ', "--inplace"',
}


def make_repo(root: Path, defect: str) -> Path:
    root.mkdir()
    shutil.copy(SOURCE / "job.py", root / "job.py")
    text = (SOURCE / "pyproject.toml.in").read_text().replace(", DEFECT]", DEFECTS[defect] + "]")
    (root / "pyproject.toml").write_text(text)
    for argv in (["init", "-q"], ["add", "."],
                 ["-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "job"]):
        subprocess.run(["git", *argv], cwd=root, check=True, timeout=30)
    return root


def gate(repo: Path) -> tuple[int, str, dict]:
    done = subprocess.run([str(PREFLIGHT), "gate"], cwd=repo, capture_output=True, text=True,
                          timeout=GATE_TIMEOUT_S, check=False)
    readiness = json.loads((repo / "reports" / "latest" / "readiness.json").read_text())
    return done.returncode, done.stdout + done.stderr, readiness


def failed_requirements(readiness: dict) -> set[str]:
    return {r["id"] for r in readiness["verdict"]["results"] if r["status"] == "failed"}


@pytest.mark.long
@pytest.mark.timeout(GATE_TIMEOUT_S + 60)
@pytest.mark.parametrize(("defect", "requirement", "experiment"), [
    ("clean", None, None),
    ("leak", "max_leak_bytes_per_unit", "stability"),
    ("inexact", "min_exact_resume", "faults.kill"),
    ("inplace", None, "faults.kill"),
])
def test_gate_on_a_repository_with_only_a_job_and_its_spec(
    tmp_path: Path, defect: str, requirement: str | None, experiment: str | None
) -> None:
    repo = make_repo(tmp_path / "their-repo", defect)
    code, output, readiness = gate(repo)
    meta = readiness["meta"]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                            text=True, check=True).stdout.strip()
    assert meta["git_commit"] == commit
    info = meta["workloads"]["myjob"]
    assert info["sizes"] == {"steps": 60, "ckpt_every": 10}
    assert {"completion", "stability", "faults.kill"} <= set(info["run"])
    assert "accounting" in info["not_applicable"]  # the spec gives no items command
    rows = {(r["workload"], r["experiment"]): r for r in readiness["experiments"]}
    if defect == "clean":
        assert code == 0, output
        assert "READY" in output and not failed_requirements(readiness)
        return
    assert code == 1, output
    assert "NOT READY" in output
    if requirement is not None:
        assert requirement in failed_requirements(readiness), output
    row = rows[("myjob", experiment)]
    assert row["status"] == "failed", row
    assert row["replay"].startswith("preflight gate") and "--only" in row["replay"]
    assert "replay:" in output


def test_pytest_with_preflight_installed_writes_nothing_in_an_unrelated_project(
    tmp_path: Path,
) -> None:
    project = tmp_path / "unrelated"
    project.mkdir()
    (project / "test_one.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=project, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    left = sorted(p.relative_to(project).as_posix() for p in project.rglob("*")
                  if "__pycache__" not in p.parts)
    assert left == ["test_one.py"]
