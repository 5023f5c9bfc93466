"""`trainer evaluate BUNDLE --data DATASET [--baseline OLD_BUNDLE]`: metrics and the gate.

Every number comes from ``serving.metrics``. With ``--baseline`` both bundles are scored
on the same dataset (the old model's held-out set) and the new one fails the gate when any
gated metric is worse than the old one's by more than ``--margin``: the "catastrophic
forgetting" check after fine-tuning on new data.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from preflight.durable import BadInputError
from preflight_examples.serving import metrics
from preflight_examples.serving.bundle import BundleInfo, load_bundle
from preflight_examples.serving.infer import Engine, dataset_batches, softmax, torchscript_engine

EVAL_BATCH_DEFAULT = 32
MARGIN_DEFAULT = 0.02
GATE_METRICS_DEFAULT = ("accuracy", "mcc")


def collect_logits(
    engine: Engine, dataset: Any, limit: int | None, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(labels [N], logits [N, K]) over the dataset's first ``limit`` samples."""
    labels, logits = [], []
    for _, videos, batch_labels in dataset_batches(dataset, limit, batch_size):
        logits.append(np.asarray(engine(videos), dtype=np.float32))
        labels.append(np.asarray(batch_labels, dtype=np.int64))
    if not labels:
        raise BadInputError(f"--data: {dataset.root} holds no samples to evaluate")
    return np.concatenate(labels), np.concatenate(logits)


def evaluate_logits(
    labels: np.ndarray, logits: np.ndarray, class_names: tuple[str, ...]
) -> dict[str, Any]:
    """Headline metrics at argmax, plus the threshold sweep when the task is binary (pure)."""
    summary = metrics.summarize(labels, logits.argmax(axis=1), class_names)
    if len(class_names) == 2:
        summary["threshold_sweep"] = metrics.sweep_summary(labels, softmax(logits)[:, 1])
    return summary


def evaluate_module(
    module: Any,
    dataset: Any,
    class_names: tuple[str, ...],
    limit: int | None = None,
    batch_size: int = EVAL_BATCH_DEFAULT,
) -> dict[str, Any]:
    labels, logits = collect_logits(torchscript_engine(module), dataset, limit, batch_size)
    return evaluate_logits(labels, logits, class_names)


def check_fits(info: BundleInfo, dataset: Any, option: str) -> None:
    """The dataset's videos and classes must be what the bundle takes (exit 2 otherwise)."""
    d = dataset.info
    shape = (d.frames, d.channels, d.size, d.size)
    if shape != info.input_shape or d.classes != info.classes:
        raise BadInputError(
            f"{option}: bundle {info.id} takes videos {list(info.input_shape)} with "
            f"{info.classes} classes; {dataset.root} has {list(shape)} with {d.classes}"
        )


def gate(
    new: dict[str, Any], baseline: dict[str, Any], margin: float, gated: tuple[str, ...]
) -> dict[str, Any]:
    checks = metrics.regression_checks(new, baseline, margin, gated)
    return {
        "margin": margin,
        "metrics": list(gated),
        "checks": [asdict(c) for c in checks],
        "passed": all(c.passed for c in checks),
    }


def failure_message(verdict: dict[str, Any]) -> str:
    failed = [c for c in verdict["checks"] if not c["passed"]]
    parts = [
        f"{c['metric']} {c['new']:.4f} < baseline {c['baseline']:.4f} - margin {c['margin']}"
        for c in failed
    ]
    return "regression against the baseline: " + "; ".join(parts)


def run_evaluate(
    bundle_dir: str,
    data_dir: str,
    *,
    baseline_dir: str | None = None,
    margin: float = MARGIN_DEFAULT,
    gated: tuple[str, ...] = GATE_METRICS_DEFAULT,
    limit: int | None = None,
    batch_size: int = EVAL_BATCH_DEFAULT,
) -> dict[str, Any]:
    """The evaluate report; ``report["gate"]["passed"]`` decides the exit code."""
    from preflight_examples.trainer.data import check_data_dir, open_dataset

    if limit is not None and limit < 1:
        raise BadInputError(f"--limit: must be >= 1, got {limit}")
    if not 1 <= batch_size <= 4096:
        raise BadInputError(f"--batch-size: must be in [1, 4096], got {batch_size}")
    metrics.check_gate_options(margin, gated)
    check_data_dir(Path(data_dir))
    bundle = load_bundle(bundle_dir)
    baseline = load_bundle(baseline_dir) if baseline_dir is not None else None
    dataset = open_dataset(data_dir)
    check_fits(bundle.info, dataset, "--data")
    data = {"path": str(Path(data_dir).resolve()), "identity": dataset.identity}
    report: dict[str, Any] = {
        "bundle": bundle.id,
        "data": data,
        "metrics": evaluate_module(
            bundle.module, dataset, bundle.info.class_names, limit, batch_size
        ),
    }
    if baseline is not None:
        check_fits(baseline.info, dataset, "--baseline")
        if baseline.info.class_names != bundle.info.class_names:
            raise BadInputError(
                f"--baseline: class names {list(baseline.info.class_names)} differ from "
                f"{list(bundle.info.class_names)}; the two models cannot be compared"
            )
        old = evaluate_module(
            baseline.module, dataset, baseline.info.class_names, limit, batch_size
        )
        report["baseline"] = {"bundle": baseline.id, "metrics": old}
        report["gate"] = gate(report["metrics"], old, margin, gated)
    return report
