"""Run: a job in its own process group, captured, followed, bounded, always cleaned up."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from preflight.workload import (
    Run,
    RunError,
    RunTimeoutError,
    WorkloadSpec,
    load_spec,
    prepare,
    run_aux,
)
from suites.preflight.helpers import REPO, write_spec

WAIT_S = 30.0  # generous bound for a job that should take well under a second

JOB = '''
import json, os, sys, time
from pathlib import Path
out = Path(sys.argv[1]); n = int(sys.argv[2]); mode = os.environ.get("MODE", "ok")
out.mkdir(parents=True, exist_ok=True)
print("hello out", os.environ.get("GREETING"), os.getpgid(0) == os.getpid(), flush=True)
print("hello err", file=sys.stderr, flush=True)
if mode == "child":
    import subprocess
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    (out / "child.pid").write_text(str(child.pid))
if mode == "nofile":
    import resource
    print("nofile", resource.getrlimit(resource.RLIMIT_NOFILE)[0], flush=True)
for i in range(n + 1):
    tmp = out / ".p.tmp"
    tmp.write_text(json.dumps({"done": i, "total": n, "updated_at": "now"}))
    os.replace(tmp, out / "PROGRESS.json")
    print(f"step {i}/{n}", flush=True)
    time.sleep(0.01)
if mode in ("hang", "child"):
    (out / "hanging").write_text("1")
    time.sleep(60)
sys.exit(3 if mode == "fail" else 0)
'''

SPEC = """
[workloads.file]
command = ["{python}", "{spec_dir}/job.py", "{workdir}", "{n}"]
resume = ["{python}", "{spec_dir}/job.py", "{workdir}", "2"]
progress = "{workdir}/PROGRESS.json"
env = { GREETING = "from-spec" }
[workloads.file.scale]
small = { n = 5 }
production = { n = 50 }

[workloads.regex]
command = ["{python}", "{spec_dir}/job.py", "{workdir}", "{n}"]
progress_regex = 'step (\\d+)/(\\d+)'
[workloads.regex.scale]
small = { n = 5 }
production = { n = 50 }

[workloads.missing]
command = ["/nonexistent/preflight-no-such-binary"]
"""


@pytest.fixture
def specs(tmp_path: Path) -> dict[str, WorkloadSpec]:
    (tmp_path / "job.py").write_text(JOB)
    path = write_spec(tmp_path, SPEC)
    return {name: load_spec(name, path) for name in ("file", "regex", "missing")}


def _wait_gone(pid: int, timeout_s: float = WAIT_S) -> bool:
    """True once `pid` no longer runs (gone, or a zombie awaiting its reaper)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def _wait_file(path: Path, timeout_s: float = WAIT_S) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.01)
    raise AssertionError(f"{path} did not appear within {timeout_s} s")


def test_run_captures_output_follows_progress_and_samples(
    specs: dict[str, WorkloadSpec], tmp_path: Path
) -> None:
    work = tmp_path / "w"
    with Run(specs["file"], work, {"n": 5}, env={"MODE": "ok"}, sample_interval_s=0.01) as run:
        assert run.wait(WAIT_S) == 0
    assert run.returncode == 0 and not run.timed_out
    assert run.progress() == (5, 5)
    assert "hello out from-spec True" in run.stdout_text()
    assert run.stderr_text() == "hello err\n"
    assert run.duration_s > 0 and run.samples
    assert all(s.n_procs == 1 and s.rss_bytes > 0 for s in run.samples)
    # The job owns its workdir: logs go beside it.
    assert sorted(p.name for p in work.iterdir()) == ["PROGRESS.json"]
    assert run.stdout_path.parent == tmp_path / "w.logs"
    # The host's share of the CPU while it ran: a figure wherever /proc/stat has steal.
    if Path("/proc/stat").exists():
        assert run.host_steal_fraction is not None and 0.0 <= run.host_steal_fraction <= 1.0


def test_a_run_carries_what_the_machine_did_frozen_only_when_asked(
    specs: dict[str, WorkloadSpec], tmp_path: Path
) -> None:
    from preflight.host.watch import watching_frozen

    with Run(specs["file"], tmp_path / "plain", {"n": 2}, env={"MODE": "ok"}) as plain:
        assert plain.host.steal is None  # not ended yet: no figure
        assert plain.wait(WAIT_S) == 0
    assert plain.host.frozen is None and plain.host_watch.meter is None
    assert plain.host.steal == plain.host_steal_fraction
    # A job of a second or more: the FreezeMeter gives a figure, and its child is gone.
    with watching_frozen():
        asked = Run(specs["file"], tmp_path / "asked", {"n": 120}, env={"MODE": "ok"})
    assert asked.host_watch.meter is not None
    with asked:
        assert asked.wait(WAIT_S) == 0
    figures = asked.host
    assert figures.frozen is not None and 0.0 <= figures.frozen <= 1.0
    assert figures.frozen_s >= 0.0 and asked.host_watch.meter._child is None
    if Path("/proc/stat").exists():
        assert figures.steal is not None and figures.neighbours is not None
    explicit = Run(specs["file"], tmp_path / "x", {"n": 1}, watch_frozen=True)
    assert explicit.host_watch.meter is not None


def test_a_run_that_cannot_start_leaves_no_freeze_meter(
    specs: dict[str, WorkloadSpec], tmp_path: Path
) -> None:
    run = Run(specs["missing"], tmp_path / "w", {}, watch_frozen=True)
    with pytest.raises(RunError):
        run.start()
    assert run.host_watch.meter is not None and run.host_watch.meter._child is None


def test_progress_from_stdout_regex_and_wait_for_progress(
    specs: dict[str, WorkloadSpec], tmp_path: Path
) -> None:
    with Run(specs["regex"], tmp_path / "w", {"n": 40}, env={"MODE": "ok"}) as run:
        assert run.wait_for_progress(3, WAIT_S)
        assert run.wait(WAIT_S) == 0
    assert run.progress() == (40, 40)
    assert not run.wait_for_progress(41, 0.05)  # exited: answers at once, never hangs


def test_timeout_kills_the_whole_group_including_grandchildren(
    specs: dict[str, WorkloadSpec], tmp_path: Path
) -> None:
    run = Run(specs["file"], tmp_path / "w", {"n": 1}, env={"MODE": "child"}).start()
    grandchild = int(_wait_file(tmp_path / "w" / "child.pid"))
    _wait_file(tmp_path / "w" / "hanging", WAIT_S)
    assert run.wait(0.05) == -signal.SIGKILL
    assert run.timed_out
    assert _wait_gone(grandchild)
    run.close()


def test_raise_on_timeout_names_the_command(specs: dict[str, WorkloadSpec], tmp_path: Path) -> None:
    with Run(specs["file"], tmp_path / "w", {"n": 1}, env={"MODE": "hang"}) as run:
        _wait_file(tmp_path / "w" / "hanging")
        with pytest.raises(RunTimeoutError, match=r"job.py.*did not finish within 0.01 s"):
            run.wait(0.01, raise_on_timeout=True)


def test_context_exit_kills_the_group_even_on_error(
    specs: dict[str, WorkloadSpec], tmp_path: Path
) -> None:
    run = Run(specs["file"], tmp_path / "w", {"n": 1}, env={"MODE": "child"})
    with pytest.raises(KeyError), run:
        grandchild = int(_wait_file(tmp_path / "w" / "child.pid"))
        raise KeyError("test failure inside the with block")
    assert _wait_gone(grandchild)


def test_terminate_group_and_kill(specs: dict[str, WorkloadSpec], tmp_path: Path) -> None:
    with Run(specs["file"], tmp_path / "w", {"n": 1}, env={"MODE": "hang"}) as run:
        _wait_file(tmp_path / "w" / "hanging")
        assert run.poll() is None
        assert run.terminate_group(grace_s=WAIT_S) == -signal.SIGTERM
        assert run.poll() == -signal.SIGTERM


def test_job_dies_with_the_harness(specs: dict[str, WorkloadSpec], tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: a harness killed with SIGKILL takes its job along, even though the
    job runs in its own session where no terminal signal would reach it."""
    harness = textwrap.dedent(f"""
        import os, signal, sys, time
        from preflight.workload import load_spec, Run
        spec = load_spec("file", {str(tmp_path / "workloads.toml")!r})
        run = Run(spec, {str(tmp_path / "w")!r}, {{"n": 1}}, env={{"MODE": "hang"}}).start()
        print(run.pid, flush=True)
        while not os.path.exists({str(tmp_path / "w" / "hanging")!r}):
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run(
        [sys.executable, "-c", harness], capture_output=True, text=True, timeout=WAIT_S,
        cwd=REPO, check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert _wait_gone(int(done.stdout.split()[0]))


def test_preexec_runs_in_the_child_after_setsid(
    specs: dict[str, WorkloadSpec], tmp_path: Path
) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    def lower_nofile() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (77, hard))

    env = {"MODE": "nofile"}
    with Run(specs["file"], tmp_path / "w", {"n": 1}, env=env, preexec=lower_nofile) as run:
        run.wait(WAIT_S)
    assert "nofile 77" in run.stdout_text()
    assert "True" in run.stdout_text().splitlines()[0]  # its own process group
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] != 77 or hard == 77


def test_resume_runs_the_resume_command_with_env_overrides(
    specs: dict[str, WorkloadSpec], tmp_path: Path
) -> None:
    with Run(specs["file"], tmp_path / "w", {"n": 5}, resume=True, env={"GREETING": "hi"}) as run:
        run.wait(WAIT_S)
    assert run.progress() == (2, 2)
    assert "hello out hi" in run.stdout_text()
    assert ".resume." in run.stdout_path.name


def test_exit_code_and_start_failure(specs: dict[str, WorkloadSpec], tmp_path: Path) -> None:
    with Run(specs["file"], tmp_path / "w", {"n": 1}, env={"MODE": "fail"}) as run:
        assert run.wait(WAIT_S) == 3
    with pytest.raises(RunError, match="cannot start.*preflight-no-such-binary"):
        Run(specs["missing"], tmp_path / "m", {}).start()
    with pytest.raises(RunError, match="already started"):
        run.start()


def test_run_aux_is_bounded_and_kills_its_group(tmp_path: Path) -> None:
    path = write_spec(tmp_path, '[workloads.a]\ncommand = ["true"]\n')
    spec = load_spec("a", path)
    done = run_aux(spec, ["{python}", "-c", "print('fp-123')"], spec.base_params(tmp_path), 30)
    assert done.returncode == 0 and done.stdout == "fp-123\n"
    marker = tmp_path / "aux-child.pid"
    hang = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(marker)!r}, 'w').write(str(c.pid)); time.sleep(60)"
    )
    # The bound must land after the child exists, or there is nothing to prove: under host
    # steal the interpreter once needed over 0.5 s just to start. Longer bounds until it does.
    for bound_s in (0.5, 2.0, 8.0, 30.0):
        with pytest.raises(RunTimeoutError, match=f"did not finish within {bound_s} s"):
            run_aux(spec, ["{python}", "-c", hang], spec.base_params(tmp_path), bound_s)
        if marker.exists() and marker.read_text():
            break
    assert _wait_gone(int(_wait_file(marker)))


def test_prepare_runs_into_the_prepared_dir(tmp_path: Path) -> None:
    text = (
        '[workloads.a]\ncommand = ["true", "{prepared}"]\n'
        'prepare = ["{python}", "-c", "import sys; open(sys.argv[1], \'w\').write(sys.argv[2])",'
        ' "{prepared}/input.txt", "{n}"]\n[workloads.a.scale]\nsmall = { n = 7 }\n'
    )
    spec = load_spec("a", write_spec(tmp_path, text))
    target = prepare(spec, spec.params("small"), tmp_path / "prepared", 30)
    assert (target / "input.txt").read_text() == "7"
    failing = WorkloadSpec("b", spec.source, ("true",), prepare=("false",))
    with pytest.raises(RunError, match="'prepare'.*exited 1"):
        prepare(failing, {}, tmp_path / "p2", 30)


def test_pid_of_an_unstarted_run_is_an_error(
    specs: dict[str, WorkloadSpec], tmp_path: Path
) -> None:
    run = Run(specs["file"], tmp_path / "w", {"n": 1}, env={"MODE": "ok"})
    with pytest.raises(RunError, match="not been started"):
        _ = run.pid
    assert run.samples == [] and run.duration_s == 0.0
    run.close()  # closing an unstarted run is a no-op
    assert os.path.exists(tmp_path / "w") is False
