"""`trainer evaluate`: metrics from the central module and the no-regression gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from suites.examples.serving.conftest import Cli, fit, write_data


def test_evaluate_reports_metrics_that_match_predictions(
    bundle4: Path, data4: Path, cli: Cli, tmp_path: Path
) -> None:
    out = tmp_path / "e.json"
    result = cli(["evaluate", str(bundle4), "--data", str(data4), "--out", str(out)])
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report == json.loads(out.read_text())
    m = report["metrics"]
    assert m["samples"] == 64 and len(m["per_class"]) == 4
    assert np.array(m["confusion_matrix"]).sum() == 64
    assert "threshold_sweep" not in m  # four classes: no binary sweep
    # The accuracy agrees with what `predict` says about the same samples.
    predicted = cli(["predict", str(bundle4), "--data", str(data4)])
    rows = json.loads(predicted.out)["predictions"]
    assert m["accuracy"] == pytest.approx(np.mean([r["class"] == r["label"] for r in rows]))


def test_gate_fails_a_planted_regression(
    bundle4: Path, worse4: Path, data4: Path, cli: Cli
) -> None:
    result = cli(["evaluate", str(worse4), "--data", str(data4), "--baseline", str(bundle4)])
    assert result.code == 1
    assert "regression against the baseline" in result.err and "accuracy" in result.err
    gate = json.loads(result.out)["gate"]
    assert gate["passed"] is False
    assert {c["metric"] for c in gate["checks"] if not c["passed"]} >= {"accuracy"}


def test_gate_passes_an_equal_or_better_model(
    bundle4: Path, worse4: Path, data4: Path, cli: Cli
) -> None:
    same = cli(["evaluate", str(bundle4), "--data", str(data4), "--baseline", str(bundle4),
                "--margin", "0"])  # fmt: skip
    assert same.code == 0, same.err
    assert json.loads(same.out)["gate"]["passed"] is True
    better = cli(["evaluate", str(bundle4), "--data", str(data4), "--baseline", str(worse4)])
    assert better.code == 0, better.err


def test_gate_options_are_validated(bundle4: Path, data4: Path, cli: Cli) -> None:
    base = ["evaluate", str(bundle4), "--data", str(data4), "--baseline", str(bundle4)]
    assert cli([*base, "--margin", "2"]).code == 2
    bad = cli([*base, "--gate-metrics", "loss"])
    assert bad.code == 2 and "loss" in bad.err


def test_binary_task_gets_a_threshold_sweep(tmp_path: Path, cli: Cli) -> None:
    from preflight_examples.serving.export import export

    data = write_data(tmp_path / "ds", classes=2, samples=32)
    bundle = export(fit(data, tmp_path / "run", steps=20), tmp_path / "b", with_onnx=False).root
    result = cli(["evaluate", str(bundle), "--data", str(data)])
    assert result.code == 0, result.err
    m = json.loads(result.out)["metrics"]
    sweep = m["threshold_sweep"]
    assert len(sweep["points"]) == 101
    assert sweep["best_by_mcc"]["mcc"] == max(p["mcc"] for p in sweep["points"])
    # p(class 1) >= 0.5 is the argmax rule, so the 0.5 point reproduces the confusion matrix
    half = next(p for p in sweep["points"] if p["threshold"] == 0.5)
    cm = m["confusion_matrix"]
    assert (half["true_negative"], half["false_positive"]) == tuple(cm[0])
    assert (half["false_negative"], half["true_positive"]) == tuple(cm[1])


def test_evaluate_refuses_data_of_another_shape(bundle4: Path, tmp_path: Path, cli: Cli) -> None:
    from preflight_examples.trainer.synthetic import write_dataset

    other = write_dataset(tmp_path / "ds", samples=8, frames=2, channels=1, size=16, classes=4)
    result = cli(["evaluate", str(bundle4), "--data", str(other)])
    assert result.code == 2 and "[2, 1, 16, 16]" in result.err
