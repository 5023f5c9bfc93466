"""Reading a finished run: `trainer fingerprint RUN_DIR` and `trainer verify RUN_DIR`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preflight.durable import BadInputError, VerifyError, config_hash, manifest, read_json
from preflight_examples.trainer.checkpoint import KIND_FINAL, STATE_NAME, load_committed
from preflight_examples.trainer.fingerprint import fingerprint
from preflight_examples.trainer.rundir import RunPaths, refuse_links


class IncompleteError(Exception):
    """The run has not finished yet (exit 1): nothing is wrong, there is just no final state."""


@dataclass(frozen=True)
class FinalInfo:
    step: int
    fingerprint: str


def _run_config(paths: RunPaths) -> dict[str, Any]:
    if not paths.root.is_dir():
        raise BadInputError(f"RUN_DIR: {paths.root} is not a directory")
    refuse_links(paths)  # verify reads only what fit would have written: never a link
    if not paths.config.exists():
        raise IncompleteError(f"{paths.root}: no config.json; not a trainer run directory")
    try:
        stored = read_json(paths.config)
        hyper, stored_hash = stored["hyper"], stored["config_hash"]
    except (BadInputError, KeyError, TypeError) as exc:
        raise VerifyError(str(paths.config), f"unreadable run configuration: {exc}") from None
    if not isinstance(hyper, dict) or config_hash(hyper) != stored_hash:
        raise VerifyError(str(paths.config), "config_hash does not match its hyper-parameters")
    return stored


def read_final(run_dir: str | Path) -> FinalInfo:
    """Verify RUN_DIR/final against config.json and recompute its fingerprint."""
    paths = RunPaths(Path(run_dir))
    stored = _run_config(paths)
    steps = stored["hyper"].get("steps")
    if not (paths.final / manifest.MANIFEST_NAME).exists():
        raise IncompleteError(
            f"{paths.root}: not complete (no committed final/); "
            "rerun `trainer fit` with the same options to finish"
        )
    state = load_committed(paths.final, KIND_FINAL, steps, stored["config_hash"])
    digest = fingerprint(state["model"], state["optimizer"])
    recorded = (manifest.read(paths.final).meta.get("fingerprint"), state.get("fingerprint"))
    if any(value != digest for value in recorded):
        raise VerifyError(
            str(paths.final / STATE_NAME), "fingerprint differs from the recorded one"
        )
    return FinalInfo(int(state["step"]), digest)
