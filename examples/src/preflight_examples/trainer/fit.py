"""`trainer fit`: the training loop with non-blocking checkpoints and exact resume.

Exactness rests on three rules: (1) everything that decides the next step — weights,
optimizer moments, sampler position, every RNG, the step, the skip counter — is in the
checkpoint; (2) a checkpoint is taken only at a step boundary; (3) numerics are fixed
(deterministic kernels, a fixed thread count). A resumed run therefore replays the same
batches and dropout masks and ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import random
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import psutil
import torch
import torch.nn.functional as F

from preflight.durable import (
    BadInputError,
    RunLock,
    VerifyError,
    config_hash,
    faults,
    remove_stale_temps,
)
from preflight_examples.telemetry import Telemetry
from preflight_examples.telemetry.console import ProgressDisplay
from preflight_examples.trainer import early_signals, rng
from preflight_examples.trainer.checkpoint import (
    KIND_CHECKPOINT,
    KIND_FINAL,
    STATE_FORMAT,
    Persister,
    Snapshot,
    dirname,
    load_committed,
    prune,
    remove_dir,
    select_resume,
    serialize,
    write_committed,
)
from preflight_examples.trainer.config import FitConfig, check_model_fits, hyper_params
from preflight_examples.trainer.data import PIXEL_SCALE, Dataset, check_data_dir, open_dataset
from preflight_examples.trainer.fingerprint import fingerprint
from preflight_examples.trainer.model import VideoClassifier, parameter_count
from preflight_examples.trainer.optim import AdamW
from preflight_examples.trainer.rundir import (
    MetricsLog,
    ProgressWriter,
    RunPaths,
    check_ours,
    claim,
    finite_or_none,
    prepare_config,
    refuse_links,
)
from preflight_examples.trainer.sampler import EpochSampler, SamplerState
from preflight_examples.trainer.schedule import lr_at, scheduler_state

METRICS_RECENT_MAX = 32
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
CUBLAS_DETERMINISTIC = ":4096:8"


class NonFiniteError(Exception):
    """A non-finite loss or gradient stopped the run (exit 1)."""


class Stopped(Exception):
    """SIGTERM/SIGINT: the run stopped after a clean checkpoint (exit 75)."""


def warn(message: str) -> None:
    print(f"trainer: {message}", file=sys.stderr, flush=True)


class StopSignals:
    """Turns SIGTERM/SIGINT into a flag the loop checks at each step boundary."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def __enter__(self) -> StopSignals:
        # signal.signal only works on the main thread; elsewhere the defaults stay.
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        # A signal that arrived during start-up (trainer.early_signals) still stops the run.
        self.signum = self.signum or early_signals.first_pending()
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise BadInputError("--device cuda: CUDA is not available on this machine")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def configure_torch(threads: int) -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    torch.set_num_threads(threads)
    # warn_only: an op without a deterministic kernel warns instead of failing the run;
    # the model uses none, and the exactness tests would catch one that slipped in.
    # The public torch.use_deterministic_algorithms also imports inductor (~1.8 s of the
    # resume budget) only to set a compiler flag we never use, so set the flag directly.
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is not None:
        setter(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class StepResult:
    loss: float
    grad_norm: float
    lr: float
    finite: bool


@dataclass
class Summary:
    start_step: int
    steps: int
    train_s: float = 0.0
    ckpt_stall_s: float = 0.0
    checkpoints: int = 0
    samples: int = 0
    fingerprint: str = ""

    def to_json(self) -> dict[str, Any]:
        rate = self.samples / self.train_s if self.train_s > 0 else 0.0
        return {
            "event": "fit_done",
            "start_step": self.start_step,
            "steps": self.steps,
            "train_s": round(self.train_s, 4),
            "ckpt_stall_s": round(self.ckpt_stall_s, 4),
            "checkpoints": self.checkpoints,
            "samples_per_s": round(rate, 2),
            "fingerprint": self.fingerprint,
        }


class Trainer:
    """Model, optimizer and sampler, and the state a checkpoint captures."""

    def __init__(self, cfg: FitConfig, dataset: Dataset, device: torch.device, run_hash: str):
        info = dataset.info
        self.cfg = cfg
        self.dataset = dataset
        self.device = device
        self.run_hash = run_hash
        self.warmup_steps = cfg.warmup_steps_resolved
        seed_everything(cfg.seed)
        self.model = VideoClassifier(
            info.channels, info.classes, cfg.channels, cfg.depth, cfg.dropout
        ).to(device)
        self.optimizer = AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sampler = EpochSampler(info.samples, SamplerState(cfg.seed, 0, 0))
        self.step = 0
        self.lr = lr_at(0, cfg.lr, self.warmup_steps, cfg.steps, cfg.min_lr)
        self.skipped = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=METRICS_RECENT_MAX)

    def state(self) -> dict[str, Any]:
        """References to the live state; serialize() it before another thread may see it."""
        return {
            "format": STATE_FORMAT,
            "step": self.step,
            "config_hash": self.run_hash,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler_state(self.step, self.lr),
            "sampler": self.sampler.state.to_json(),
            "rng": rng.capture(),
            "counters": {"skipped_nonfinite": self.skipped},
            "metrics_recent": list(self.recent),
        }

    def load(self, state: dict[str, Any], where: str) -> None:
        """Restore from a checkpoint state (already verified against its manifest)."""
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            sampler = state["sampler"]
            self.sampler = EpochSampler(
                self.dataset.info.samples,
                SamplerState(int(sampler["seed"]), int(sampler["epoch"]), int(sampler["position"])),
            )
            self.skipped = int(state["counters"]["skipped_nonfinite"])
            self.lr = float(state["scheduler"]["lr"])
            self.recent.extend(state["metrics_recent"])
            self.step = int(state["step"])
        except (KeyError, TypeError, ValueError, RuntimeError, BadInputError) as exc:
            raise VerifyError(where, f"state does not fit this model/run: {exc}") from None
        if self.sampler.seed != self.cfg.seed:
            raise VerifyError(where, "sampler seed differs from --seed")
        rng.restore(state["rng"], where)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        faults.point("trainer.data")  # the data loader: sleep=S here is a data-loading stall
        videos, labels = self.dataset.batch(self.sampler.next_indices(self.cfg.batch_size))
        x = torch.from_numpy(videos).to(self.device, non_blocking=True)
        x = x.float().div_(PIXEL_SCALE).sub_(1.0)
        return x, torch.from_numpy(labels).to(self.device, non_blocking=True)

    def train_step(self) -> StepResult:
        """One optimizer update over ``accum`` micro-batches; skipped when non-finite."""
        cfg = self.cfg
        self.lr = lr_at(self.step, cfg.lr, self.warmup_steps, cfg.steps, cfg.min_lr)
        self.optimizer.lr = self.lr
        self.optimizer.zero_grad()
        plant_nan = faults.point("trainer.loss")
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(cfg.accum):
            videos, labels = self._batch()
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                logits = self.model(videos)
            loss = F.cross_entropy(logits.float(), labels) / cfg.accum
            if plant_nan and micro == 0:
                loss = loss * math.nan
            loss.backward()
            loss_sum += loss.detach()
        max_norm = cfg.clip if cfg.clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        loss_value, norm_value = float(loss_sum), float(grad_norm)
        finite = math.isfinite(loss_value) and math.isfinite(norm_value)
        if finite:
            self.optimizer.step()
        self.step += 1
        return StepResult(loss_value, norm_value, self.lr, finite)


class FitRun:
    """One `trainer fit` process under the run lock: resume, loop, checkpoint, finish."""

    def __init__(
        self,
        cfg: FitConfig,
        paths: RunPaths,
        trainer: Trainer,
        hyper: dict[str, Any],
        stop: StopSignals,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.cfg = cfg
        # No flags given: a Telemetry with no outputs, so the calls below need no ifs.
        self.telemetry = telemetry if telemetry is not None else Telemetry("trainer")
        self.paths = paths
        self.trainer = trainer
        self.hyper = hyper
        self.stop = stop
        self.persister = Persister(self._persist)
        self.metrics = MetricsLog(paths.metrics)
        self.process = psutil.Process()
        self.summary = Summary(start_step=0, steps=cfg.steps)
        self.progress: ProgressWriter | None = None
        self.done_step = 0  # the last step that completed (counted in PROGRESS.json)
        # A bar on a terminal, a line a second in a log; nothing when JSON logs own stderr.
        self.display = ProgressDisplay("trainer", "steps", enabled=self.telemetry.log_json != "-")
        self._last_log_s = 0.0
        self._last_log_step = 0

    # -- persistence (the persist thread runs _persist) ------------------------------------
    def _persist(self, snapshot: Snapshot) -> None:
        started_s = time.monotonic()
        step = snapshot.step
        meta = {"kind": KIND_CHECKPOINT, "step": step, "config_hash": self.trainer.run_hash}
        write_committed(self.paths.checkpoints / dirname(step), snapshot.data, meta, self.hyper)
        prune(self.paths.checkpoints, step, self.cfg.keep)
        self.telemetry.checkpoint(time.monotonic() - started_s)

    def checkpoint(self) -> None:
        """Snapshot at this step boundary and persist it in the background."""
        started_s = time.monotonic()
        # Never commit a state trained on data that changed under the run (memory-mapped).
        self.trainer.dataset.check_unchanged()
        self.persister.wait()  # never start a persist before the previous one committed
        faults.point("trainer.before_snapshot")
        snapshot = Snapshot(self.trainer.step, serialize(self.trainer.state()))
        faults.point("trainer.after_snapshot")
        self.persister.submit(snapshot)
        self.summary.ckpt_stall_s += time.monotonic() - started_s
        self.summary.checkpoints += 1

    def write_final(self) -> str:
        trainer = self.trainer
        trainer.dataset.check_unchanged()
        model_state = trainer.model.state_dict()
        optimizer_state = trainer.optimizer.state_dict()
        digest = fingerprint(model_state, optimizer_state)
        state = {
            "format": STATE_FORMAT,
            "step": trainer.step,
            "config_hash": trainer.run_hash,
            "model": model_state,
            "optimizer": optimizer_state,
            "fingerprint": digest,
            "counters": {"skipped_nonfinite": trainer.skipped},
        }
        meta = {
            "kind": KIND_FINAL,
            "step": trainer.step,
            "config_hash": trainer.run_hash,
            "fingerprint": digest,
        }
        write_committed(
            self.paths.final, serialize(state), meta, self.hyper, point_prefix="trainer.final"
        )
        return digest

    # -- resume ----------------------------------------------------------------------------
    def resume(self) -> None:
        resumed = select_resume(self.paths.checkpoints, self.trainer.run_hash, warn)
        if resumed is None:
            warn(f"starting at step 0 of {self.cfg.steps} ({self._describe()})")
        else:
            path, state = resumed
            self.trainer.load(state, str(path))
            self.persister.committed_step = self.trainer.step
            warn(f"resuming from {path} (step {self.trainer.step} of {self.cfg.steps})")
        start = self.done_step = self.trainer.step
        self.metrics.truncate_after(start)
        self.summary.start_step = start
        self.progress = ProgressWriter(
            self.paths.progress, self.cfg.steps, start, self.cfg.progress_every_ms / 1000.0
        )
        self.progress.write(start, force=True)
        self.telemetry.progress(start, self.cfg.steps)
        self.display.update(start, self.cfg.steps, 0.0, None, force=True)

    def _describe(self) -> str:
        t = self.trainer
        return (
            f"{parameter_count(t.model)} parameters on {t.device}, "
            f"{self.cfg.threads} thread(s), bf16={self.cfg.bf16}"
        )

    # -- the loop --------------------------------------------------------------------------
    def loop(self) -> None:
        cfg, trainer = self.cfg, self.trainer
        started_s = time.monotonic()
        self._last_log_s, self._last_log_step = started_s, trainer.step
        while trainer.step < cfg.steps:
            if self.stop.signum is not None:
                self.summary.train_s = time.monotonic() - started_s
                self.stop_cleanly()
            result = trainer.train_step()
            if self.persister.busy:
                # The snapshot taken at the last boundary persisted while this step computed;
                # it must be committed before this step counts, so a kill at any instant
                # loses at most --ckpt-every steps. Stalls only when a persist outlasts a step.
                waited_s = time.monotonic()
                self.persister.wait()
                self.summary.ckpt_stall_s += time.monotonic() - waited_s
            faults.point("trainer.after_optimizer_step")
            self.summary.samples += cfg.batch_size * cfg.accum
            self.after_step(result)
            if cfg.ckpt_every and trainer.step % cfg.ckpt_every == 0 and trainer.step < cfg.steps:
                self.checkpoint()
        self.persister.wait()
        self.summary.train_s = time.monotonic() - started_s

    def after_step(self, result: StepResult) -> None:
        cfg, step = self.cfg, self.trainer.step
        self.telemetry.loss(result.loss)
        self.telemetry.grad_norm(result.grad_norm)
        if not result.finite:
            self.trainer.skipped += 1
            what = (
                f"non-finite loss or gradient at step {step} (loss={result.loss}, "
                f"grad norm={result.grad_norm})"
            )
            if not cfg.skip_nonfinite:
                raise NonFiniteError(
                    f"{what}; stopped, keeping the last good checkpoint; "
                    "rerun with --skip-nonfinite to skip such steps"
                )
            self.display.clear()
            warn(f"{what}: step skipped ({self.trainer.skipped} so far)")
            if self.trainer.skipped > cfg.max_skips:
                raise NonFiniteError(
                    f"more than --max-skips {cfg.max_skips} non-finite steps "
                    f"(latest at step {step})"
                )
        if step % cfg.log_every == 0 or step == cfg.steps or not result.finite:
            self.log_metrics(result)
        self.done_step = step
        assert self.progress is not None
        self.progress.write(step)
        rate_per_s = self.progress.rate_per_s(step)
        eta_s = (cfg.steps - step) / rate_per_s if rate_per_s > 0 else None
        self.telemetry.progress(step, cfg.steps, rate_per_s, eta_s)
        self.display.update(step, cfg.steps, rate_per_s, eta_s, force=step == cfg.steps)

    def log_metrics(self, result: StepResult) -> None:
        now_s = time.monotonic()
        step = self.trainer.step
        samples = (step - self._last_log_step) * self.cfg.batch_size * self.cfg.accum
        elapsed_s = now_s - self._last_log_s
        memory = self.process.memory_info()
        record = {
            "step": step,
            "loss": finite_or_none(result.loss),
            "lr": result.lr,
            "grad_norm": finite_or_none(result.grad_norm),
            "samples_per_s": round(samples / elapsed_s, 3) if elapsed_s > 0 else None,
            "rss_bytes": memory.rss,
            # RSS minus file-backed pages: the memory-mapped dataset's page cache is
            # counted in rss and grows until every sample was touched once; this does not.
            "rss_anon_bytes": memory.rss - getattr(memory, "shared", 0),
            "epoch": self.trainer.sampler.epoch,
            "skipped": not result.finite,
            "time_unix": round(time.time(), 6),
        }
        self.metrics.append(record)
        self.trainer.recent.append(record)
        self._last_log_s, self._last_log_step = now_s, step

    def stop_cleanly(self) -> None:
        """Finish with a committed checkpoint of the current step, then exit 75."""
        step = self.trainer.step
        self.persister.wait()
        if step > 0 and self.persister.committed_step != step:
            self.checkpoint()
            self.persister.wait()
        assert self.progress is not None
        self.progress.write(step, state="stopped", force=True)
        name = signal.Signals(self.stop.signum or signal.SIGTERM).name
        where = f"checkpoint {dirname(step)} is committed" if step else "no steps were done"
        raise Stopped(
            f"stopped by {name} after step {step}; {where}; rerun the same command to resume"
        )

    def fail(self) -> None:
        """On an error: let an in-flight (good) persist commit, mark progress failed."""
        try:
            self.persister.wait()
        except Exception as exc:  # noqa: BLE001 - the original error is the one to report
            warn(f"checkpoint persist also failed: {exc}")
        if self.progress is None:
            return
        try:
            self.progress.write(self.done_step, state="failed", force=True)
        except (OSError, VerifyError) as exc:  # a full disk or a damaged run dir fails this
            # too; the original error is the one to report
            warn(f"could not mark progress failed: {exc}")


def _finished(paths: RunPaths, run_hash: str, steps: int) -> bool:
    """True when final/ holds this run's committed final state; a bad final/ is removed."""
    if not paths.final.exists():
        return False
    try:
        state = load_committed(paths.final, KIND_FINAL, steps, run_hash)
        if fingerprint(state["model"], state["optimizer"]) != state.get("fingerprint"):
            raise VerifyError(str(paths.final / "state.pt"), "fingerprint does not match")
        return True
    except VerifyError as exc:
        warn(f"final state {paths.final} is not valid ({exc}); recomputing from checkpoints")
        remove_dir(paths.final)
        return False


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):  # bounded by the path's depth
        if candidate.exists():
            return candidate
    return Path("/")


def check_out(out: Path) -> None:
    """--out must be creatable and writable here (exit 2), or the first write fails with a
    raw OSError (exit 1) after the user has waited for the dataset to be verified."""
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out: {out} exists and is not a directory")
    probe = _nearest_existing(out.absolute())
    if not probe.is_dir():
        raise BadInputError(f"--out: {out}: {probe} is not a directory")
    if os.statvfs(probe).f_flag & os.ST_RDONLY:
        raise BadInputError(f"--out: {out}: {probe} is on a read-only filesystem")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BadInputError(f"--out: {out}: directory {probe} is not writable")


def make_run_dir(paths: RunPaths) -> None:
    """Create RUN_DIR; a path the OS will not create (/proc/x, a read-only mount) is bad
    input (exit 2) naming it, not a raw OSError."""
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"--out: cannot create {paths.root}: {exc.strerror or exc}") from None


def open_run_dir(paths: RunPaths) -> None:
    """Under the run lock, before anything is read or written: no symlinks among the run's
    own files, and the directory is (now marked) a trainer run."""
    refuse_links(paths)
    claim(paths)


def numerics_of(cfg: FitConfig, device: torch.device) -> dict[str, Any]:
    """What decides the numbers besides the hyper-parameters (recorded in config.json)."""
    return {"threads": cfg.threads, "device": device.type}


def _prepare(cfg: FitConfig) -> tuple[RunPaths, torch.device]:
    """Checks that need no writes, so bad input exits 2 with nothing written."""
    if not cfg.data:
        raise BadInputError("--data: must not be empty")
    if not cfg.out:
        raise BadInputError("--out: must not be empty (it would mean the current directory)")
    check_model_fits(cfg, psutil.virtual_memory().available)
    check_data_dir(Path(cfg.data))
    out = Path(cfg.out)
    check_out(out)
    paths = RunPaths(out)
    check_ours(paths)
    return paths, resolve_device(cfg.device)


def run_fit(
    cfg: FitConfig,
    emit: Callable[[dict[str, Any]], None],
    telemetry: Telemetry | None = None,
) -> None:
    """Run or resume a fit. Raises BadInputError/LockedError/VerifyError/NonFiniteError/
    Stopped, which the CLI maps to exit codes; ``emit`` receives the final summary."""
    paths, device = _prepare(cfg)
    with StopSignals() as stop:
        make_run_dir(paths)
        with RunLock(paths.root):
            open_run_dir(paths)
            remove_stale_temps(paths.root)
            dataset = open_dataset(cfg.data, paths.data_verified, cfg.verify_data)
            hyper = hyper_params(cfg, dataset.identity)
            run_hash = config_hash(hyper)
            prepare_config(paths, hyper, run_hash, cfg.new, numerics_of(cfg, device))
            configure_torch(cfg.threads)
            if _finished(paths, run_hash, cfg.steps):
                warn(f"{paths.root} is already complete ({cfg.steps} steps)")
                ProgressWriter(paths.progress, cfg.steps, cfg.steps).write(
                    cfg.steps, state="done", force=True
                )
                return
            trainer = Trainer(cfg, dataset, device, run_hash)
            run = FitRun(cfg, paths, trainer, hyper, stop, telemetry)
            try:
                run.resume()
                run.loop()
                faults.point("trainer.before_final")
                run.summary.fingerprint = run.write_final()
            except Stopped:
                raise
            except BaseException:
                run.fail()
                raise
            finally:
                run.metrics.close()
                run.display.close()  # the bar's line ends before any message or summary
            assert run.progress is not None
            run.progress.write(cfg.steps, state="done", force=True)
            emit(run.summary.to_json())
