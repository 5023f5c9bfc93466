"""Learning-rate schedule: linear warm-up, then cosine decay to ``min_lr``.

A pure function of the step index, so the scheduler's whole state is the step the
checkpoint already records; nothing can drift between the schedule and the optimizer.
"""

from __future__ import annotations

import math


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_lr: float) -> float:
    """Learning rate for the optimizer update with 0-based index ``step``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def scheduler_state(step: int, lr: float) -> dict[str, float | int | str]:
    """What a checkpoint stores for the schedule (weights_only-safe plain values)."""
    return {"name": "warmup-cosine", "step": step, "lr": lr}
