"""The node_exporter textfile-collector convention: a ``*.prom`` file in the Prometheus text
format, replaced atomically so the collector never reads half of it.

The temp file (``.NAME.prom.tmp-PID-RANDOM``, from durable.atomic_write) does not end in
``.prom``, so the collector never picks it up either.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, generate_latest

from preflight.durable import atomic_write
from preflight.durable.errors import BadInputError

SUFFIX = ".prom"
TEXTFILE_BYTES_MAX = 1 << 20  # a job's own metrics are a few KiB; more means a label leak


def check_path(path: str | os.PathLike[str]) -> str:
    """The textfile path, validated up front (exit 2 material, before any work is done)."""
    text = os.fspath(path)
    if not text.endswith(SUFFIX):
        raise BadInputError(f"--metrics-file {text!r}: must end in {SUFFIX} (textfile collector)")
    directory = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(directory):
        raise BadInputError(f"--metrics-file {text!r}: directory {directory!r} does not exist")
    return text


def render(registry: CollectorRegistry) -> bytes:
    payload = generate_latest(registry)
    assert payload.endswith(b"\n") and len(payload) <= TEXTFILE_BYTES_MAX, len(payload)
    return payload


def write_textfile(path: str | os.PathLike[str], registry: CollectorRegistry) -> int:
    """Atomically replace `path` with the registry's exposition; returns the bytes written."""
    return atomic_write(path, render(registry))
