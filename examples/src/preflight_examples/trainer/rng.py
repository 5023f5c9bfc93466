"""Capture and restore every RNG (python, numpy, torch, cuda) as weights_only-safe values.

Python's and numpy's states are tuples holding a Mersenne Twister key; they are stored as
int64 tensors plus plain ints and floats, so a checkpoint never needs arbitrary unpickling.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from preflight.durable import VerifyError

MT_KEY_WORDS = 624


def capture() -> dict[str, Any]:
    version, key, gauss = random.getstate()
    name, np_key, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {
            "version": int(version),
            "key": torch.tensor(key, dtype=torch.int64),
            "has_gauss": gauss is not None,
            "gauss": float(gauss) if gauss is not None else 0.0,
        },
        "numpy": {
            "name": str(name),
            "key": torch.from_numpy(np.asarray(np_key, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state().clone(),
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return state


def restore(state: dict[str, Any], where: str) -> None:
    """Restore every RNG; a malformed state is a VerifyError naming ``where``."""
    try:
        py = state["python"]
        gauss = float(py["gauss"]) if py["has_gauss"] else None
        random.setstate((int(py["version"]), tuple(int(v) for v in py["key"].tolist()), gauss))
        npy = state["numpy"]
        np_key = npy["key"].numpy().astype(np.uint32)
        if np_key.shape != (MT_KEY_WORDS,):
            raise ValueError(f"numpy key has shape {tuple(np_key.shape)}")
        np.random.set_state(
            (npy["name"], np_key, int(npy["pos"]), int(npy["has_gauss"]), float(npy["gauss"]))
        )
        torch.set_rng_state(state["torch"])
        cuda_states = state["cuda"]
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise VerifyError(where, f"malformed RNG state: {exc}") from None
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) != torch.cuda.device_count():
            raise VerifyError(
                where,
                f"saved {len(cuda_states)} CUDA RNG states but {torch.cuda.device_count()} "
                "devices are visible; resume with the same devices",
            )
        torch.cuda.set_rng_state_all(cuda_states)
