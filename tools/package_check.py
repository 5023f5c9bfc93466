"""Install pytest-preflight as an outside team would, and prove it gates their job.

Builds the wheel (``python -m build --wheel --outdir dist/``), installs it into a clean venv
without torch, checks that none of this repository's other top-level names (nor torch) come
with it and that ``preflight --help`` works, then runs ``preflight gate --scale small`` in a
bare temporary git repository holding only a small standard-library job and its spec: the
clean job must be READY (exit 0), the same job with a planted defect (its resume drops the
accumulated result) NOT READY (exit 1), in the exit code and in the written report alike.
Measures the wheel and the install's size over a bare venv into reports/package.json.
Every step is bounded; any failure names the step and exits 1 (docs/packaging.md).

    .venv/bin/python tools/package_check.py   # or: make package-check
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
REPORT = ROOT / "reports" / "package.json"
WHEEL_GLOB = "pytest_preflight-*.whl"
GOAL_MIB = 150.0  # issue 26: the core install's size over a bare venv
# The names the wheel must not install: our old generic top-level packages, the examples
# distribution, and torch (the harness needs none of them).
ABSENT = ("harness", "trainer", "durable", "datagen", "telemetry", "preflight_examples",
          "torch")
# Bounds: each step has its own, and all of them together TOTAL_BUDGET_S (~1 min on a
# 2-core machine with pip's cache warm; a cold cache downloads ~80 MB from the index).
TOTAL_BUDGET_S = 240.0
BUILD_TIMEOUT_S = 120
VENV_TIMEOUT_S = 60
INSTALL_TIMEOUT_S = 150
PROBE_TIMEOUT_S = 30
GIT_TIMEOUT_S = 30
GATE_TIMEOUT_S = 120
LARGEST_SHOWN = 10
TAIL_CHARS = 4000
MIB = float(1 << 20)
READY_EXIT, NOT_READY_EXIT = 0, 1  # docs/contract.md "Exit codes"
# The planted defect (a resume drops the accumulated result) fails the kill battery's exact
# resume: its kills land after the first checkpoint (seed 0: at progress 15 to 51 of 60).
PLANTED_CAUGHT_BY = frozenset({"faults.kill"})
CLEAN_LINE, DEFECT_LINE = "RESTORE_RESULT = True", "RESTORE_RESULT = False"

JOB = '''\
"""A team's batch job, standard library only, and nothing of preflight: UNITS units of work,
a checkpoint every EVERY units that a rerun on the same --out resumes from.
Exit codes: 0 done, 2 bad input, 3 --out locked by a live run, 4 checkpoint refused
(checksum), 75 stopped on SIGTERM after a clean checkpoint.

    job.py run --out DIR --units N --ckpt-every K | job.py verify DIR | job.py fingerprint DIR
"""
import argparse, fcntl, hashlib, json, os, signal, sys, time
from pathlib import Path

UNIT_S = 0.005
RESTORE_RESULT = True  # False: the planted defect, a resume drops the accumulated result


def write_atomic(path, data):
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def save(path, state):
    body = json.dumps(state, sort_keys=True)
    digest = hashlib.sha256(body.encode()).hexdigest()
    write_atomic(path, json.dumps({"sha256": digest, "state": state}).encode())


def load(path):
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_bytes())
        body = json.dumps(doc["state"], sort_keys=True)
        if hashlib.sha256(body.encode()).hexdigest() == doc["sha256"]:
            return doc["state"]
    except (ValueError, KeyError, TypeError, RecursionError):
        pass
    print(f"refused: {path}: checkpoint unreadable or checksum mismatch", file=sys.stderr)
    sys.exit(4)


def work(acc, unit):
    return int(hashlib.sha256(f"{acc}:{unit}".encode()).hexdigest()[:15], 16)


def run(out, units, every):
    out.mkdir(parents=True, exist_ok=True)
    lock = open(out / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"{out}: locked by another run", file=sys.stderr)
        return 3
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    ckpt = out / "ckpt.json"
    state = load(ckpt) or {"done": 0, "acc": 0}
    done, acc = state["done"], state["acc"]
    if not RESTORE_RESULT:
        acc = 0
    while done < units:
        acc, done = work(acc, done), done + 1
        time.sleep(UNIT_S)
        if done % every == 0 or done == units or stop:
            save(ckpt, {"done": done, "acc": acc})
        write_atomic(out / "progress.json", json.dumps({"done": done, "total": units}).encode())
        if stop and done < units:
            return 75
    write_atomic(out / "result.json", json.dumps({"units": units, "acc": acc}).encode())
    return 0


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    job = sub.add_parser("run")
    job.add_argument("--out", type=Path, required=True)
    job.add_argument("--units", type=int, required=True)
    job.add_argument("--ckpt-every", type=int, required=True)
    for name in ("verify", "fingerprint"):
        sub.add_parser(name).add_argument("out", type=Path)
    args = parser.parse_args()
    if args.cmd == "run":
        return run(args.out, args.units, args.ckpt_every)
    try:
        result = json.loads((args.out / "result.json").read_text())
    except (OSError, ValueError) as exc:
        print(f"{args.out}: no result: {exc}", file=sys.stderr)
        return 1
    if args.cmd == "fingerprint":
        print(result["acc"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''

# The whole spec a team writes (docs/contract.md "Workload spec"). The wall-clock
# experiments (stability, overhead) are left out: this check proves the package, on a
# shared machine; suites/preflight/gate/test_gate_any_repo.py runs them on such a repo.
SPEC = '''\
[project]
name = "someone-elses-batch-job"
version = "0.1.0"

[tool.preflight.workloads.batch]
command = ["{python}", "{spec_dir}/job.py", "run", "--out", "{workdir}",
           "--units", "{units}", "--ckpt-every", "{every}"]
progress = "{workdir}/progress.json"
verify = ["{python}", "{spec_dir}/job.py", "verify", "{workdir}"]
fingerprint = ["{python}", "{spec_dir}/job.py", "fingerprint", "{workdir}"]
checkpoints = ["{workdir}/ckpt.json"]
timeout_s = 60
scale = { small = { units = 60, every = 10 }, production = { units = 100000, every = 1000 } }
[tool.preflight.workloads.batch.readiness]
total_param = "units"
checkpoint_param = "every"
concurrent_exit = 3
faults = ["kill", "corrupt"]
experiments = ["completion", "exclusion", "faults"]
'''


class CheckFailed(Exception):
    """A step of the check failed; the message names the step and what was seen."""


class Budget:
    """The time left to the whole check: every step's timeout is capped by it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def cap(self, step: str, timeout: float) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise CheckFailed(f"{step}: the check's {self.seconds:.0f} s budget is spent")
        return min(timeout, left)


BUDGET = Budget(TOTAL_BUDGET_S)  # main() starts it afresh


def tail(text: str) -> str:
    return text if len(text) <= TAIL_CHARS else "..." + text[-TAIL_CHARS:]


def run(step: str, argv: Sequence[str | Path], *, timeout: float, cwd: Path | None = None,
        expect: int | None = 0) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` bounded by ``timeout``; with ``expect`` set, any other exit fails ``step``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    timeout = BUDGET.cap(step, timeout)
    try:
        done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CheckFailed(f"{step}: timed out after {timeout:.0f} s: {' '.join(map(str, argv))}"
                          ) from exc
    if expect is not None and done.returncode != expect:
        raise CheckFailed(f"{step}: exit {done.returncode} (want {expect}): "
                          f"{' '.join(map(str, argv))}\n{tail(done.stdout + done.stderr)}")
    return done


def build_wheel() -> Path:
    for old in DIST.glob(WHEEL_GLOB):
        old.unlink()
    run("build the wheel", [sys.executable, "-m", "build", "--wheel", "--outdir", DIST, ROOT],
        timeout=BUILD_TIMEOUT_S, cwd=ROOT)
    wheels = sorted(DIST.glob(WHEEL_GLOB))
    if len(wheels) != 1:
        raise CheckFailed(f"build the wheel: want one {WHEEL_GLOB} in {DIST}, found {wheels}")
    return wheels[0]


def make_venv(path: Path) -> Path:
    """A clean venv (no system site-packages, so no torch); returns its python."""
    run(f"create the venv {path}", [sys.executable, "-m", "venv", path], timeout=VENV_TIMEOUT_S)
    return path / "bin" / "python"


def site_packages(python: Path) -> Path:
    done = run("find site-packages", [python, "-c", "import sysconfig; "
               "print(sysconfig.get_paths()['purelib'])"], timeout=PROBE_TIMEOUT_S)
    return Path(done.stdout.strip())


def du_bytes(path: Path) -> int:
    """Bytes on disk under ``path``, folders included, no link followed (``du -s``)."""
    return sum(entry.lstat().st_blocks * 512 for entry in (path, *path.rglob("*")))


def entry_sizes(site: Path) -> dict[str, int]:
    return {entry.name: du_bytes(entry) for entry in site.iterdir()}


def largest(site: Path, bare_site: Path) -> dict[str, float]:
    """What the install added to site-packages, biggest first, in MiB (pure but for du)."""
    bare = entry_sizes(bare_site)
    added = {name: size - bare.get(name, 0) for name, size in entry_sizes(site).items()}
    top = sorted(added.items(), key=lambda item: -item[1])[:LARGEST_SHOWN]
    return {name: round(size / MIB, 1) for name, size in top}


def install(python: Path, wheel: Path) -> float:
    started = time.monotonic()
    run("pip install the wheel", [python, "-m", "pip", "install", "-q", wheel],
        timeout=INSTALL_TIMEOUT_S)
    return time.monotonic() - started


def check_installed(python: Path, scratch: Path) -> None:
    """Only ``preflight`` came with the wheel; the CLI and the pytest plugin work."""
    for name in ABSENT:
        done = run(f"import {name}", [python, "-c", f"import {name}"], timeout=PROBE_TIMEOUT_S,
                   cwd=scratch, expect=None)
        if done.returncode == 0 or "ModuleNotFoundError" not in done.stderr:
            raise CheckFailed(f"`import {name}` must fail with ModuleNotFoundError in the "
                              f"clean venv; exit {done.returncode}: {tail(done.stderr)}")
    done = run("preflight --help", [python.parent / "preflight", "--help"],
               timeout=PROBE_TIMEOUT_S, cwd=scratch)
    if "gate" not in done.stdout:
        raise CheckFailed(f"preflight --help: no `gate` command in:\n{tail(done.stdout)}")
    probe = ("from importlib.metadata import entry_points; "
             "assert any(e.value == 'preflight.plugin' for e in entry_points(group='pytest11'))")
    run("the pytest11 entry point", [python, "-c", probe], timeout=PROBE_TIMEOUT_S, cwd=scratch)


def make_repo(path: Path, defect: bool) -> Path:
    """A bare git repository holding only the job and its spec."""
    path.mkdir()
    job = JOB.replace(CLEAN_LINE, DEFECT_LINE) if defect else JOB
    if defect and DEFECT_LINE not in job:
        raise CheckFailed(f"plant the defect: {CLEAN_LINE!r} is not in the job")
    (path / "job.py").write_text(job)
    (path / "pyproject.toml").write_text(SPEC)
    for argv in (["init", "-q"], ["add", "job.py", "pyproject.toml"],
                 ["-c", "user.name=check", "-c", "user.email=check@localhost",
                  "-c", "commit.gpgsign=false", "commit", "-qm", "the job and its spec"]):
        run(f"git {argv[0]} in {path.name}", ["git", *argv], timeout=GIT_TIMEOUT_S, cwd=path)
    return path


def gate(python: Path, repo: Path, want_exit: int, want_failed: frozenset[str]) -> float:
    """``preflight gate --scale small`` in ``repo``: its exit code, and the verdict and the
    failed experiments in the readiness report it writes."""
    started = time.monotonic()
    step = f"preflight gate in {repo.name}"
    done = run(step, [python.parent / "preflight", "gate", "--scale", "small"],
               timeout=GATE_TIMEOUT_S, cwd=repo, expect=None)
    wall_s = time.monotonic() - started
    output = tail(done.stdout + done.stderr)
    want_status = "READY" if want_exit == READY_EXIT else "NOT READY"
    if done.returncode != want_exit:
        raise CheckFailed(f"{step}: exit {done.returncode}, want {want_exit} ({want_status})"
                          f":\n{output}")
    status, failed = read_verdict(repo / "reports" / "latest", step)
    if status != want_status or failed != want_failed:
        raise CheckFailed(f"{step}: the report says {status} with failed experiments "
                          f"{sorted(failed)}; want {want_status} with {sorted(want_failed)}"
                          f":\n{output}")
    return wall_s


def read_verdict(report_dir: Path, step: str) -> tuple[str, frozenset[str]]:
    """The verdict text (READY or NOT READY) of readiness.json and readiness.md, which must
    agree, and the experiments that failed."""
    try:
        model = json.loads((report_dir / "readiness.json").read_text())
        heading = (report_dir / "readiness.md").read_text().partition("\n")[0]
    except (OSError, ValueError) as exc:
        raise CheckFailed(f"{step}: no readable readiness report in {report_dir}: {exc}"
                          ) from exc
    status = model.get("status")
    if heading != f"# Readiness: {status}" or model.get("ready") != (status == "READY"):
        raise CheckFailed(f"{step}: the report disagrees with itself: readiness.json status "
                          f"{status!r}, ready {model.get('ready')!r}; readiness.md {heading!r}")
    failed = frozenset(e["experiment"] for e in model.get("experiments", [])
                       if e.get("status") == "failed")
    return str(status), failed


@dataclass(frozen=True)
class Result:
    """What reports/package.json records."""

    wheel: str
    wheel_mib: float
    install_mib: float  # site-packages after the install, less a fresh venv's
    bare_venv_site_packages_mib: float
    largest_mib: dict[str, float]
    install_s: float
    gate_clean_s: float
    gate_defect_s: float
    wall_s: float
    goal_mib: float = GOAL_MIB
    python: str = sys.version.split()[0]
    absent: list[str] = field(default_factory=lambda: list(ABSENT))

    @property
    def within_goal(self) -> bool:
        return self.install_mib <= self.goal_mib

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "within_goal": self.within_goal}, indent=2) + "\n"

    def summary(self) -> str:
        goal = "met" if self.within_goal else "NOT met"
        return (f"package-check ok: {self.wheel} {self.wheel_mib} MiB; install "
                f"{self.install_mib} MiB over a bare venv (goal {self.goal_mib:.0f} MiB: "
                f"{goal}); gate READY (clean job) / NOT READY (planted defect); "
                f"{self.wall_s} s -> {REPORT.relative_to(ROOT)}")


def write_report(result: Result) -> None:
    REPORT.parent.mkdir(exist_ok=True)
    temp = REPORT.with_name(REPORT.name + ".tmp")
    temp.write_text(result.to_json())
    os.replace(temp, REPORT)


def check(scratch: Path) -> Result:
    started = time.monotonic()
    wheel = build_wheel()
    python = make_venv(scratch / "venv")
    bare_python = make_venv(scratch / "bare")
    install_s = install(python, wheel)
    check_installed(python, scratch)
    clean_s = gate(python, make_repo(scratch / "clean-repo", defect=False), READY_EXIT,
                   frozenset())
    defect_s = gate(python, make_repo(scratch / "defect-repo", defect=True), NOT_READY_EXIT,
                    PLANTED_CAUGHT_BY)
    site, bare_site = site_packages(python), site_packages(bare_python)
    installed, bare = du_bytes(site), du_bytes(bare_site)
    return Result(wheel=wheel.name, wheel_mib=round(wheel.stat().st_size / MIB, 2),
                  install_mib=round((installed - bare) / MIB, 1),
                  bare_venv_site_packages_mib=round(bare / MIB, 1),
                  largest_mib=largest(site, bare_site), install_s=round(install_s, 1),
                  gate_clean_s=round(clean_s, 1), gate_defect_s=round(defect_s, 1),
                  wall_s=round(time.monotonic() - started, 1))


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Install pytest-preflight as a team would.")
    parser.add_argument("--max-install-mib", type=float, default=None,
                        help="also fail when the install is bigger (default: report only)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    global BUDGET
    args = parse(sys.argv[1:] if argv is None else argv)
    BUDGET = Budget(TOTAL_BUDGET_S)
    scratch = Path(tempfile.mkdtemp(prefix="preflight-package-check-"))
    try:
        result = check(scratch)
    except CheckFailed as exc:
        for venv in ("venv", "bare"):
            shutil.rmtree(scratch / venv, ignore_errors=True)
        kept = any(scratch.iterdir())
        if not kept:
            scratch.rmdir()
        print(f"package-check FAILED: {exc}" + (f"\n(the job repositories and their reports "
              f"are kept in {scratch})" if kept else ""), file=sys.stderr)
        return 1
    shutil.rmtree(scratch, ignore_errors=True)
    write_report(result)
    print(result.summary())
    limit = args.max_install_mib
    if limit is not None and result.install_mib > limit:
        print(f"package-check FAILED: the install is {result.install_mib} MiB, over "
              f"--max-install-mib {limit:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
