"""`datagen generate`: the parent process. It plans, hands shards to workers, records each
committed shard in the ledger, rewrites PROGRESS.json, and finalizes the dataset.

The parent never touches sample data: workers render and commit their own shard files, so
memory does not grow with the number of samples and every byte is written exactly once.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from preflight.durable import (
    BadInputError,
    ConfigDriftError,
    DurableError,
    Ledger,
    RateMeter,
    RunLock,
    VerifyError,
    atomic_write,
    faults,
    make_progress,
    read_progress,
    remove_stale_temps,
    write_progress,
)
from preflight.durable.atomic import is_temp_file
from preflight.durable.paths import refuse_symlink, refuse_symlinks
from preflight_examples.datagen import store
from preflight_examples.datagen.config import (
    GenConfig,
    differing_parameters,
    validate,
    validate_workers,
)
from preflight_examples.datagen.plan import (
    SHARDS_DIR,
    ShardPlan,
    ShardSpec,
    classify_shards,
    expected_dataset_bytes,
    plan_shards,
)
from preflight_examples.datagen.pool import WorkerPool
from preflight_examples.datagen.ranks import RankInfo
from preflight_examples.datagen.report import Reporter
from preflight_examples.datagen.worker import COMMITS_IN_FLIGHT_MAX, Started, TaskResult

RUN_ID = "datagen"
MARKER_NAME = ".preflight-datagen"
MARKER = {"format": "preflight-datagen-dir/1"}
# Names an --out may hold before its first generate wrote the marker: the lock, and the
# ranks/ directory the other ranks of a distributed run may create before rank 0 starts.
PRE_MARKER_NAMES = frozenset({".lock", "ranks", MARKER_NAME})
# Directories inside --out that generate writes into: never symlinks (writes would escape).
OWNED_DIRS = ("shards", "ranks")
# More workers than this per usable core only add memory and context switches.
WORKERS_PER_CORE_MAX = 4
LEDGER_NAME = "ledger.sqlite"
PROGRESS_NAME = "PROGRESS.json"
BOOKKEEPING = (PROGRESS_NAME, LEDGER_NAME, f"{LEDGER_NAME}-wal", f"{LEDGER_NAME}-shm")
POLL_S = 0.2
# No shard finishing for this long means a hung worker or disk: fail instead of hanging.
STALL_S_MAX = 3600.0
# After SIGTERM, shards in flight get this long to commit before they are abandoned.
STOP_GRACE_S = 20.0
JOIN_GRACE_S = 60.0  # after the last task: the final commits, then the workers' exit
# Rank 0 waiting for the other ranks' shards: no shard recorded for this long is a failure.
RANKS_STALL_S_MAX = STALL_S_MAX
# Tasks queued per worker: its commits in flight and one rendering, twice over, so a worker
# never waits for the parent to hand out work. (On SIGTERM queued tasks are simply dropped.)
IN_FLIGHT_PER_WORKER = 2 * (COMMITS_IN_FLIGHT_MAX + 1)
MESSAGES_PER_BATCH_MAX = 1000
FREE_BYTES_MARGIN = 64 << 20
EXIT_OK, EXIT_FAILED, EXIT_STOPPED = 0, 1, 75


@dataclass(frozen=True)
class RunOptions:
    out: Path
    workers: int
    new: bool = False
    retry_errors: bool = False
    ranks: RankInfo = RankInfo()


# ---------------------------------------------------------------------------- bad input


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):  # bounded by the path's depth
        if candidate.exists():
            return candidate
    return Path("/")


def check_out_dir(out: Path, need_bytes: int) -> None:
    """Refuse an output directory that cannot take the dataset, before writing anything."""
    probe = _nearest_existing(out)
    if not probe.is_dir():
        raise BadInputError(f"--out {out}: {probe} exists and is not a directory")
    if os.statvfs(probe).f_flag & os.ST_RDONLY:
        raise BadInputError(f"--out {out}: {probe} is on a read-only filesystem")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BadInputError(f"--out {out}: directory {probe} is not writable")
    free_bytes = shutil.disk_usage(probe).free
    if free_bytes < need_bytes + FREE_BYTES_MARGIN:
        raise BadInputError(
            f"--out {out}: not enough free disk: the dataset needs {need_bytes} more bytes "
            f"(+{FREE_BYTES_MARGIN} margin), {free_bytes} are free on {probe}"
        )


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def check_workers_fit(workers: int, cores: int) -> None:
    """--workers bounded by this machine's cores (pure), with a message saying the limit."""
    limit = max(1, cores) * WORKERS_PER_CORE_MAX
    if workers > limit:
        raise BadInputError(
            f"--workers: {workers} is more than {WORKERS_PER_CORE_MAX} per usable CPU core "
            f"({cores} here: at most {limit})"
        )


def _is_legacy_dataset(out: Path) -> bool:
    """A directory generate wrote before the marker existed: it holds our ledger."""
    ledger = out / LEDGER_NAME
    return ledger.is_file() and not ledger.is_symlink()


def check_ours(out: Path) -> None:
    """Refuse (exit 2) a non-empty --out that generate did not make (no marker): writing a
    dataset there, and above all --new, would overwrite or delete someone else's files."""
    refuse_symlink(out / MARKER_NAME)
    if not out.is_dir() or (out / MARKER_NAME).exists() or _is_legacy_dataset(out):
        return
    foreign = sorted(
        entry.name
        for entry in os.scandir(out)
        if entry.name not in PRE_MARKER_NAMES and not is_temp_file(entry.name)
    )
    if foreign:
        raise BadInputError(
            f"--out {out}: not empty and not a datagen directory (no {MARKER_NAME}; it holds "
            f"{', '.join(foreign[:5])}); choose a new or empty directory"
        )


def preflight(cfg: GenConfig, opts: RunOptions) -> list[ShardSpec]:
    """Every bad-input check (exit 2) that can run before anything is written."""
    if str(opts.out) in ("", "."):
        # argparse's Path("") is ".": an empty --out must not mean the current directory.
        raise BadInputError("--out: must name a directory (empty or '.' is not accepted)")
    validate(cfg)
    validate_workers(opts.workers)
    check_workers_fit(opts.workers, usable_cores())
    check_ours(opts.out)
    specs = plan_shards(cfg.samples, cfg.shard_size)
    present = store.existing_bytes(opts.out, specs) if opts.out.is_dir() else 0
    check_out_dir(opts.out, max(0, expected_dataset_bytes(cfg) - present))
    return specs


# ---------------------------------------------------------------------------- signals


@dataclass
class StopFlag:
    signum: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals(flag: StopFlag) -> Any:
    previous = {s: signal.signal(s, flag) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# ---------------------------------------------------------------------------- the run


def _open_ledger(out: Path, new: bool) -> Ledger:
    try:
        return Ledger(out / LEDGER_NAME)
    except DurableError as exc:
        if isinstance(exc, VerifyError) and not new:
            raise  # a symlinked ledger: the refusal already says what to do
        if new:  # starting over: an unusable (or symlinked) ledger is simply replaced
            for name in BOOKKEEPING[1:]:
                with contextlib.suppress(FileNotFoundError):
                    (out / name).unlink()
            return Ledger(out / LEDGER_NAME)
        raise VerifyError(
            str(out / LEDGER_NAME), f"{exc}; move it away or rerun with --new to start over"
        ) from None


def _make_dir(path: Path) -> None:
    """mkdir -p; a path the OS will not create (/proc/x) is bad input naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"--out: cannot create {path}: {exc.strerror or exc}") from None


def _ok_checksums(items: dict[str, Any]) -> dict[str, str | None]:
    return {item: rec.checksum for item, rec in items.items() if rec.status == "ok"}


def _has_run(ledger: Ledger) -> bool:
    try:
        ledger.progress(RUN_ID)
    except BadInputError:
        return False
    return True


def _check_drift_on_disk(out: Path, cfg: GenConfig) -> None:
    """Without a ledger run, a finished dataset.json still records the parameters."""
    if not (out / store.DATASET_JSON).is_file():
        return
    try:
        old, _ = store.read_dataset_json(out)
    except VerifyError:
        return  # unreadable: the shards' own meta decides what is reusable
    differing = differing_parameters(old.to_json(), cfg.to_json())
    if differing:
        raise ConfigDriftError(str(out / store.DATASET_JSON), differing)


def _wipe(out: Path) -> None:
    """--new: forget the previous dataset (top manifest first, so it stops being one)."""
    store.uncommit_dataset(out)
    for name in (store.DATASET_JSON, PROGRESS_NAME):
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    shards = out / SHARDS_DIR
    if shards.is_symlink() or shards.is_file():
        shards.unlink()
    elif shards.is_dir():
        shutil.rmtree(shards)


def _open_run(ledger: Ledger, out: Path, cfg: GenConfig, new: bool) -> None:
    if not new and not _has_run(ledger):
        _check_drift_on_disk(out, cfg)
    try:
        ledger.open_run(RUN_ID, cfg.to_json(), cfg.shard_count, new=new)
    except ConfigDriftError as exc:
        names = [name.replace("_", "-") for name in exc.differing]
        raise ConfigDriftError(str(out), names) from None


def _committed(out: Path, specs: list[ShardSpec]) -> set[int]:
    return {s.index for s in specs if (out / s.manifest).exists()}


def generate(cfg: GenConfig, opts: RunOptions, reporter: Reporter) -> int:
    """Run or resume generation; returns the exit code (errors raise, see cli)."""
    specs = preflight(cfg, opts)
    ranks = opts.ranks
    if ranks.distributed and opts.new:
        raise BadInputError(
            "--new: ranks share --out; start over with one process or remove the directory"
        )
    _make_dir(opts.out)
    refuse_symlinks(opts.out, OWNED_DIRS)
    # Rank 0 (or the only process) locks --out; other ranks lock their own ranks/rank-N/.
    lock_dir = opts.out if ranks.leader else ranks.rank_dir(opts.out)
    if lock_dir != opts.out:  # --out itself may be a link (a dataset on another disk)
        refuse_symlink(lock_dir)
    _make_dir(lock_dir)
    with RunLock(lock_dir), stop_on_signals(StopFlag()) as stop:
        if ranks.leader:
            check_ours(opts.out)  # again under the lock: nothing raced in since
            if not (opts.out / MARKER_NAME).exists():
                atomic_write(opts.out / MARKER_NAME, MARKER)
        ledger = _open_ledger(opts.out, opts.new)
        try:
            if opts.new:
                store.uncommit_dataset(opts.out)
            _open_run(ledger, opts.out, cfg, opts.new)
            if opts.new:
                _wipe(opts.out)
            remove_stale_temps(lock_dir)  # top-level temps belong to rank 0 alone
            items = ledger.items(RUN_ID)
            status = {item: rec.status for item, rec in items.items()}
            mine = ranks.mine(specs)
            store.cross_check(opts.out, cfg, mine, _ok_checksums(items))
            plan = classify_shards(
                mine, status, _committed(opts.out, mine), retry_errors=opts.retry_errors
            )
            session = Session(opts, cfg, mine, ledger, reporter, stop, status, all_specs=specs)
            return session.run(plan)
        finally:
            ledger.close()
            reporter.close()


@dataclass
class Session:
    opts: RunOptions
    cfg: GenConfig
    specs: list[ShardSpec]
    ledger: Ledger
    reporter: Reporter
    stop: StopFlag
    status: dict[str, str]
    failures: list[str] = field(default_factory=list)
    abort_reason: str | None = None
    started_s: float = field(default_factory=time.monotonic)
    all_specs: list[ShardSpec] | None = None  # every rank's shards; None: ``specs``

    def __post_init__(self) -> None:
        if self.all_specs is None:
            self.all_specs = self.specs
        self.done: set[int] = set()
        self.done_samples = 0  # kept with ``done``: summing per progress write is quadratic
        for spec in self.specs:
            if self.status.get(spec.item_id) == "ok":
                self._mark(spec, True)
        self.meter = RateMeter(self._progress_counts()[0])
        self.pending: collections.deque[tuple[str, ShardSpec]] = collections.deque()
        self.in_flight: dict[int, tuple[str, ShardSpec]] = {}  # shard index -> task
        self.holders: dict[int, int] = {}  # shard index -> pid of the worker holding it
        self.reported_dead: set[int] = set()

    def _mark(self, spec: ShardSpec, done: bool) -> None:
        if done and spec.index not in self.done:
            self.done.add(spec.index)
            self.done_samples += spec.count
        elif not done and spec.index in self.done:
            self.done.discard(spec.index)
            self.done_samples -= spec.count

    # -- progress

    def _progress_counts(self) -> tuple[int, int]:
        """(done, total) samples: the whole dataset's for rank 0 (every rank's shards, from
        the shared ledger), this rank's own for the others."""
        ranks = self.opts.ranks
        if not ranks.distributed:
            return self.done_samples, self.cfg.samples
        if ranks.leader:
            return self._global_done(), self.cfg.samples
        return self.done_samples, sum(s.count for s in self.specs)

    def _global_done(self) -> int:
        items = self.ledger.items(RUN_ID)
        assert self.all_specs is not None
        return sum(
            s.count
            for s in self.all_specs
            if s.item_id in items and items[s.item_id].status == "ok"
        )

    def write_progress(self, state: str = "running", *, force: bool = False) -> None:
        done, total = self._progress_counts()
        info = make_progress(done, total, "samples", self.meter.rate_per_s(done), state)
        ranks = self.opts.ranks
        where = self.opts.out if ranks.leader else ranks.rank_dir(self.opts.out)
        write_progress(where / PROGRESS_NAME, info)
        self.reporter.progress(done, info.total, info.rate_per_s, info.eta_s, force=force)

    # -- plan

    def run(self, plan: ShardPlan) -> int:
        out = self.opts.out
        for spec in plan.lost:
            self.reporter.event(
                f"{out / spec.manifest}: recorded done but missing; regenerating shard {spec.index}"
            )
            self.ledger.invalidate(RUN_ID, spec.item_id, "shard manifest missing on resume")
            self._mark(spec, False)
        if plan.generate:
            with contextlib.suppress(FileNotFoundError):  # another rank may remove it too
                store.uncommit_dataset(out)
        self.pending.extend(("generate", s) for s in plan.generate)
        self.pending.extend(("verify", s) for s in plan.check)
        self.write_progress(force=True)
        if self.pending:
            self._run_pool()
        return self._conclude()

    def _conclude(self) -> int:
        out = self.opts.out
        if self.stop.signum is not None:
            return self._stopped()
        if self.abort_reason or self.failures:
            self.ledger.set_status(RUN_ID, "failed")
            self.write_progress("failed", force=True)
            for line in self.failures:
                self.reporter.event(line)
            reason = self.abort_reason or f"{len(self.failures)} shard(s) failed"
            self.reporter.event(f"failed: {reason}; rerun the same command to retry")
            return EXIT_FAILED
        missing = [s for s in self.specs if s.index not in self.done]
        if missing:
            self.ledger.set_status(RUN_ID, "failed")
            self.write_progress("failed", force=True)
            self.reporter.event(
                f"incomplete: {len(missing)} shard(s) not generated (first: {missing[0].dirname})"
                "; rerun without --retry-errors to generate them"
            )
            return EXIT_FAILED
        if self.opts.ranks.distributed:
            outcome = self._await_ranks()
            if outcome is not None:
                return outcome
        assert self.all_specs is not None
        # Every rank's shards, against what the ledger recorded when each was generated.
        store.cross_check(out, self.cfg, self.all_specs, _ok_checksums(self.ledger.items(RUN_ID)))
        store.finalize(out, self.cfg, self.all_specs)
        self.ledger.set_status(RUN_ID, "done")
        self.write_progress("done", force=True)
        elapsed_s = time.monotonic() - self.started_s
        self.reporter.event(
            f"done: {self.cfg.samples} samples in {len(self.all_specs)} shards in {out} "
            f"({elapsed_s:.1f} s)"
        )
        return EXIT_OK

    def _await_ranks(self) -> int | None:
        """Distributed: a rank other than 0 is done with its shards (exit 0). Rank 0 waits,
        bounded by RANKS_STALL_S_MAX without a new shard, until every rank's shards are
        recorded and committed; None then means: finalize."""
        ranks = self.opts.ranks
        if not ranks.leader:
            self.write_progress("done", force=True)
            self.reporter.event(
                f"rank {ranks.rank}/{ranks.world_size}: done: {self.done_samples} samples in "
                f"{len(self.specs)} shards; rank 0 finalizes"
            )
            return EXIT_OK
        assert self.all_specs is not None
        last_done, last_change_s = -1, time.monotonic()
        while True:  # bounded: ends on completion, a stop signal, or a stall
            if self.stop.signum is not None:
                return self._stopped()
            done = self._global_done()
            if done == self.cfg.samples and len(_committed(self.opts.out, self.all_specs)) == len(
                self.all_specs
            ):
                return None
            now_s = time.monotonic()
            if done != last_done:
                last_done, last_change_s = done, now_s
                self.write_progress()
            elif now_s - last_change_s > RANKS_STALL_S_MAX:
                self.ledger.set_status(RUN_ID, "failed")
                self.write_progress("failed", force=True)
                self.reporter.event(
                    f"failed: no rank recorded a shard for {RANKS_STALL_S_MAX:.0f} s "
                    f"({done}/{self.cfg.samples} samples); rerun every rank to resume"
                )
                return EXIT_FAILED
            time.sleep(POLL_S)

    def _stopped(self) -> int:
        self.ledger.set_status(RUN_ID, "stopped")
        self.write_progress("stopped", force=True)
        name = signal.Signals(self.stop.signum or signal.SIGTERM).name
        self.reporter.event(
            f"stopped by {name} at {self.done_samples}/{self.cfg.samples} samples; "
            "rerun the same command to resume"
        )
        return EXIT_STOPPED

    # -- the pool

    def _run_pool(self) -> None:
        workers = max(1, min(self.opts.workers, len(self.pending)))
        pool = WorkerPool(self.opts.out, self.cfg, workers)
        try:
            self._drive(pool, workers)
            if self.stop.signum is not None or self.abort_reason:
                pool.request_stop()
                self._drain(pool, STOP_GRACE_S)
            else:
                pool.finish()
                self._drain(pool, JOIN_GRACE_S)
        finally:
            pool.close()

    def _drive(self, pool: WorkerPool, workers: int) -> None:
        limit = IN_FLIGHT_PER_WORKER * workers
        last_message_s = time.monotonic()
        # Bounded: each shard is generated at most twice per run (once after a failed
        # check), and a stall longer than STALL_S_MAX ends the run.
        while self.pending or self.in_flight:
            if self.stop.signum is not None or self.abort_reason:
                return
            while self.pending and len(self.in_flight) < limit:
                kind, spec = self.pending.popleft()
                self.in_flight[spec.index] = (kind, spec)
                pool.put(kind, spec)
            message = pool.get(POLL_S)
            if message is None:
                self._check_workers(pool)
                if time.monotonic() - last_message_s > STALL_S_MAX:
                    self.abort_reason = f"no worker reported for {STALL_S_MAX:.0f} s (stalled)"
                continue
            last_message_s = time.monotonic()
            self._handle_batch([message, *self._available(pool)])

    def _available(self, pool: WorkerPool) -> list[Any]:
        """Messages already waiting (bounded), so commits that arrive together are recorded
        with one ledger transaction and one progress write: on a busy disk each sync costs
        milliseconds, and a parent syncing per shard would fall behind fast workers."""
        messages = []
        while len(messages) < MESSAGES_PER_BATCH_MAX:
            message = pool.get(0.0)
            if message is None:
                break
            messages.append(message)
        return messages

    def _drain(self, pool: WorkerPool, grace_s: float) -> None:
        """Collect what workers still report until they have all exited (bounded)."""
        deadline_s = time.monotonic() + grace_s
        while not pool.all_exited() and time.monotonic() < deadline_s:
            message = pool.get(POLL_S)
            if message is not None:
                self._handle_batch([message, *self._available(pool)], allow_retry=False)
        self._handle_batch(self._available(pool), allow_retry=False)  # the workers are gone
        self._check_workers(pool)

    def _check_workers(self, pool: WorkerPool) -> None:
        dead = set(pool.dead()) - self.reported_dead
        if not dead:
            return
        self.reported_dead |= dead
        text = "a worker process died (killed or out of memory)"
        if self.pending or self.in_flight:  # work it may have held is lost: stop here
            self.abort_reason = self.abort_reason or text
        for index, pid in list(self.holders.items()):
            if pid in dead and index in self.in_flight:
                _, spec = self.in_flight.pop(index)
                self._record_error(spec, text)

    def _handle_batch(self, messages: list[Any], *, allow_retry: bool = True) -> None:
        succeeded: list[tuple[ShardSpec, str | None]] = []
        for message in messages:
            if isinstance(message, Started):
                self.holders[message.index] = message.pid
            elif isinstance(message, TaskResult):
                self._settle(message, succeeded, allow_retry)
        if succeeded:
            self._record_done(succeeded)

    def _settle(
        self, result: TaskResult, succeeded: list[tuple[ShardSpec, str | None]], allow_retry: bool
    ) -> None:
        self.holders.pop(result.index, None)
        entry = self.in_flight.pop(result.index, None)
        if entry is None:
            return  # already settled (its worker was declared dead)
        kind, spec = entry
        if result.ok:
            if kind == "generate" or spec.index not in self.done:
                succeeded.append((spec, result.videos_sha256))
        elif kind == "generate":
            self._record_error(spec, result.error or "unknown error")
            if result.disk_full:
                self.abort_reason = "the disk is full (or a file size limit was hit)"
        else:
            self._on_check_failed(spec, result, allow_retry)

    def _record_done(self, succeeded: list[tuple[ShardSpec, str | None]]) -> None:
        """Committed shards go into the ledger, then PROGRESS.json is rewritten."""
        faults.point("datagen.before_ledger_record")
        started_s = time.monotonic()
        self.ledger.record_many(
            RUN_ID, [(spec.item_id, "ok", checksum, None) for spec, checksum in succeeded]
        )
        faults.point("datagen.after_ledger_record")
        self.reporter.checkpoint(time.monotonic() - started_s)
        for spec, _ in succeeded:
            self._mark(spec, True)
        self.write_progress()

    def _record_error(self, spec: ShardSpec, text: str) -> None:
        self.failures.append(f"shard {spec.index} ({spec.dirname}) failed: {text}")
        self.reporter.error(self.failures[-1])
        self.ledger.record(RUN_ID, spec.item_id, status="error", error=text)
        self._mark(spec, False)

    def _on_check_failed(self, spec: ShardSpec, result: TaskResult, allow_retry: bool) -> None:
        where = result.path or str(self.opts.out / spec.dirname)
        self.reporter.event(f"{where}: {result.error}; regenerating shard {spec.index}")
        self.ledger.invalidate(RUN_ID, spec.item_id, f"{where}: {result.error}")
        self._mark(spec, False)
        with contextlib.suppress(FileNotFoundError):  # another rank may remove it too
            store.uncommit_dataset(self.opts.out)
        self.write_progress(force=True)
        if allow_retry:
            self.pending.appendleft(("generate", spec))


def read_status(out: Path) -> dict[str, Any]:
    """`datagen status`: the progress record (validated)."""
    path = out / PROGRESS_NAME
    if not path.is_file():
        raise BadInputError(f"{path}: no progress file; is {out} a datagen directory?")
    return read_progress(path).to_json()
