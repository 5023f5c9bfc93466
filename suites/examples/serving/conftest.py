"""Fixtures for serving tests: tiny datasets, a trained run, its bundle and a planted worse one.

The run is made by the real `trainer fit` (in this process, a tiny model, a few dozen
steps), so export is tested against what fit actually writes, not a hand-made imitation.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import pytest

from preflight.durable import faults

REPO = Path(__file__).resolve().parents[3]
FIT_STEPS = 100
# A model small enough that fit and every inference take milliseconds; one thread.
MODEL_ARGS = (
    *("--channels", "4", "--depth", "2", "--batch-size", "8", "--lr", "1e-2", "--threads", "1"),
)
SHAPE = {"frames": 4, "channels": 1, "size": 16}


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


Cli = Callable[[Sequence[str]], Result]


def write_data(root: Path, classes: int, samples: int = 64, seed: int = 0) -> Path:
    from preflight_examples.trainer.synthetic import write_dataset

    return write_dataset(root, samples=samples, classes=classes, shard_size=32, seed=seed, **SHAPE)


def fit(data: Path, out: Path, steps: int = FIT_STEPS, seed: int = 0) -> Path:
    from preflight_examples.trainer.cli import main

    argv = ["fit", "--data", str(data), "--out", str(out), "--steps", str(steps)]
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PREFLIGHT_FAULTS", raising=False)
        patch.setattr(faults, "_state", faults._State())
        assert main([*argv, "--seed", str(seed), "--ckpt-every", "0", *MODEL_ARGS]) == 0
    return out


@pytest.fixture(scope="session")
def data4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data(tmp_path_factory.mktemp("data4") / "ds", classes=4)


@pytest.fixture(scope="session")
def run4(data4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit(data4, tmp_path_factory.mktemp("run4") / "run")


@pytest.fixture(scope="session")
def bundle4(run4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained run exported (read-only: tests that tamper copy it first)."""
    from preflight_examples.serving.export import export

    return export(run4, tmp_path_factory.mktemp("bundle4") / "bundle").root


def plant_bundle(run: Path, dest: Path, mutate: Callable[[object], None], tag: str) -> Path:
    """A bundle of ``run``'s model after ``mutate(classifier)``, with its own identity."""
    from preflight_examples.serving import export as export_mod
    from preflight_examples.serving.infer import serving_model
    from preflight_examples.trainer.data import open_dataset

    model = export_mod.load_run_model(run)
    mutate(model.classifier)
    fingerprint = hashlib.sha256(f"{model.source['fingerprint']}:{tag}".encode()).hexdigest()
    model = replace(model, source={**model.source, "fingerprint": fingerprint})
    dataset = open_dataset(export_mod.resolve_data_dir(run, None))
    spec = export_mod.dataset_spec(dataset, model)
    artifacts = export_mod.build_artifacts(serving_model(model.classifier), spec.input_shape, False)
    document = export_mod.bundle_document(model, spec, artifacts, None)
    return export_mod.write_bundle(dest, document, artifacts).root


def _rotate_head(classifier: object) -> None:
    """Shift the head's rows by one class: every confident prediction becomes wrong."""
    import torch

    head = classifier.head  # type: ignore[attr-defined]
    with torch.no_grad():
        head.weight.copy_(torch.roll(head.weight, 1, dims=0))
        head.bias.copy_(torch.roll(head.bias, 1, dims=0))


@pytest.fixture(scope="session")
def worse4(run4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A planted regression: the same run with its class outputs rotated."""
    return plant_bundle(run4, tmp_path_factory.mktemp("worse4") / "bundle", _rotate_head, "rot")


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """The serving subcommands through a tiny argparse wrapper, as trainer/cli.py wires them."""
    from preflight_examples.serving import cli as serving_cli
    from preflight_examples.trainer.cli import classify

    def run(argv: Sequence[str]) -> Result:
        parser = argparse.ArgumentParser(prog="trainer")
        serving_cli.add_commands(parser.add_subparsers(dest="command", required=True))
        capsys.readouterr()
        try:
            code = serving_cli.dispatch(parser.parse_args(list(argv)))
            assert code is not None
        except SystemExit as exc:  # argparse refuses an option: exit 2, like trainer's main
            code = int(exc.code or 0)
        except Exception as exc:  # noqa: BLE001 - mapped like trainer.cli.main does
            code = classify(exc)[0]
            print(f"trainer: {exc}", file=sys.stderr)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def load_bench_serve() -> ModuleType:
    """benchmarks/bench_serve.py holds the load generator the small-tier load test uses."""
    if "bench_serve" in sys.modules:
        return sys.modules["bench_serve"]
    path = REPO / "benchmarks" / "bench_serve.py"
    spec = importlib.util.spec_from_file_location("bench_serve", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def _scale_head(classifier: object) -> None:
    import torch

    with torch.no_grad():
        classifier.head.weight.mul_(0.5)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def third4(run4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A third distinct bundle (for promote/rollback sequences)."""
    return plant_bundle(run4, tmp_path_factory.mktemp("third4") / "bundle", _scale_head, "half")


def bundle_id(bundle: Path) -> str:
    import json

    return json.loads((bundle / "bundle.json").read_text())["id"]
