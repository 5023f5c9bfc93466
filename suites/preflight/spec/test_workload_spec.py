"""Workload specs: strict loading, placeholders, sizes per tier."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from preflight.workload import SpecError, find_spec, load_spec, load_specs
from suites.preflight.helpers import FIXTURE_SPECS, write_spec

BASIC = """
[workloads.job]
command = ["{python}", "{spec_dir}/job.py", "--out", "{workdir}", "--n", "{samples}"]
progress = "{workdir}/PROGRESS.json"
env = { OMP_NUM_THREADS = "1", OUT = "{workdir}" }
checkpoints = ["{workdir}/shards/*"]
[workloads.job.scale]
production = { samples = 30000, workers = 4 }
small = { samples = 200, workers = 1 }
"""


def test_loads_and_renders_argv_item_by_item(tmp_path: Path) -> None:
    spec = load_spec("job", write_spec(tmp_path, BASIC))
    params = {**spec.base_params(tmp_path / "w"), **spec.params("small")}
    argv = spec.job_argv(params)
    assert argv == [sys.executable, f"{tmp_path}/job.py", "--out", f"{tmp_path}/w", "--n", "200"]
    assert spec.job_env(params) == {"OMP_NUM_THREADS": "1", "OUT": f"{tmp_path}/w"}
    assert spec.progress_path(params) == tmp_path / "w" / "PROGRESS.json"
    assert spec.checkpoint_globs(params) == [f"{tmp_path}/w/shards/*"]


def test_a_substituted_value_never_splits_into_more_arguments(tmp_path: Path) -> None:
    spec = load_spec("job", write_spec(tmp_path, BASIC))
    hostile = "a b; rm -rf / $(x)"
    params = {**spec.base_params(tmp_path / hostile), "samples": "1 --evil 2"}
    argv = spec.job_argv(params)
    assert len(argv) == 6
    assert argv[3].endswith(hostile) and argv[5] == "1 --evil 2"


def test_10pct_is_derived_from_production_unless_given(tmp_path: Path) -> None:
    spec = load_spec("job", write_spec(tmp_path, BASIC))
    assert spec.params("10pct") == {"samples": 3000, "workers": 1}
    partial = BASIC + '10pct = { workers = 2 }\n'
    spec = load_spec("job", write_spec(tmp_path, partial))
    assert spec.params("10pct") == {"samples": 3000, "workers": 2}
    assert spec.params("production") == {"samples": 30000, "workers": 4}


def test_missing_tier_sizes_are_an_error_naming_the_tier(tmp_path: Path) -> None:
    text = BASIC.replace("small = { samples = 200, workers = 1 }\n", "")
    spec = load_spec("job", write_spec(tmp_path, text))
    with pytest.raises(SpecError, match="no sizes for tier 'small'"):
        spec.params("small")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('progress =', 'progres ='), r"unknown key\(s\) \['progres'\]"),
        (('"{samples}"]', '"{sampels}"]'), r"key 'command': unknown placeholder \{sampels\}"),
        (('"{samples}"]', '"{samples:d}"]'), r"key 'command': bad placeholder"),
        (('"{samples}"]', '"{samples"]'), r"key 'command': bad placeholder"),
        (('"{samples}"]', '"{0}"]'), r"key 'command': bad placeholder"),
        (('OUT = "{workdir}"', 'OUT = "{home}"'), r"key 'env.OUT': unknown placeholder \{home\}"),
        (('OUT = "{workdir}"', 'OUT = 3'), r"key 'env': must be a table"),
        (('command = [', 'command = "x" #'), r"key 'command': must be a list of strings"),
        (('small = {', 'tiny = {'), r"unknown tier 'tiny'"),
        (('samples = 200,', 'samples = -1,'), r"scale'.small.samples: must be an integer"),
        (('samples = 200,', 'samples = true,'), r"scale'.small.samples: must be an integer"),
        (('samples = 200, workers = 1', 'samples = 200'), r"small: missing size\(s\) \['work"),
        (('workers = 4', 'workdir = 4'), r"clash with built-in placeholders"),
    ],
)
def test_strict_validation_names_the_file_and_key(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    assert edit[0] in BASIC
    path = write_spec(tmp_path, BASIC.replace(edit[0], edit[1], 1))
    with pytest.raises(SpecError, match=message) as caught:
        load_spec("job", path)
    assert str(path) in str(caught.value)


def test_command_is_required_and_progress_keys_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="missing required key 'command'"):
        load_specs(write_spec(tmp_path, '[workloads.a]\nprogress = "x"\n'))
    both = '[workloads.a]\ncommand = ["x"]\nprogress = "p"\nprogress_regex = "(\\\\d+)"\n'
    with pytest.raises(SpecError, match="either 'progress' or 'progress_regex'"):
        load_specs(write_spec(tmp_path, both))


@pytest.mark.parametrize(("regex", "ok"), [("step (\\\\d+)", True), ("(\\\\d+)/(\\\\d+)", True),
                                           ("step \\\\d+", False), ("(", False)])
def test_progress_regex_needs_one_or_two_groups(tmp_path: Path, regex: str, ok: bool) -> None:
    path = write_spec(tmp_path, f'[workloads.a]\ncommand = ["x"]\nprogress_regex = "{regex}"\n')
    if ok:
        assert load_spec("a", path).progress_regex is not None
    else:
        with pytest.raises(SpecError, match="progress_regex"):
            load_spec("a", path)


def test_unknown_top_level_tables_and_bad_toml_are_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"unknown top-level key\(s\) \['workload'\]"):
        load_specs(write_spec(tmp_path, '[workload.a]\ncommand = ["x"]\n'))
    with pytest.raises(SpecError, match="invalid TOML"):
        load_specs(write_spec(tmp_path, "[workloads.a\n"))


def test_optional_keys_launcher_prepare_timeout(tmp_path: Path) -> None:
    text = (
        '[workloads.a]\ncommand = ["train", "--data", "{prepared}"]\nresume = []\n'
        'launcher = ["torchrun", "--nproc", "2"]\nprepare = ["gen", "{prepared}"]\n'
        'timeout_s = 90\nverify = ["check", "{workdir}"]\n'
    )
    spec = load_spec("a", write_spec(tmp_path, text))
    assert spec.timeout_s == 90.0 and spec.resume == ()
    params = {**spec.base_params(tmp_path), "prepared": "/data"}
    assert spec.job_argv(params, resume=True) == ["torchrun", "--nproc", "2", "train", "--data",
                                                  "/data"]
    with pytest.raises(SpecError, match="must be a positive number"):
        load_spec("a", write_spec(tmp_path, text.replace("90", "0")))


def test_pyproject_section_and_search_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_spec(tmp_path, '[tool.preflight.workloads.a]\ncommand = ["from-pyproject"]\n'
               '[tool.other]\nx = 1\n', "pyproject.toml")
    monkeypatch.chdir(tmp_path)
    assert load_spec("a").command == ("from-pyproject",)
    write_spec(tmp_path, '[workloads.a]\ncommand = ["from-workloads"]\n')
    assert load_spec("a").command == ("from-workloads",)
    with pytest.raises(SpecError, match=r"'nope' not found in workloads.toml or pyproject.toml"):
        load_spec("nope")
    with pytest.raises(SpecError, match="does not exist"):
        load_spec("a", tmp_path / "missing.toml")


def test_find_spec_skips_files_that_do_not_exist(tmp_path: Path) -> None:
    path = write_spec(tmp_path, '[workloads.a]\ncommand = ["x"]\n')
    assert find_spec("a", [tmp_path / "absent.toml", path]).source == path


def test_the_planted_defect_specs_are_valid() -> None:
    specs = load_specs(FIXTURE_SPECS)
    assert set(specs) == {"clean", "leaky", "fd_leak", "slowing", "stall"}
    for spec in specs.values():
        assert spec.params("10pct")["units"] == 3000
        assert os.path.basename(spec.job_argv(spec.base_params("/w") | spec.params("small"))[1])
