"""Columns out of recorded samples: Sample objects, their to_json() dicts, or rows from a
report.json. Pure; the detectors take what this returns."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

SampleLike = Any  # a preflight.run.sampler.Sample or a Mapping with the same field names


def field(sample: SampleLike, name: str) -> Any:
    if isinstance(sample, Mapping):
        return sample.get(name)
    return getattr(sample, name, None)


def progress_points(
    samples: Sequence[SampleLike], metric: str | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(t_s, progress_done, metric) for the samples whose progress is known, in time order.
    With `metric` None the third array is empty."""
    rows = [s for s in samples if field(s, "progress_done") is not None]
    rows.sort(key=lambda s: field(s, "t_s"))
    t_s = np.array([float(field(s, "t_s")) for s in rows], dtype=np.float64)
    done = np.array([float(field(s, "progress_done")) for s in rows], dtype=np.float64)
    values = np.array(
        [float(field(s, metric)) for s in rows] if metric is not None else [], dtype=np.float64
    )
    return t_s, done, values


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN or infinity; an undefined figure is reported as null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)
