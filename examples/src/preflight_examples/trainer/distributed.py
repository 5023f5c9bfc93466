"""Data-parallel `trainer fit` on PyTorch's own engine: torch.distributed under torchrun.

    trainer fit --nproc P [--max-restarts R] ...      (execs torchrun --standalone)
    torchrun --nproc-per-node P -m preflight_examples.trainer.cli fit ...

Every rank runs this module when torchrun's WORLD_SIZE > 1. The model is wrapped in
DistributedDataParallel (gloo on CPU, nccl on CUDA); gradient accumulation skips the
all-reduce on all but the last micro-batch (``no_sync``); bf16 autocast as in one process.

Sharding: all ranks keep the same resumable EpochSampler; each micro-step draws one global
batch of ``batch_size * W`` indices and rank r takes ``[r::W]`` of it (DistributedSampler's
stride). The global order therefore stays a pure function of (seed, epoch, position).
Dropout differs per rank: after the (identical) initialisation, torch is re-seeded per rank.

Rank 0 alone holds the run lock and writes the config, metrics, PROGRESS.json, checkpoints
and the final state. A checkpoint also carries every rank's sampler and RNG state (gathered
with all_gather_object; tensors, lists, dicts, str and int only, so it stays
``torch.load(weights_only=True)``-loadable). On resume rank 0 selects the checkpoint and
broadcasts its path; every rank loads it and restores its own entry, so a resumed run ends
bit-identical to an uninterrupted one with the same world size. The world size is part of
the run's identity (config hash). Every collective is bounded by the group's timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from preflight.durable import (
    BadInputError,
    RunLock,
    VerifyError,
    config_hash,
    faults,
    remove_stale_temps,
)
from preflight_examples.telemetry import Telemetry
from preflight_examples.trainer import early_signals, rng
from preflight_examples.trainer.checkpoint import KIND_CHECKPOINT, load_committed, select_resume
from preflight_examples.trainer.config import FitConfig, hyper_params
from preflight_examples.trainer.data import PIXEL_SCALE, open_dataset
from preflight_examples.trainer.fit import (
    FitRun,
    StepResult,
    Stopped,
    StopSignals,
    Trainer,
    _finished,
    _prepare,
    configure_torch,
    make_run_dir,
    numerics_of,
    open_run_dir,
    warn,
)
from preflight_examples.trainer.rundir import (
    ProgressWriter,
    RunPaths,
    check_drift,
    prepare_config,
    stored_hyper,
)
from preflight_examples.trainer.sampler import EpochSampler, SamplerState
from preflight_examples.trainer.schedule import lr_at

ENV_PARAM_SYNC = "PREFLIGHT_CHECK_PARAM_SYNC"  # "1": hash-compare parameters every step
ENV_TIMEOUT_S = "PREFLIGHT_DIST_TIMEOUT_S"
# Longer than a checkpoint persist may take (checkpoint.PERSIST_JOIN_TIMEOUT_S): the other
# ranks wait in the next collective while rank 0 waits for its persist.
TIMEOUT_S_DEFAULT = 900.0
NPROC_MAX = 1024
RESTARTS_MAX = 100
MONITOR_INTERVAL_S = "0.5"  # how often torchrun looks for a dead rank
RANK_SEED_STRIDE = 1_000_003
RANKS_PER_CORE_MAX = 2
RANK_BYTES_ESTIMATE = 400 << 20  # torch + gloo + a small model, measured ~300 MiB per rank


class ParamDesyncError(RuntimeError):
    """Parameters differ across ranks after an optimizer step (a DDP invariant broke)."""


class PeerFailed(RuntimeError):
    """Rank 0 failed while setting up; the other ranks stop with its message."""


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def leader(self) -> bool:
        return self.rank == 0


def world_from_env(env: Mapping[str, str] | None = None) -> World:
    """torchrun's RANK/WORLD_SIZE/LOCAL_RANK; one process when WORLD_SIZE is unset (pure)."""
    env = os.environ if env is None else env
    if not env.get("WORLD_SIZE"):
        return World()
    try:
        world = World(
            int(env.get("RANK", "0")), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0"))
        )
    except ValueError as exc:
        raise RuntimeError(f"torchrun environment is not numeric: {exc}") from None
    if not 0 <= world.rank < world.world_size:
        raise RuntimeError(f"RANK {world.rank} outside WORLD_SIZE {world.world_size}")
    return world


def restarted(env: Mapping[str, str] | None = None) -> bool:
    """True in a group torchrun restarted after a failure (then --new must not wipe again)."""
    env = os.environ if env is None else env
    return env.get("TORCHELASTIC_RESTART_COUNT", "0") not in ("", "0")


def fit_argv(cfg: FitConfig) -> list[str]:
    """`fit` arguments that reproduce ``cfg`` exactly (str(float) round-trips) (pure)."""
    argv = ["fit"]
    for item in fields(cfg):
        value = getattr(cfg, item.name)
        flag = "--" + item.name.replace("_", "-")
        if isinstance(value, bool):
            argv += [flag] if value else []
        else:
            argv += [flag, str(value)]
    return argv


def torchrun_prefix(
    nproc: int, max_restarts: int, monitor_interval_s: str = MONITOR_INTERVAL_S
) -> list[str]:
    """torchrun's own argv (standalone rendezvous on this machine); the job follows (pure)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "--max-restarts",
        str(max_restarts),
        "--monitor-interval",
        monitor_interval_s,
    ]


def launch_argv(
    cfg: FitConfig, nproc: int, max_restarts: int, passthrough: Sequence[str] = ()
) -> list[str]:
    """The torchrun command line `trainer fit --nproc P` execs (pure)."""
    assert 2 <= nproc <= NPROC_MAX and 0 <= max_restarts <= RESTARTS_MAX
    return [
        *torchrun_prefix(nproc, max_restarts),
        "-m",
        "preflight_examples.trainer.cli",
        *fit_argv(cfg),
        *passthrough,
    ]


def exec_torchrun(
    cfg: FitConfig, nproc: int, max_restarts: int, passthrough: Sequence[str] = ()
) -> None:
    """Replace this process with torchrun (bad input is refused here first, with exit 2)."""
    check_launch(nproc, max_restarts)
    _prepare(cfg)
    refuse_like_a_rank(cfg, nproc)
    argv = launch_argv(cfg, nproc, max_restarts, passthrough)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


def refuse_like_a_rank(cfg: FitConfig, nproc: int) -> None:
    """Refuse here, with the rank's own exit code, what rank 0 would refuse at once: a run
    directory another fit holds (3), an unreadable configuration (4), changed
    hyper-parameters (2). torchrun reports any failed rank as exit 1, so without this a
    script could not tell a locked run from a crash. The ranks still take the lock and
    check the configuration themselves (a race after this check is caught there); a changed
    dataset is found by the ranks, which hash it."""
    paths = RunPaths(Path(cfg.out))
    if not paths.root.is_dir():
        return
    with RunLock(paths.root):
        if cfg.new or not paths.config.exists():
            return
        old = stored_hyper(paths)
        check_drift(paths.config, old, _hyper(cfg, str(old.get("data_sha256", "")), nproc))


def timeout_s() -> float:
    raw = os.environ.get(ENV_TIMEOUT_S, "")
    try:
        value = float(raw) if raw else TIMEOUT_S_DEFAULT
    except ValueError:
        value = TIMEOUT_S_DEFAULT
    return value if value > 0 else TIMEOUT_S_DEFAULT


# Set again here for callers that reach a rank without trainer.cli (tests); idempotent.
die_with_launcher = early_signals.die_with_launcher


def init_group(backend: str, world: World) -> None:
    """init_process_group through torchrun's store, with keys prefixed per restart: a
    restarted group must never read the killed group's addresses (gloo would then wait
    for a peer that is gone until the timeout)."""
    timeout = timedelta(seconds=timeout_s())
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    host, port = os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", "")
    if not host or not port:
        dist.init_process_group(backend, timeout=timeout)
        return
    from torch.distributed.rendezvous import _create_c10d_store

    base = _create_c10d_store(host, int(port), world.rank, world.world_size, timeout)
    store = dist.PrefixStore(f"preflight/restart-{restart}", base)
    dist.init_process_group(
        backend, store=store, rank=world.rank, world_size=world.world_size, timeout=timeout
    )


# ---- collectives ----------------------------------------------------------------------------


def gather(value: Any, world: World) -> list[Any]:
    out: list[Any] = [None] * world.world_size
    dist.all_gather_object(out, value)
    return out


def broadcast(value: Any) -> Any:
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def params_digest(model: torch.nn.Module) -> bytes:
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        digest.update(name.encode())
        flat = param.detach().to("cpu").contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.digest()


def check_param_sync(model: torch.nn.Module, step: int, world: World, device: torch.device) -> None:
    """All-gather a sha256 of the parameters (32 bytes per rank, one tensor collective);
    raise ParamDesyncError when any rank's differs."""
    mine = torch.frombuffer(bytearray(params_digest(model)), dtype=torch.uint8).to(device)
    digests = [torch.empty_like(mine) for _ in range(world.world_size)]
    dist.all_gather(digests, mine)
    hexes = [bytes(d.cpu().tolist()).hex() for d in digests]
    if len(set(hexes)) != 1:
        listed = ", ".join(f"rank {r}: {h[:12]}" for r, h in enumerate(hexes))
        raise ParamDesyncError(f"parameters differ across ranks after step {step} ({listed})")


# ---- the rank's trainer and run -------------------------------------------------------------


class DistTrainer(Trainer):
    """Trainer with DDP, a sharded batch, and every rank's state in the checkpoint."""

    def __init__(
        self, cfg: FitConfig, dataset: Any, device: torch.device, run_hash: str, world: World
    ) -> None:
        super().__init__(cfg, dataset, device, run_hash)
        self.world = world
        torch.manual_seed((cfg.seed + RANK_SEED_STRIDE * (world.rank + 1)) % 2**63)
        device_ids = [device.index] if device.type == "cuda" else None
        self.ddp = DistributedDataParallel(self.model, device_ids=device_ids)
        self.rank_states: list[dict[str, Any]] = []

    def state(self) -> dict[str, Any]:
        return {**super().state(), "world_size": self.world.world_size, "ranks": self.rank_states}

    def own_state(self) -> dict[str, Any]:
        return {
            "rank": self.world.rank,
            "sampler": self.sampler.state.to_json(),
            "rng": rng.capture(),
        }

    def load(self, state: dict[str, Any], where: str) -> None:
        super().load(state, where)
        ranks = state.get("ranks")
        if not isinstance(ranks, list) or len(ranks) != self.world.world_size:
            saved = len(ranks) if isinstance(ranks, list) else "no"
            raise VerifyError(where, f"saved by {saved} ranks; resume with --nproc {saved}")
        mine = ranks[self.world.rank]
        try:
            sampler = mine["sampler"]
            self.sampler = EpochSampler(
                self.dataset.info.samples,
                SamplerState(int(sampler["seed"]), int(sampler["epoch"]), int(sampler["position"])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise VerifyError(where, f"rank {self.world.rank}'s sampler state: {exc}") from None
        rng.restore(mine["rng"], where)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        faults.point("trainer.data")
        world = self.world
        indices = self.sampler.next_indices(self.cfg.batch_size * world.world_size)
        videos, labels = self.dataset.batch(indices[world.rank :: world.world_size])
        x = torch.from_numpy(videos).to(self.device, non_blocking=True)
        x = x.float().div_(PIXEL_SCALE).sub_(1.0)
        return x, torch.from_numpy(labels).to(self.device, non_blocking=True)

    def train_step(self) -> StepResult:
        cfg = self.cfg
        self.lr = lr_at(self.step, cfg.lr, self.warmup_steps, cfg.steps, cfg.min_lr)
        self.optimizer.lr = self.lr
        self.optimizer.zero_grad()
        plant_nan = faults.point("trainer.loss")
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(cfg.accum):
            videos, labels = self._batch()
            last = micro == cfg.accum - 1
            # Only the last micro-batch all-reduces the accumulated gradients.
            with contextlib.nullcontext() if last else self.ddp.no_sync():
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                    logits = self.ddp(videos)
                loss = F.cross_entropy(logits.float(), labels) / cfg.accum
                if plant_nan and micro == 0:
                    loss = loss * math.nan
                loss.backward()
            loss_sum += loss.detach()
        # The mean loss over ranks: every rank then takes the same skip decision.
        dist.all_reduce(loss_sum)
        loss_sum /= self.world.world_size
        max_norm = cfg.clip if cfg.clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        loss_value, norm_value = float(loss_sum), float(grad_norm)
        finite = math.isfinite(loss_value) and math.isfinite(norm_value)
        if finite:
            self.optimizer.step()
        if self.world.rank == self.world.world_size - 1 and faults.point("trainer.desync"):
            with torch.no_grad():  # planted defect: the param-sync check must catch it
                next(self.model.parameters()).add_(1e-3)
        self.step += 1
        return StepResult(loss_value, norm_value, self.lr, finite)


class AgreedStop:
    """The stop flag every rank agrees on: a signal on any rank stops all of them at the
    same step boundary (one tiny all-reduce per read; the loop reads it once per step)."""

    def __init__(self, signals: StopSignals, device: torch.device) -> None:
        self.signals = signals
        self.device = device

    @property
    def signum(self) -> int | None:
        flag = torch.tensor([self.signals.signum or 0], dtype=torch.int64, device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        value = int(flag.item())
        return value or None


class _NullProgress:
    """Ranks other than 0 publish no progress (rank 0's PROGRESS.json is the job's)."""

    def write(self, done: int, state: str = "running", force: bool = False) -> None:
        return None

    def rate_per_s(self, done: int) -> float:
        return 0.0


class _NullMetrics:
    def truncate_after(self, step: int) -> int:
        return 0

    def append(self, record: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None


class DistFitRun(FitRun):
    """FitRun on one rank: rank 0 persists and reports; all ranks step and gather."""

    def __init__(
        self,
        cfg: FitConfig,
        paths: RunPaths,
        trainer: DistTrainer,
        hyper: dict[str, Any],
        stop: Any,
        world: World,
        telemetry: Telemetry,
    ) -> None:
        super().__init__(cfg, paths, trainer, hyper, stop, telemetry)
        self.dist_trainer = trainer
        self.world = world
        if not world.leader:
            self.metrics = _NullMetrics()  # type: ignore[assignment]
            self.display.enabled = False  # one job, one progress display: rank 0's
        self.param_sync = os.environ.get(ENV_PARAM_SYNC) == "1"
        self.param_checks = 0

    def checkpoint(self) -> None:
        """Collective: every rank hands its sampler and RNG state to rank 0, which persists."""
        self.dist_trainer.rank_states = gather(self.dist_trainer.own_state(), self.world)
        if self.world.leader:
            super().checkpoint()
        else:
            self.summary.checkpoints += 1
        self.dist_trainer.rank_states = []

    def resume(self) -> None:
        found: tuple[str, int] | None = None
        error = ""
        if self.world.leader:
            try:
                resumed = select_resume(self.paths.checkpoints, self.trainer.run_hash, warn)
                if resumed is not None:
                    found = (str(resumed[0]), int(resumed[1]["step"]))
            except Exception as exc:  # noqa: BLE001 - told to the other ranks, then re-raised
                error = str(exc)
                broadcast((None, error))
                raise
        found, error = broadcast((found, error))
        if error:
            raise PeerFailed(f"rank 0 could not select a checkpoint: {error}")
        if found is None:
            if self.world.leader:
                warn(f"starting at step 0 of {self.cfg.steps} ({self.world.world_size} ranks)")
        else:
            path, step = Path(found[0]), found[1]
            state = load_committed(path, KIND_CHECKPOINT, step, self.trainer.run_hash)
            self.trainer.load(state, str(path))
            self.persister.committed_step = self.trainer.step
            if self.world.leader:
                warn(f"resuming from {path} (step {self.trainer.step} of {self.cfg.steps})")
        start = self.done_step = self.trainer.step
        self.summary.start_step = start
        self.metrics.truncate_after(start)
        if self.world.leader:
            self.progress = ProgressWriter(
                self.paths.progress, self.cfg.steps, start, self.cfg.progress_every_ms / 1000.0
            )
            self.progress.write(start, force=True)
        else:
            self.progress = _NullProgress()  # type: ignore[assignment]

    def after_step(self, result: StepResult) -> None:
        if self.param_sync:
            check_param_sync(self.trainer.model, self.trainer.step, self.world, self.trainer.device)
            self.param_checks += 1
        super().after_step(result)


def _setup_leader(
    cfg: FitConfig, paths: RunPaths, world: World, device: torch.device
) -> tuple[Any, dict[str, Any], str, bool]:
    open_run_dir(paths)
    dataset = open_dataset(cfg.data, paths.data_verified, cfg.verify_data)
    hyper = _hyper(cfg, dataset.identity, world.world_size)
    run_hash = config_hash(hyper)
    new = cfg.new and not restarted()
    prepare_config(paths, hyper, run_hash, new, numerics_of(cfg, device))
    return dataset, hyper, run_hash, _finished(paths, run_hash, cfg.steps)


def _hyper(cfg: FitConfig, data_identity: str, world_size: int) -> dict[str, Any]:
    hyper = hyper_params(cfg, data_identity)
    hyper["world_size"] = world_size  # another world size is another training
    return hyper


def run_fit_distributed(
    cfg: FitConfig,
    emit: Callable[[dict[str, Any]], None],
    world: World,
    telemetry: Telemetry | None = None,
) -> None:
    """One rank of a data-parallel fit (see the module docstring)."""
    paths, device = _prepare(cfg)
    if device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
        device = torch.device("cuda", world.local_rank)
    die_with_launcher()
    init_group("nccl" if device.type == "cuda" else "gloo", world)
    lock: RunLock | None = None
    try:
        with StopSignals() as signals:
            configure_torch(cfg.threads)
            error, finished = "", False
            if world.leader:
                try:
                    make_run_dir(paths)
                    lock = RunLock(paths.root).acquire()
                    remove_stale_temps(paths.root)
                    dataset, hyper, run_hash, finished = _setup_leader(cfg, paths, world, device)
                except Exception as exc:  # noqa: BLE001 - told to the other ranks, re-raised
                    broadcast((f"{type(exc).__name__}: {exc}", False))
                    raise
            error, finished = broadcast((error, finished))
            if error:
                raise PeerFailed(f"rank 0 failed to start: {error}")
            if not world.leader:
                # Rank 0 has verified the data (and recorded it): this only reads.
                dataset = open_dataset(cfg.data, paths.data_verified, "changed")
                hyper = _hyper(cfg, dataset.identity, world.world_size)
                run_hash = config_hash(hyper)
            if finished:
                if world.leader:
                    warn(f"{paths.root} is already complete ({cfg.steps} steps)")
                    ProgressWriter(paths.progress, cfg.steps, cfg.steps).write(
                        cfg.steps, state="done", force=True
                    )
                return
            trainer = DistTrainer(cfg, dataset, device, run_hash, world)
            stop = AgreedStop(signals, device)
            tel = telemetry if telemetry is not None else Telemetry("trainer")
            run = DistFitRun(cfg, paths, trainer, hyper, stop, world, tel)
            try:
                run.resume()
                run.loop()
                if world.leader:
                    faults.point("trainer.before_final")
                    run.summary.fingerprint = run.write_final()
                dist.barrier()
            except Stopped:
                raise
            except BaseException:
                run.fail()
                raise
            finally:
                run.metrics.close()
                run.display.close()
            if world.leader:
                assert run.progress is not None
                run.progress.write(cfg.steps, state="done", force=True)
                summary = global_rate(run.summary.to_json(), world.world_size)
                if run.param_sync:
                    summary["param_sync_checks"] = run.param_checks
                emit(summary)
    finally:
        if lock is not None:
            lock.release()
        dist.destroy_process_group()


def global_rate(summary: dict[str, Any], world_size: int) -> dict[str, Any]:
    """The leader's summary counts its own samples; every rank trains as many (weak scaling),
    so the job's rate is world_size times that (pure). Both are reported."""
    per_rank = summary.get("samples_per_s")
    return {
        **summary,
        "world_size": world_size,
        "samples_per_s": round(per_rank * world_size, 2) if per_rank is not None else None,
        "samples_per_s_per_rank": per_rank,
    }


def check_nproc_fits(nproc: int, cores: int, available_bytes: int) -> None:
    """--nproc bounded by this machine (pure): ranks beyond the cores only contend, and each
    rank holds torch and its gloo buffers (RANK_BYTES_ESTIMATE) from its first second."""
    core_limit = max(1, cores) * RANKS_PER_CORE_MAX
    if nproc > core_limit:
        raise BadInputError(
            f"--nproc: {nproc} ranks on {cores} usable CPU core(s); at most {core_limit} "
            f"({RANKS_PER_CORE_MAX} per core)"
        )
    need = nproc * RANK_BYTES_ESTIMATE
    if need > available_bytes:
        raise BadInputError(
            f"--nproc: {nproc} ranks need about {need >> 20} MiB "
            f"({RANK_BYTES_ESTIMATE >> 20} MiB each); {available_bytes >> 20} MiB are available"
        )


def check_launch(nproc: int, max_restarts: int) -> None:
    """--nproc / --max-restarts ranges (exit 2 before anything starts)."""
    if not 1 <= nproc <= NPROC_MAX:
        raise BadInputError(f"--nproc: must be in [1, {NPROC_MAX}]")
    check_nproc_fits(nproc, len(os.sched_getaffinity(0)), psutil.virtual_memory().available)
    if not 0 <= max_restarts <= RESTARTS_MAX:
        raise BadInputError(f"--max-restarts: must be in [0, {RESTARTS_MAX}]")
