"""Shared constants and helpers for the harness's own tests."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
FIXTURE_SPECS = FIXTURES / "workloads.toml"
# Fast sampling: the planted jobs run for a second or two and the detectors need points.
FIXTURE_SAMPLE_INTERVAL_S = 0.02


def write_spec(directory: Path, text: str, name: str = "workloads.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path
