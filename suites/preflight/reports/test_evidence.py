"""The readiness report's evidence: files kept out of the gate's scratch directory, bounded
reads, the figures drawn from them (never an empty one), and the experiments' side of it
(stability samples, battery report paths)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from preflight.analysis.leak import leak_from_xy
from preflight.analysis.settings import settings_for
from preflight.experiments.base import save_evidence
from preflight.experiments.faults import evidence_paths
from preflight.reports import evidence, evidence_plots
from preflight.reports.evidence import draw_evidence, keep_evidence, load_json, standing_doc
from suites.preflight.reports.readiness_synthetic import (
    LEAK_BYTES_PER_UNIT,
    battery_doc,
    failing_gate,
    samples,
    stability_doc,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 2000


def test_evidence_leaves_the_scratch_dir_and_is_named_relative_to_the_run(
    tmp_path: Path,
) -> None:
    work, run = tmp_path / "run" / "work", tmp_path / "run"
    (work / "myjob" / "check-kill").mkdir(parents=True)
    (work / "myjob" / "check-kill" / "check-myjob.json").write_text("{}")
    outside = tmp_path / "elsewhere.json"
    outside.write_text("{}")
    tests = [{"nodeid": "a", "artifacts": [str(work / "myjob" / "check-kill" / "check-myjob.json"),
                                           str(work / "missing.json"), str(outside)]},
             {"nodeid": "suite test"}]
    kept = keep_evidence(tests, work, run)
    assert kept[0]["artifacts"] == ["evidence/myjob/check-kill/check-myjob.json"]
    assert (run / kept[0]["artifacts"][0]).read_text() == "{}"
    assert kept[1] == {"nodeid": "suite test"}


def test_evidence_reads_are_bounded_and_typed(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "e.json"
    path.write_text(json.dumps({"rows": [1, 2, 3]}))
    assert load_json(path) == {"rows": [1, 2, 3]}
    monkeypatch.setattr(evidence, "EVIDENCE_BYTES_MAX", 8)
    assert load_json(path) is None
    monkeypatch.undo()
    path.write_text("[1]")
    assert load_json(path) is None
    path.write_text("{not json")
    assert load_json(path) is None
    assert load_json(tmp_path / "absent.json") is None


def test_a_confirmed_pair_plots_the_run_the_finding_reported() -> None:
    one = {"verdicts": {"memory": {"per_unit": 10.0}}}
    two = {"verdicts": {"memory": {"per_unit": 99.0}}}
    assert standing_doc([one, two], "memory", 10.0) is one
    assert standing_doc([one, two], "memory", None) is two


def test_every_requirement_with_evidence_gets_a_real_png(tmp_path: Path) -> None:
    verdict, tests, _meta = failing_gate(tmp_path)
    plots = draw_evidence(tests, verdict, tmp_path)
    assert {"myjob::stability#memory", "myjob::stability#open_files",
            "myjob::stability#throughput", "myjob::stability#stall",
            "myjob::faults.kill#timeline", "requirement:max_checkpoint_overhead:small",
            "requirement:max_alert_latency_s:small"} == set(plots)
    assert all(_png(tmp_path / p) for p in plots.values())


def test_no_empty_plot_too_few_samples_fall_back_to_the_measured_values(
    tmp_path: Path,
) -> None:
    verdict, tests, _meta = failing_gate(tmp_path)
    few = stability_doc(samples(units=0), {})
    (tmp_path / "evidence" / "stability-r1.json").write_text(json.dumps(few))
    plots = draw_evidence(tests, verdict, tmp_path)
    assert not any(k.startswith("myjob::stability#") for k in plots)
    assert "requirement:max_leak_bytes_per_unit:small" in plots


def test_a_malformed_evidence_file_costs_its_figure_not_the_report(
    tmp_path: Path, capsys
) -> None:
    verdict, tests, _meta = failing_gate(tmp_path)
    (tmp_path / "evidence" / "stability-r1.json").write_text(
        json.dumps({"experiment": "stability", "samples": {}, "verdicts": {}}))
    plots = draw_evidence(tests, verdict, tmp_path)
    assert "requirement:max_leak_bytes_per_unit:small" in plots
    assert "evidence plot" in capsys.readouterr().err


def test_the_leak_plot_draws_the_detectors_own_fit() -> None:
    series = samples()
    done = [s.progress_done for s in series]
    uss = [s.uss_bytes for s in series]
    settings = settings_for("small").memory
    fit = evidence_plots.leak_fit(done, uss, settings)
    verdict = leak_from_xy(done, uss, settings)
    assert fit is not None
    assert (fit.fit.slope, fit.fit.slope_low, fit.fit.slope_high) == (
        verdict.per_unit, verdict.per_unit_low, verdict.per_unit_high)
    assert abs(fit.fit.slope - LEAK_BYTES_PER_UNIT) < 0.05 * LEAK_BYTES_PER_UNIT
    assert evidence_plots.leak_fit([1.0], [2.0], settings) is None
    few = settings.points_min - 1  # fewer points than the detector judges: no fit drawn
    assert evidence_plots.leak_fit(done[:few], uss[:few], settings) is None


def test_figures_without_data_are_none() -> None:
    empty = {"t_s": [], "progress_done": [], "uss_bytes": []}
    small = settings_for("small")
    assert evidence_plots.leak_png("t", empty, "uss_bytes", small.memory, 1.0) is None
    assert evidence_plots.throughput_png("t", empty, small.throughput, 0.5) is None
    assert evidence_plots.stall_png("t", empty, {}, 30.0) is None
    assert evidence_plots.timeline_png("t", [{"id": "x", "history": {"attempts": []}}]) is None
    assert evidence_plots.measured_png("t", [], "<=", 0.0, "count") is None
    assert evidence_plots.rate_windows(np.array([0.0, 1.0]), np.array([0.0, 1.0]),
                                       small.throughput) is None


def test_the_timeline_keeps_failed_rows_first_within_its_bound() -> None:
    rows = battery_doc()["rows"]
    many = [{**rows[1], "id": f"pass-{i}"} for i in range(40)] + [rows[0]]
    shown = evidence_plots.timeline_rows(many)
    assert len(shown) == evidence_plots.TIMELINE_ROWS_MAX and shown[0]["id"] == "kill-time"
    assert evidence_plots.timeline_png("t", many)[:8] == PNG_MAGIC


def test_experiments_save_their_evidence_beside_their_work(tmp_path: Path) -> None:
    ctx = SimpleNamespace(base_dir=tmp_path / "myjob")
    name = save_evidence(ctx, "s.json", {"samples": {"t_s": [0.0]}})  # type: ignore[arg-type]
    assert name == "s.json" and json.loads((tmp_path / "myjob" / name).read_text())
    doc = stability_doc(samples(units=10), {"max_stall_s": 30.0})
    assert set(doc["samples"]) == {"t_s", "progress_done", "uss_bytes", "rss_bytes",
                                   "open_files"}
    assert len(doc["samples"]["t_s"]) == 11 and doc["bounds"] == {"max_stall_s": 30.0}
    paths = [tmp_path / "check-a" / "check-a.json", tmp_path / "check-a" / "check-a.md",
             Path("/elsewhere/check-a.json")]
    assert evidence_paths(paths, tmp_path) == ("check-a/check-a.json",)
