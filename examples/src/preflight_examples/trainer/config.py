"""Fit options: validation, the hyper-parameter subset that defines a run, drift detection.

Pure: nothing here touches the disk or torch, so every rule is unit-testable in isolation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from preflight.durable import BadInputError
from preflight.durable.ledger import differing_keys

STEPS_MAX = 99_999_999  # checkpoint directory names carry the step in 8 digits
BATCH_SIZE_MAX = 65_536
ACCUM_MAX = 4_096
CHANNELS_MAX = 1_024
DEPTH_MAX = 6
THREADS_MAX = 256
KEEP_MAX = 1_000
SKIPS_MAX = 1_000_000
DEVICES = ("auto", "cpu", "cuda")
VERIFY_MODES = ("changed", "always")

# Options that change the numbers a run produces. Resuming with a different value would
# silently splice two different trainings together, so they are hashed into the run's
# identity. Operational options (threads, device, checkpoint cadence, logging, the
# non-finite policy) are deliberately left out: a user may change them on resume, e.g.
# rerun a run that stopped on a NaN with --skip-nonfinite.
HYPER_FIELDS = (
    "steps",
    "batch_size",
    "lr",
    "weight_decay",
    "warmup_steps",
    "min_lr",
    "accum",
    "bf16",
    "clip",
    "seed",
    "channels",
    "depth",
    "dropout",
)


@dataclass(frozen=True)
class FitConfig:
    data: str
    out: str
    steps: int
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = -1  # -1: 5% of the steps, at least 1
    min_lr: float = 0.0
    accum: int = 1
    bf16: bool = False
    clip: float = 1.0  # 0 disables clipping; the norm is still measured and logged
    seed: int = 0
    channels: int = 16
    depth: int = 3
    dropout: float = 0.1
    skip_nonfinite: bool = False
    max_skips: int = 100
    ckpt_every: int = 100  # 0 disables periodic checkpoints
    keep: int = 3  # three, so that any two damaged or swapped ones still leave a fallback
    device: str = "auto"
    threads: int = 1
    log_every: int = 1
    progress_every_ms: int = 1000  # PROGRESS.json at most this often (forced at the end)
    verify_data: str = "changed"  # "always": re-hash the dataset on every start
    new: bool = False

    @property
    def warmup_steps_resolved(self) -> int:
        if self.warmup_steps >= 0:
            return self.warmup_steps
        return max(1, self.steps // 20)


def _require(ok: bool, option: str, message: str) -> None:
    if not ok:
        raise BadInputError(f"{option}: {message}")


def validate(cfg: FitConfig) -> FitConfig:
    """Refuse out-of-range options with a message naming the option (exit 2)."""
    _require(1 <= cfg.steps <= STEPS_MAX, "--steps", f"must be in [1, {STEPS_MAX}]")
    _require(1 <= cfg.batch_size <= BATCH_SIZE_MAX, "--batch-size", "must be >= 1")
    _require(math.isfinite(cfg.lr) and cfg.lr > 0, "--lr", "must be a finite number > 0")
    _require(
        math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0,
        "--weight-decay",
        "must be a finite number >= 0",
    )
    _require(cfg.warmup_steps_resolved <= cfg.steps, "--warmup-steps", "must be <= --steps")
    _require(
        math.isfinite(cfg.min_lr) and 0 <= cfg.min_lr <= cfg.lr, "--min-lr", "must be in [0, lr]"
    )
    _require(1 <= cfg.accum <= ACCUM_MAX, "--accum", f"must be in [1, {ACCUM_MAX}]")
    _require(math.isfinite(cfg.clip) and cfg.clip >= 0, "--clip", "must be a finite number >= 0")
    _require(0 <= cfg.seed < 2**63, "--seed", "must be in [0, 2**63)")
    _require(1 <= cfg.channels <= CHANNELS_MAX, "--channels", f"must be in [1, {CHANNELS_MAX}]")
    _require(1 <= cfg.depth <= DEPTH_MAX, "--depth", f"must be in [1, {DEPTH_MAX}]")
    _require(0 <= cfg.dropout < 1, "--dropout", "must be in [0, 1)")
    _require(0 <= cfg.max_skips <= SKIPS_MAX, "--max-skips", f"must be in [0, {SKIPS_MAX}]")
    _require(0 <= cfg.ckpt_every <= STEPS_MAX, "--ckpt-every", "must be >= 0 (0 = off)")
    _require(1 <= cfg.keep <= KEEP_MAX, "--keep", f"must be in [1, {KEEP_MAX}]")
    _require(cfg.device in DEVICES, "--device", f"must be one of {', '.join(DEVICES)}")
    _require(1 <= cfg.threads <= THREADS_MAX, "--threads", f"must be in [1, {THREADS_MAX}]")
    _require(1 <= cfg.log_every <= STEPS_MAX, "--log-every", "must be >= 1")
    _require(
        10 <= cfg.progress_every_ms <= 3_600_000, "--progress-every-ms", "must be in [10, 3600000]"
    )
    _require(cfg.verify_data in VERIFY_MODES, "--verify-data", f"must be one of {VERIFY_MODES}")
    return cfg


# What one parameter costs while training: the weight, its gradient and AdamW's two moments
# (float32 each); activations come on top, so the bound below is a floor, not an estimate.
TRAIN_BYTES_PER_PARAMETER = 16
INPUT_CHANNELS_MAX = 3  # datagen writes 1 or 3 channels
KERNEL_VOLUME = 27  # 3x3x3 convolutions


def parameter_estimate(channels: int, depth: int, in_channels: int = INPUT_CHANNELS_MAX) -> int:
    """Parameters of the VideoClassifier for --channels/--depth, without building it (pure;
    the head, classes x width, is left out: it is tiny beside the convolutions)."""
    total, width_in = 0, in_channels
    for block in range(depth):
        width_out = channels * 2**block
        total += width_in * width_out * KERNEL_VOLUME + width_out  # conv weight + bias
        total += 2 * width_out  # GroupNorm affine
        width_in = width_out
    return total


def check_model_fits(cfg: FitConfig, available_bytes: int) -> None:
    """Refuse (exit 2) a model whose training state alone exceeds this machine's available
    memory: it would be allocated for minutes and then die by the OOM killer (pure)."""
    params = parameter_estimate(cfg.channels, cfg.depth)
    need = params * TRAIN_BYTES_PER_PARAMETER
    if need > available_bytes:
        raise BadInputError(
            f"--channels {cfg.channels} --depth {cfg.depth}: a model of {params:,} parameters "
            f"needs at least {need >> 20} MiB to train; {available_bytes >> 20} MiB are available"
        )


def hyper_params(cfg: FitConfig, data_identity: str) -> dict[str, Any]:
    """The run's identity: hyper-parameters plus the dataset's content hash (not its path)."""
    values = asdict(cfg)
    hyper = {name: values[name] for name in HYPER_FIELDS}
    hyper["warmup_steps"] = cfg.warmup_steps_resolved
    hyper["data_sha256"] = data_identity
    return hyper


def drifted(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names of hyper-parameters that differ between a stored run and this command (pure)."""
    return differing_keys(old, new)
