"""Pure pieces behind issue 17 and the fault-kind contract (milliseconds each)."""

from __future__ import annotations

import io
import struct
from dataclasses import replace
from pathlib import Path

from preflight.check import registry
from preflight.check.checker import FAIL, PASS, SKIP, cause, check
from preflight.check.drive.schedule import FaultExperiment
from preflight.check.drive.windows import (
    IN_CLOSE_WRITE,
    IN_MODIFY,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    Event,
    WindowLog,
    parse_events,
    temp_kind,
)
from preflight.check.history import (
    FAULT_SIGKILL,
    Attempt,
    Control,
    Corruption,
    FaultHistory,
    Reference,
)
from preflight.check.kind import FaultKind, InjectContext, PlanContext
from preflight.check.live import Live, eta_s, status_line
from preflight.check.report import CheckRow, injected_text
from preflight.run.progress import RegexProgress

REF = Reference(rc=0, fingerprint="f" * 64, verify_rc=0, duration_s=1.0, total=30, ckpt_interval=5)
KILLED = Attempt(0, False, fault=FAULT_SIGKILL, start_done=0, last_done=12, fault_at_done=12, rc=-9)
DONE = Attempt(1, True, start_done=10, last_done=30, rc=0)


def _history(*attempts: Attempt, **kw: object) -> FaultHistory:
    base: dict[str, object] = {"verify_rc": 0, "fingerprint": REF.fingerprint}
    base.update(kw)
    return FaultHistory("e", "kill", 0, {}, attempts=attempts, **base)  # type: ignore[arg-type]


# ---- item 4: write windows where the job really writes -------------------------------


def test_temp_kinds_mask_digits_and_tempfile_names() -> None:
    assert temp_kind(".ckpt.json.tmp-123") == temp_kind(".ckpt.json.tmp-98")
    assert temp_kind("tmpab3k9_x2") == temp_kind("tmpq0w8e7r6") == "tmp?"


def test_a_checkpoint_rewritten_in_place_opens_a_window_per_write() -> None:
    log = WindowLog(["/w/ckpt.pt"], "/w")
    assert log.feed(Event("/w/ckpt.pt", IN_MODIFY)) is not None
    assert log.feed(Event("/w/ckpt.pt", IN_MODIFY)) is None  # the same write goes on
    log.feed(Event("/w/ckpt.pt", IN_CLOSE_WRITE))
    assert log.feed(Event("/w/ckpt.pt", IN_MODIFY)) is not None
    assert log.windows_by_glob == [2]
    assert log.feed(Event("/w/PROGRESS.json", IN_MODIFY)) is None  # not a checkpoint


def test_a_temp_renamed_onto_a_checkpoint_is_a_window_learnt_from_the_rename() -> None:
    log = WindowLog(["/w/ckpt.pt"], "/w")
    assert log.feed(Event("/w/tmpabcdefgh", IN_MODIFY)) is None  # unknown yet
    log.feed(Event("/w/tmpabcdefgh", IN_CLOSE_WRITE))
    log.feed(Event("/w/tmpabcdefgh", IN_MOVED_FROM, cookie=7))
    log.feed(Event("/w/ckpt.pt", IN_MOVED_TO, cookie=7))
    assert log.windows_by_glob == [1]  # counted once its kind was known
    assert log.learned == {"./tmp?": 0}
    # A later run, told what the reference learnt, sees the first temp write as a window.
    later = WindowLog(["/x/ckpt.pt"], "/x", dict(log.learned))
    window = later.feed(Event("/x/tmp12345678", IN_MODIFY))
    assert window is not None and window.glob == 0


def test_inotify_records_parse_into_full_paths() -> None:
    name = b"ckpt.pt\0\0\0\0\0\0\0\0\0"
    data = struct.pack("iIII", 1, IN_MODIFY, 0, len(name)) + name
    data += struct.pack("iIII", 9, IN_MODIFY, 0, 0)  # an unknown watch: skipped
    assert parse_events(data, {1: "/w"}) == [Event("/w/ckpt.pt", IN_MODIFY, 0)]


# ---- items 4, 3: injected, and the kill-only control ----------------------------------


def test_an_experiment_whose_fault_was_never_injected_never_passes() -> None:
    h = _history(DONE, injected=False, injected_detail="no kill landed inside a write")
    verdicts = check(h, REF)
    assert [v.status for v in verdicts] == [SKIP]
    assert "inconclusive" in verdicts[0].detail
    row = CheckRow(FaultExperiment("e", "kill"), h, tuple(verdicts), "replay")
    assert row.status == "SKIP" and injected_text(h).startswith("NO")
    hung = replace(DONE, rc=None, timed_out=True)
    assert FAIL in [v.status for v in check(_history(hung, injected=False), REF)]


def test_a_kill_only_control_moves_the_blame_from_the_damage_to_the_resume() -> None:
    damaged = (Corruption("flip_bits", ("notes.txt",)),)
    inexact = _history(KILLED, DONE, fingerprint="a" * 64, corruptions=damaged)
    alone = {v.name: v for v in check(inexact, REF)}
    assert alone["corruption"].critical  # without a control: silent corruption
    same = replace(inexact, control=Control(0, "a" * 64, 0, 12))
    verdicts = {v.name: v for v in check(same, REF)}
    assert verdicts["corruption"].status == PASS and not verdicts["corruption"].critical
    assert verdicts["exact"].status == FAIL and "kill-only" in verdicts["exact"].detail
    other = replace(inexact, control=Control(0, REF.fingerprint, 0, 12))
    assert {v.name: v for v in check(other, REF)}["corruption"].critical


# ---- steal: a timing-only failure under heavy steal is inconclusive -------------------


def test_a_liveness_failure_alone_under_heavy_steal_is_inconclusive() -> None:
    hung = replace(DONE, rc=0, timed_out=True, host_steal=0.8)
    verdicts = {v.name: v for v in check(_history(KILLED, hung), REF)}
    assert verdicts["liveness"].status == SKIP and "80%" in verdicts["liveness"].detail
    quiet = replace(hung, host_steal=0.02)
    assert {v.name: v for v in check(_history(KILLED, quiet), REF)}["liveness"].status == FAIL


def test_a_liveness_failure_alone_with_the_harness_frozen_is_inconclusive() -> None:
    # A frozen cgroup or a throttled container shows no steal; the freeze meter sees it.
    hung = replace(DONE, rc=0, timed_out=True, host_steal=0.0)
    frozen = replace(_history(KILLED, hung), host_frozen=0.64)
    liveness = {v.name: v for v in check(frozen, REF)}["liveness"]
    assert liveness.status == SKIP and "frozen 64%" in liveness.detail
    thawed = replace(frozen, host_frozen=0.03)
    assert {v.name: v for v in check(thawed, REF)}["liveness"].status == FAIL
    # Recorded histories from before the field still load.
    raw = frozen.to_json()
    raw.pop("host_frozen")
    assert FaultHistory.from_json(raw).host_frozen is None
    # The report says what the machine took, per experiment.
    from preflight.check.report import host_text

    assert host_text(frozen) == "steal 0%, frozen 64%"
    assert host_text(_history(KILLED)) == "—"


# ---- item 8: the failure names the file and the cause ---------------------------------


def test_the_cause_is_the_exception_and_the_data_file_not_the_code_file() -> None:
    stderr = (
        "Traceback (most recent call last):\n"
        '  File "/job/train.py", line 9, in <module>\n'
        "    state = torch.load('/w/last.ckpt')\n"
        "EOFError: Ran out of input\n"
    )
    assert cause(stderr) == ": EOFError: Ran out of input (file /w/last.ckpt)"
    torn = replace(
        DONE, rc=1, stderr_tail=stderr.replace("/w/last.ckpt", "x"), index=1, resume=True
    )
    killed = replace(KILLED, in_write_window=True, fault_path="/w/last.ckpt")
    detail = {v.name: v for v in check(_history(killed, torn), REF)}["completed"].detail
    assert "while writing /w/last.ckpt" in detail and "EOFError" in detail


# ---- item 6: every value the regex follower saw -----------------------------------------


def test_the_regex_follower_gives_every_value_in_order(tmp_path: Path) -> None:
    out = tmp_path / "stdout"
    out.write_text("step 10/40\nstep 11/40\nstep 12/40\n")
    follower = RegexProgress(out, r"step (\d+)/(\d+)")
    assert [p.done for p in follower.read_all()] == [10, 11, 12]  # 10: the resume point
    assert follower.read_all() == []
    assert follower.read() is not None and follower.read().done == 12


# ---- live progress ---------------------------------------------------------------------


def test_progress_line_and_eta_from_the_median_experiment() -> None:
    assert eta_s(0, 4, [], 3.0) is None
    assert eta_s(2, 4, [10.0, 20.0], 5.0) == 25.0  # 2 left x 15 s, 5 s of it done
    assert status_line(2, 4, "kill-write-0", 5.0, [10.0, 20.0]) == (
        "[3/4] kill-write-0 running 0m05s; ETA 0m25s"
    )


def test_live_prints_plain_lines_when_not_a_tty() -> None:
    now = [0.0]
    stream = io.StringIO()
    live = Live(2, stream=stream, clock=lambda: now[0])
    live.begin("kill-time")
    now[0] = 12.0
    live.show()
    assert stream.getvalue().splitlines() == [
        "[1/2] kill-time running 0m00s; ETA ?",
        "[1/2] kill-time running 0m12s; ETA ?",
    ]


# ---- the fault-kind contract -----------------------------------------------------------


class _Noop:
    name = "noop-test"

    def plan(self, ctx: PlanContext) -> list[FaultExperiment]:
        return [FaultExperiment("noop", self.name, {"seed": ctx.seed})]

    def inject(self, ctx: InjectContext, experiment: FaultExperiment) -> FaultHistory:
        return FaultHistory(experiment.id, experiment.kind, ctx.seed, experiment.schedule)


def test_every_kind_follows_the_contract_and_a_new_one_registers() -> None:
    for name in registry.names():
        assert isinstance(registry.get(name), FaultKind), name
    registry.register(_Noop())
    try:
        _use_noop()
    finally:
        registry.unregister("noop-test")
    assert "noop-test" not in registry.names()


def _use_noop() -> None:
    assert "noop-test" in registry.names()
    ctx = PlanContext(spec=None, reference=REF, seed=3)  # type: ignore[arg-type]
    (exp,) = registry.plan(("noop-test",), ctx)
    assert exp.schedule == {"seed": 3}
    skipped = registry.inject(
        InjectContext(None, REF, 3),  # type: ignore[arg-type]
        FaultExperiment("noop-skip", "noop-test", {"skip": "why"}),
    )
    assert skipped.skipped == "why"
