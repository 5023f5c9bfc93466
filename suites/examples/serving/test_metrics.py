"""The central metrics module on hand-made cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from preflight_examples.serving import metrics

from preflight.durable import BadInputError


def cm_of(labels: list[int], predicted: list[int], classes: int) -> np.ndarray:
    return metrics.confusion_matrix(np.array(labels), np.array(predicted), classes)


def test_confusion_matrix_rows_are_true_classes() -> None:
    cm = cm_of([0, 0, 1, 2], [0, 1, 1, 0], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_confusion_matrix_refuses_out_of_range_and_mismatched_lengths() -> None:
    with pytest.raises(BadInputError, match="labels outside"):
        cm_of([0, 3], [0, 0], 3)
    with pytest.raises(BadInputError, match="predictions outside"):
        cm_of([0, 1], [0, -1], 3)
    with pytest.raises(BadInputError, match="2 labels but 1 predictions"):
        cm_of([0, 1], [0], 3)


def test_mcc_binary_known_value() -> None:
    # tp=6, fn=2, fp=1, tn=3: (6*3 - 1*2) / sqrt(7 * 8 * 4 * 5)
    labels = [1] * 8 + [0] * 4
    predicted = [1] * 6 + [0] * 2 + [1] + [0] * 3
    assert metrics.mcc(cm_of(labels, predicted, 2)) == pytest.approx(16 / math.sqrt(1120))


def test_mcc_multiclass_known_value() -> None:
    # Gorodkin R_K by hand: c=5, s=6, t=(2,2,2), p=(2,1,3) -> 18 / sqrt(22 * 24)
    cm = cm_of([0, 0, 1, 1, 2, 2], [0, 0, 1, 2, 2, 2], 3)
    assert metrics.mcc(cm) == pytest.approx(18 / math.sqrt(22 * 24))


@pytest.mark.parametrize(
    ("predicted", "expected"),
    [
        ([0, 1, 2, 0, 1, 2], 1.0),  # perfect
        ([0, 0, 0, 0, 0, 0], 0.0),  # constant: zero denominator is 0, never NaN
        ([0, 2, 1, 0, 0, 1], 0.0),  # covariance 0 by hand
    ],
)
def test_mcc_perfect_constant_and_uncorrelated(predicted: list[int], expected: float) -> None:
    assert metrics.mcc(cm_of([0, 1, 2, 0, 1, 2], predicted, 3)) == pytest.approx(expected)


def test_mcc_inverse_binary_is_minus_one() -> None:
    assert metrics.mcc(cm_of([0, 1, 0, 1], [1, 0, 1, 0], 2)) == pytest.approx(-1.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=60))
def test_mcc_bounded_and_invariant_to_renaming_classes(pairs: list[tuple[int, int]]) -> None:
    labels, predicted = (np.array(v) for v in zip(*pairs, strict=True))
    value = metrics.mcc(metrics.confusion_matrix(labels, predicted, 4))
    assert -1.0 - 1e-12 <= value <= 1.0 + 1e-12
    rename = np.array([2, 0, 3, 1])
    renamed = metrics.mcc(metrics.confusion_matrix(rename[labels], rename[predicted], 4))
    assert renamed == pytest.approx(value)


def test_per_class_precision_recall_f1_and_zero_division() -> None:
    cm = cm_of([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], 3)
    rows = metrics.per_class(cm, ["a", "b", "c"])
    assert (rows[0].precision, rows[0].recall, rows[0].support) == (0.5, 0.5, 2)
    assert rows[1].precision == pytest.approx(2 / 3) and rows[1].recall == 1.0
    assert rows[1].f1 == pytest.approx(0.8)
    # class c is never predicted and never right: every ratio is 0, not NaN
    assert (rows[2].precision, rows[2].recall, rows[2].f1, rows[2].support) == (0, 0, 0, 1)


def test_summarize_is_json_ready_and_consistent() -> None:
    summary = metrics.summarize(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), ("x", "y"))
    assert summary["accuracy"] == 0.75
    assert summary["samples"] == 4
    assert summary["confusion_matrix"] == [[2, 0], [1, 1]]
    assert [c["name"] for c in summary["per_class"]] == ["x", "y"]
    assert summary["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)


def test_threshold_sweep_counts_and_best_threshold() -> None:
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    points = {p.threshold: p for p in metrics.threshold_sweep(labels, scores)}
    at_half = points[0.5]
    counts = (at_half.true_positive, at_half.false_positive)
    assert counts + (at_half.true_negative, at_half.false_negative) == (1, 0, 2, 1)
    assert points[0.3].true_positive == 2 and points[0.3].false_positive == 1
    assert points[0.0].mcc == 0.0  # everything positive: a constant predictor
    # (0.1, 0.35] and (0.4, 0.8] tie at MCC 2/sqrt(12); the tie goes to the one nearest 0.5
    best = metrics.best_threshold(list(points.values()))
    assert best.threshold == 0.5 and best.mcc == pytest.approx(2 / math.sqrt(12))


def test_threshold_sweep_finds_a_separating_threshold() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.05, 0.2, 0.61, 0.62, 0.9])
    best = metrics.best_threshold(metrics.threshold_sweep(labels, scores), "f1")
    assert best.threshold == 0.62 and best.f1 == 1.0 and best.mcc == pytest.approx(1.0)


def test_threshold_sweep_refuses_bad_input() -> None:
    with pytest.raises(BadInputError, match="0 or 1"):
        metrics.threshold_sweep(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(BadInputError, match="finite"):
        metrics.threshold_sweep(np.array([0, 1]), np.array([0.1, np.nan]))


def test_regression_checks_margin_is_inclusive() -> None:
    old = {"accuracy": 0.9, "mcc": 0.8}
    passed = metrics.regression_checks({"accuracy": 0.88, "mcc": 0.8}, old, 0.02, ["accuracy"])
    assert passed[0].passed
    failed = metrics.regression_checks({"accuracy": 0.87, "mcc": 0.8}, old, 0.02, ["accuracy"])
    assert not failed[0].passed
    with pytest.raises(BadInputError, match="--margin"):
        metrics.regression_checks(old, old, -0.1, ["accuracy"])
    with pytest.raises(BadInputError, match="not one of"):
        metrics.regression_checks(old, old, 0.0, ["loss"])
