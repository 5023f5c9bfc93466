"""A canonical sha256 over model and optimizer state.

Hashing torch.save bytes would tie the fingerprint to the pickle layout; instead every
value is fed in a fixed order with its type, dtype and shape, so two states hash equal
exactly when every tensor is bit-identical and every scalar is equal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch

DEPTH_MAX = 32


def _sort_key(key: Any) -> tuple[str, str]:
    return (type(key).__name__, repr(key))


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def _feed(digest: Any, value: Any, depth: int) -> None:
    if depth > DEPTH_MAX:
        raise ValueError(f"fingerprint: state nested deeper than {DEPTH_MAX} levels")
    if isinstance(value, torch.Tensor):
        header = f"T{value.dtype}{tuple(value.shape)}:"
        digest.update(header.encode())
        digest.update(_tensor_bytes(value))
    elif isinstance(value, Mapping):
        digest.update(f"D{len(value)}:".encode())
        for key in sorted(value, key=_sort_key):
            digest.update(f"K{_sort_key(key)}:".encode())
            _feed(digest, value[key], depth + 1)
    elif isinstance(value, list | tuple):
        digest.update(f"L{len(value)}:".encode())
        for item in value:
            _feed(digest, item, depth + 1)
    elif value is None or isinstance(value, bool | int | float | str):
        # repr of a float round-trips exactly, so equal reprs mean equal values.
        digest.update(f"S{type(value).__name__}:{value!r};".encode())
    else:
        raise TypeError(f"fingerprint: cannot hash a {type(value).__name__}")


def fingerprint(model_state: Mapping[str, Any], optimizer_state: Mapping[str, Any]) -> str:
    """Hex sha256 over the model's and the optimizer's state dicts."""
    digest = hashlib.sha256(b"preflight-trainer-fingerprint/1\n")
    _feed(digest, {"model": model_state, "optimizer": optimizer_state}, 0)
    return digest.hexdigest()
