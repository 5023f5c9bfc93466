"""A small 3D-CNN video classifier sized by --channels and --depth.

Only ops with deterministic forward and backward kernels on CPU and CUDA are used: strided
convolutions instead of pooling (max/adaptive-avg pool backward are non-deterministic on
CUDA) and a plain mean over time and space before the head.
"""

from __future__ import annotations

import torch
from torch import nn


def _groups(channels: int) -> int:
    return 4 if channels % 4 == 0 else 1


class VideoClassifier(nn.Module):
    """Input [batch, channels, frames, height, width] floats; output class logits."""

    def __init__(
        self, in_channels: int, classes: int, channels: int, depth: int, dropout: float
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width_in = in_channels
        for block in range(depth):
            width_out = channels * 2**block
            # The first block keeps the time axis; later ones halve time and space.
            stride = (1, 2, 2) if block == 0 else (2, 2, 2)
            layers += [
                nn.Conv3d(width_in, width_out, kernel_size=3, stride=stride, padding=1),
                nn.GroupNorm(_groups(width_out), width_out),
                nn.ReLU(inplace=True),
            ]
            width_in = width_out
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width_in, classes)

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        features = self.features(videos).mean(dim=(2, 3, 4))
        return self.head(self.dropout(features))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
