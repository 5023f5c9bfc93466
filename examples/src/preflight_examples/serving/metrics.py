"""The one place classification metrics are computed (export, evaluate, the regression gate).

Pure numpy over a confusion matrix, so every number has one definition and is unit-tested
on hand-made cases. Conventions follow scikit-learn where it has one: a ratio whose
denominator is zero (no predictions of a class, a constant predictor's MCC) is 0, never NaN,
because NaN cannot be written to JSON and would silently pass a ``<`` comparison.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from preflight.durable import BadInputError

THRESHOLDS_DEFAULT = tuple(round(0.01 * i, 2) for i in range(101))
THRESHOLDS_MAX = 10_000
GATE_METRICS = ("accuracy", "mcc", "macro_f1")


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else 0.0


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """int64 [classes, classes]: row = true class, column = predicted class."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    predicted = np.asarray(predicted, dtype=np.int64).reshape(-1)
    if labels.shape != predicted.shape:
        raise BadInputError(f"metrics: {labels.size} labels but {predicted.size} predictions")
    if classes < 1:
        raise BadInputError(f"metrics: classes must be >= 1, got {classes}")
    for name, values in (("labels", labels), ("predictions", predicted)):
        if values.size and (values.min() < 0 or values.max() >= classes):
            raise BadInputError(f"metrics: {name} outside [0, {classes})")
    flat = np.bincount(labels * classes + predicted, minlength=classes * classes)
    return flat.reshape(classes, classes).astype(np.int64)


def accuracy(cm: np.ndarray) -> float:
    return _ratio(np.trace(cm), cm.sum())


def mcc(cm: np.ndarray) -> float:
    """Matthews correlation for K classes (Gorodkin's R_K); equals the binary MCC for K=2.

    In [-1, 1]; 0 for a constant predictor or a single-class label set (zero denominator).
    """
    # Python ints: the products below overflow int64 for a few million samples.
    total = int(cm.sum())
    correct = int(np.trace(cm))
    true_counts = [int(v) for v in cm.sum(axis=1)]
    pred_counts = [int(v) for v in cm.sum(axis=0)]
    covariance = correct * total - sum(p * t for p, t in zip(pred_counts, true_counts, strict=True))
    var_pred = total * total - sum(p * p for p in pred_counts)
    var_true = total * total - sum(t * t for t in true_counts)
    if var_pred == 0 or var_true == 0:
        return 0.0
    return covariance / math.sqrt(var_pred * var_true)


@dataclass(frozen=True)
class ClassMetrics:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


def per_class(cm: np.ndarray, class_names: Sequence[str]) -> list[ClassMetrics]:
    """Precision, recall, F1 and support (true count) per class."""
    if len(class_names) != cm.shape[0]:
        raise BadInputError(f"metrics: {len(class_names)} class names for {cm.shape[0]} classes")
    rows = []
    for k, name in enumerate(class_names):
        true_positive = int(cm[k, k])
        precision = _ratio(true_positive, cm[:, k].sum())
        recall = _ratio(true_positive, cm[k, :].sum())
        f1 = _ratio(2 * precision * recall, precision + recall)
        rows.append(ClassMetrics(str(name), precision, recall, f1, int(cm[k, :].sum())))
    return rows


def summarize(
    labels: np.ndarray, predicted: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Every headline metric as a JSON-able dict (the format evaluate and bundles store)."""
    cm = confusion_matrix(labels, predicted, len(class_names))
    classes = per_class(cm, class_names)
    return {
        "samples": int(cm.sum()),
        "accuracy": accuracy(cm),
        "mcc": mcc(cm),
        "macro_f1": _ratio(sum(c.f1 for c in classes), len(classes)),
        "per_class": [asdict(c) for c in classes],
        "confusion_matrix": cm.tolist(),
    }


@dataclass(frozen=True)
class ThresholdPoint:
    threshold: float
    true_positive: int
    false_positive: int
    true_negative: int
    false_negative: int
    precision: float
    recall: float
    f1: float
    mcc: float


def _binary_point(threshold: float, labels: np.ndarray, scores: np.ndarray) -> ThresholdPoint:
    positive = scores >= threshold
    tp = int(np.sum(positive & labels))
    fp = int(np.sum(positive & ~labels))
    fn = int(np.sum(~positive & labels))
    tn = int(labels.size - tp - fp - fn)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * precision * recall, precision + recall)
    binary_mcc = mcc(np.array([[tn, fp], [fn, tp]], dtype=np.int64))
    return ThresholdPoint(threshold, tp, fp, tn, fn, precision, recall, f1, binary_mcc)


def threshold_sweep(
    labels: np.ndarray, scores: np.ndarray, thresholds: Sequence[float] = THRESHOLDS_DEFAULT
) -> list[ThresholdPoint]:
    """Binary task: predict positive when ``score >= threshold``, for every threshold.

    ``labels`` are 0/1; ``scores`` are the positive class's probabilities.
    """
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise BadInputError(f"threshold sweep: {labels.size} labels but {scores.size} scores")
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise BadInputError("threshold sweep: labels must be 0 or 1")
    if not np.isfinite(scores).all():
        raise BadInputError("threshold sweep: scores must be finite")
    if not 1 <= len(thresholds) <= THRESHOLDS_MAX:
        raise BadInputError(
            f"threshold sweep: 1 to {THRESHOLDS_MAX} thresholds, got {len(thresholds)}"
        )
    positives = labels.astype(bool)
    return [_binary_point(float(t), positives, scores) for t in thresholds]


def best_threshold(points: Sequence[ThresholdPoint], by: str = "mcc") -> ThresholdPoint:
    """The point maximising ``by`` (mcc or f1); ties go to the threshold nearest 0.5,
    the untuned default, so a flat curve does not drift to an extreme threshold."""
    if by not in ("mcc", "f1"):
        raise BadInputError(f"best threshold: by must be 'mcc' or 'f1', got {by!r}")
    if not points:
        raise BadInputError("best threshold: no points")
    return max(points, key=lambda p: (getattr(p, by), -abs(p.threshold - 0.5)))


def sweep_summary(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    points = threshold_sweep(labels, scores)
    return {
        "positive_class": 1,
        "rule": "predict class 1 when p(class 1) >= threshold",
        "best_by_mcc": asdict(best_threshold(points, "mcc")),
        "best_by_f1": asdict(best_threshold(points, "f1")),
        "points": [asdict(p) for p in points],
    }


@dataclass(frozen=True)
class GateCheck:
    metric: str
    new: float
    baseline: float
    margin: float
    passed: bool


def check_gate_options(margin: float, metrics: Sequence[str]) -> None:
    """Refuse a gate that could not mean anything, before any model is run (exit 2)."""
    if not (math.isfinite(margin) and 0 <= margin <= 1):
        raise BadInputError(f"--margin: must be in [0, 1], got {margin}")
    if not metrics:
        raise BadInputError("--gate-metrics: name at least one metric")
    for name in metrics:
        if name not in GATE_METRICS:
            raise BadInputError(f"--gate-metrics: {name!r} is not one of {GATE_METRICS}")


def regression_checks(
    new: dict[str, Any], baseline: dict[str, Any], margin: float, metrics: Sequence[str]
) -> list[GateCheck]:
    """The no-regression gate: each metric may drop by at most ``margin`` (absolute)."""
    check_gate_options(margin, metrics)
    checks = []
    for name in metrics:
        new_value, old_value = float(new[name]), float(baseline[name])
        checks.append(
            GateCheck(name, new_value, old_value, margin, new_value >= old_value - margin)
        )
    return checks
