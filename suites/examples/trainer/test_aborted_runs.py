"""SIGKILL at random steps and mid-persist, SIGTERM: the resumed run is bit-identical.

Kills come from durable fault points in a child process, so they land exactly where the
test says (a random step, or between writing state.pt and committing its manifest). Each
random choice is printed in the assertion message so a failure can be replayed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
from preflight_examples.trainer.checkpoint import scan

from preflight.durable import manifest, read_progress

from .conftest import CHILD_TIMEOUT_S, CKPT_EVERY, STEPS, child_env, fit_args, run_child

POLL_S = 0.01


def _newest_committed(run) -> int:
    steps = [f.step for f in scan(run / "checkpoints", lambda _: None) if f.committed]
    return max(steps, default=0)


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
def test_sigkill_mid_persist_and_at_a_random_step_resumes_bit_exact(
    dataset, tmp_path, trainer_main, reference
):
    seed = random.randrange(2**32)
    run, args = tmp_path / "run", fit_args(dataset, tmp_path / "run")
    # 1. On the persist thread after state.pt is written, before its manifest.
    child = run_child(args, "trainer.persist_before_commit:kill@2")
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    half_written = run / "checkpoints" / f"step-{2 * CKPT_EVERY:08d}"
    assert (half_written / "state.pt").exists() and not (half_written / "manifest.json").exists()
    done = _newest_committed(run)
    assert done == CKPT_EVERY
    # 2. One step after a random later checkpoint boundary, in the step that overlapped the
    # persist: had that step counted before the persist committed, this would lose K+1.
    kill_step = random.Random(seed).choice(range(2 * CKPT_EVERY, STEPS, CKPT_EVERY)) + 1
    spec = f"trainer.after_optimizer_step:kill@{kill_step - done}"
    child = run_child(args, spec)
    why = f"seed {seed}: {spec} after resuming at {done}: {child.stderr[-2000:]}"
    assert child.returncode == -signal.SIGKILL, why
    assert "never committed" in child.stderr and str(half_written) in child.stderr, why
    done = _newest_committed(run)
    assert kill_step - done <= CKPT_EVERY, why  # lost work per kill <= --ckpt-every
    result = trainer_main(args)
    assert result.code == 0, f"seed {seed}: {result.err}"
    assert f"resuming from {run}/checkpoints/step-{done:08d}" in result.err
    assert trainer_main(["fingerprint", str(run)]).out.strip() == reference, f"seed {seed}"


def _wait_for_hits(trace, point: str, hits: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        if trace.exists() and trace.read_text().split().count(point) >= hits:
            return
        time.sleep(POLL_S)
    raise AssertionError(f"child never reached hit {hits} of {point} (exit {proc.poll()})")


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
def test_sigterm_finishes_the_step_commits_and_exits_75_then_resumes_exactly(
    dataset, tmp_path, trainer_main, reference
):
    run, args, trace = tmp_path / "run", fit_args(dataset, tmp_path / "run"), tmp_path / "trace"
    point, stop_after = "trainer.after_optimizer_step", 3
    # The child sleeps 1 s in step 3, so SIGTERM lands mid-step, between checkpoints.
    env = child_env(f"{point}:sleep=1@{stop_after}", trace)
    proc = subprocess.Popen(
        [sys.executable, "-m", "preflight_examples.trainer.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_hits(trace, point, stop_after, proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=CHILD_TIMEOUT_S)
    assert proc.returncode == 75, err[-2000:]
    stopped = read_progress(run / "PROGRESS.json")
    assert stopped.state == "stopped" and stop_after <= stopped.done < STEPS
    assert manifest.verify(run / "checkpoints" / f"step-{stopped.done:08d}")
    result = trainer_main(args)
    assert result.code == 0 and f"step-{stopped.done:08d}" in result.err
    assert trainer_main(["fingerprint", str(run)]).out.strip() == reference


def test_a_stop_signal_during_start_up_reaches_the_loop():
    """SIGTERM before the loop's handler exists (torch still importing) is not lost: the
    loop's StopSignals takes it over, so the run stops with exit 75, not a death by signal."""
    from preflight_examples.trainer import early_signals
    from preflight_examples.trainer.fit import StopSignals

    saved = {sig: signal.getsignal(sig) for sig in early_signals.STOP_SIGNALS}
    try:
        early_signals.install()
        os.kill(os.getpid(), signal.SIGTERM)
        with StopSignals() as stop:
            assert stop.signum == signal.SIGTERM
    finally:
        early_signals.pending.clear()
        for sig, handler in saved.items():
            signal.signal(sig, handler)
