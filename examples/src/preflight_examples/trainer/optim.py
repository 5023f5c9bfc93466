"""AdamW (decoupled weight decay, bias-corrected moments) with a plain, checkpointable state.

Why not torch.optim.AdamW: every torch optimizer imports torch._dynamo on construction and
on each step (~1.2 s of start-up on this class of machine), a third of the 3 s budget from
SIGKILL to the resumed run's first step. The update below is the textbook single-tensor
AdamW (Loshchilov & Hutter), deterministic and with a state of tensors and plain numbers
that torch.load(weights_only=True) reads back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

BETAS = (0.9, 0.999)
EPS = 1e-8


class AdamW:
    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float,
        weight_decay: float,
        betas: tuple[float, float] = BETAS,
        eps: float = EPS,
    ) -> None:
        self.params = list(params)
        self.lr = lr
        self.weight_decay = weight_decay
        self.betas = betas
        self.eps = eps
        self.step_count = 0
        self.exp_avg = [
            torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params
        ]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        beta1, beta2 = self.betas
        bias1 = 1.0 - beta1**self.step_count
        bias2_sqrt = math.sqrt(1.0 - beta2**self.step_count)
        for param, avg, avg_sq in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            if param.grad is None:
                continue
            grad = param.grad
            param.mul_(1.0 - self.lr * self.weight_decay)
            avg.lerp_(grad, 1.0 - beta1)
            avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
            denom = (avg_sq.sqrt() / bias2_sqrt).add_(self.eps)
            param.addcdiv_(avg, denom, value=-self.lr / bias1)

    def state_dict(self) -> dict[str, Any]:
        """References to the live moments; the checkpoint snapshot serializes (copies) them."""
        return {
            "name": "adamw",
            "step": self.step_count,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "betas": list(self.betas),
            "eps": self.eps,
            "exp_avg": list(self.exp_avg),
            "exp_avg_sq": list(self.exp_avg_sq),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy a saved state into this optimizer; a mismatch raises ValueError."""
        if state.get("name") != "adamw":
            raise ValueError(f"optimizer state is {state.get('name')!r}, expected 'adamw'")
        moments = (state["exp_avg"], state["exp_avg_sq"])
        for saved in moments:
            if len(saved) != len(self.params):
                raise ValueError(f"{len(saved)} saved moments for {len(self.params)} parameters")
            for param, tensor in zip(self.params, saved, strict=True):
                if tensor.shape != param.shape or tensor.dtype != param.dtype:
                    raise ValueError(
                        f"moment {tuple(tensor.shape)} does not fit {tuple(param.shape)}"
                    )
        with torch.no_grad():
            for live, saved in ((self.exp_avg, moments[0]), (self.exp_avg_sq, moments[1])):
                for target, tensor in zip(live, saved, strict=True):
                    target.copy_(tensor)
        self.step_count = int(state["step"])
        self.lr = float(state["lr"])
        self.weight_decay = float(state["weight_decay"])
        self.betas = (float(state["betas"][0]), float(state["betas"][1]))
        self.eps = float(state["eps"])
