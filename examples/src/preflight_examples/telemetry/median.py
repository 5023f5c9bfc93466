"""A running median over the last N values: bounded memory, O(N) per update (N is small)."""

from __future__ import annotations

import bisect
import math
from collections import deque


class RunningMedian:
    """Median of the last `window` finite values added; non-finite values are refused, so
    one NaN cannot poison the baseline the explosion rule compares against."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"RunningMedian: window must be >= 1, got {window}")
        self.window = window
        self._order: deque[float] = deque()
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._order)

    def add(self, value: float) -> None:
        if not math.isfinite(value):
            raise ValueError(f"RunningMedian: value must be finite, got {value}")
        if len(self._order) == self.window:
            oldest = self._order.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, oldest)]
        self._order.append(value)
        bisect.insort(self._sorted, value)
        assert len(self._sorted) == len(self._order) <= self.window

    def median(self) -> float | None:
        count = len(self._sorted)
        if count == 0:
            return None
        mid = count // 2
        if count % 2:
            return self._sorted[mid]
        return (self._sorted[mid - 1] + self._sorted[mid]) / 2.0
