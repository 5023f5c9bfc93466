"""What a fault experiment recorded: the Jepsen-style history the checker reads.

These are plain frozen records with no behaviour beyond (de)serialisation, so a checker can
be unit-tested on hand-made histories and a report can be re-checked from its JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Fault kinds, in the order the battery runs them (the default of `preflight check`).
KINDS = ("kill", "crashpoints", "corrupt", "memory", "disk", "rank")
# Every kind an FaultExperiment may name: KINDS plus those registered later
# (preflight.check.registry.register adds to it).
KNOWN_KINDS: set[str] = set(KINDS)

# What the harness did to one attempt (Attempt.fault).
FAULT_NONE = ""
FAULT_SIGKILL = "SIGKILL"
FAULT_SIGTERM = "SIGTERM"
FAULT_POINT = "point"  # an armed PREFLIGHT_FAULTS point (the job hurts itself)
FAULT_MEMORY = "memory-limit"
FAULT_DISK = "disk-limit"


@dataclass(frozen=True)
class Attempt:
    """One process-group lifetime of the job inside an experiment."""

    index: int
    resume: bool
    fault: str = FAULT_NONE
    armed: str = ""  # PREFLIGHT_FAULTS for this attempt, or a description of the limit
    start_done: int | None = None  # first progress this attempt published (its resume point)
    last_done: int | None = None  # last progress observed before it ended
    fault_at_done: int | None = None  # progress observed when the harness injected the fault
    in_write_window: bool | None = None  # kill-during-write: did the kill land inside one?
    rc: int | None = None  # None: it never exited on its own (hung, killed by the harness)
    timed_out: bool = False
    duration_s: float = 0.0
    stderr_tail: str = ""
    total: int | None = None  # the total this attempt published (0/None: none)
    fault_path: str = ""  # the file being written when the harness killed it
    host_steal: float | None = None  # share of the machine's CPU the host took meanwhile
    # Processes it left running outside its process group (setsid, double fork), found and
    # killed when it ended (preflight.run.procs): how many, and the first one ("pid N 'argv'").
    leftovers: int = 0
    leftover: str = ""


@dataclass(frozen=True)
class Control:
    """A kill-only run from the same stop point as a corruption experiment: what the resume
    gives without the damage, so an inexact resume is not blamed on the damaged file."""

    rc: int | None
    fingerprint: str | None
    verify_rc: int | None
    stop_at_done: int | None = None


@dataclass(frozen=True)
class Corruption:
    """One file the harness damaged before a resume (paths relative to the workdir)."""

    kind: str
    paths: tuple[str, ...]
    detail: str = ""
    # False: the damaged files' bytes (sha256) are the same after as before (a swap of two
    # identical files, a rewrite to the same content): no fault happened.
    changed: bool = True


@dataclass(frozen=True)
class FaultHistory:
    experiment_id: str
    kind: str  # one of KINDS
    seed: int
    schedule: dict[str, Any]
    attempts: tuple[Attempt, ...] = ()
    corruptions: tuple[Corruption, ...] = ()
    verify_rc: int | None = None  # None: not run (no verify command, or never completed)
    fingerprint: str | None = None
    notes: tuple[str, ...] = ()
    skipped: str = ""  # non-empty: the experiment could not run, and why
    fault_exit: str = ""  # what the faulted attempt must do: "", "preempt", "memory", "disk"
    duration_s: float = 0.0
    recover_s: float | None = None  # from the (last) fault to the successful exit
    # Whether the fault really happened (a kill inside a write window, a limit that bit);
    # False makes the experiment inconclusive, never a pass. None: not recorded (old JSON).
    injected: bool | None = None
    injected_detail: str = ""
    control: Control | None = None  # corruption experiments: the kill-only control
    # Share of the experiment's wall time the harness could not run at all (a frozen cgroup,
    # a throttled container: no steal in /proc/stat); None when not measured.
    host_frozen: float | None = None

    @property
    def host_steal(self) -> float | None:
        """The worst host steal any attempt saw (None when none was measured)."""
        seen = [a.host_steal for a in self.attempts if a.host_steal is not None]
        return max(seen) if seen else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(raw: dict[str, Any]) -> FaultHistory:
        attempts = tuple(Attempt(**a) for a in raw.get("attempts", ()))
        corruptions = tuple(
            Corruption(c["kind"], tuple(c["paths"]), c.get("detail", ""), c.get("changed", True))
            for c in raw.get("corruptions", ())
        )
        control = Control(**raw["control"]) if raw.get("control") else None
        skip = ("attempts", "corruptions", "control")
        rest = {k: v for k, v in raw.items() if k not in skip}
        rest["notes"] = tuple(rest.get("notes", ()))
        return FaultHistory(**rest, attempts=attempts, corruptions=corruptions, control=control)


@dataclass(frozen=True)
class Reference:
    """The uninterrupted run every experiment is compared with."""

    rc: int
    fingerprint: str | None
    verify_rc: int | None
    duration_s: float
    total: int | None = None
    ckpt_interval: int | None = None  # progress units between checkpoints
    ckpt_interval_source: str = ""  # how it was obtained (option, checkpoint files, progress)
    ckpt_commits: int = 0  # checkpoint-file changes seen during the reference run
    write_windows: tuple[int, ...] = ()  # checkpoint writes seen, per checkpoints glob
    # Temp-file kinds (dir relative to the workdir / masked name) seen renamed onto a glob.
    write_temps: tuple[tuple[str, int], ...] = ()
    points: tuple[str, ...] = ()  # fault points passed, in order of first hit
    point_hits: dict[str, int] = field(default_factory=dict)
    rss_bytes_max: int | None = None
    uss_bytes_max: int | None = None  # private memory: what a memory cgroup is charged for
    vms_bytes_max: int | None = None
    workdir_bytes: int | None = None
    file_bytes_max: int | None = None
    stderr_tail: str = ""
    # Non-empty: the spec names a progress source and the run published none (why, naming
    # the key); every experiment is then inconclusive (preflight.check.checker).
    progress_missing: str = ""
    # The distinct progress values it published, in order (bounded): a kill planned on
    # progress waits for one of these, never for a value the job skips to its total.
    published: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
