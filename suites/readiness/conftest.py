"""Readiness suites: both workloads, through their workload specs only (docs/design.md).

Every test records its measurements in the session report under `<workload>.<metric>`;
the gate (`preflight gate`) judges them against `[tool.preflight.gate]`.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "battery: a full fault battery (minutes); run by `preflight gate`, not by `make test`",
    )
