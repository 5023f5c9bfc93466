"""Issue 19 item 8: ``preflight check --work-root`` that cannot hold scratch files is bad
input (exit 2) with a message naming the path and the reason, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from preflight.check.command import build_parser, main, options_from
from preflight.check.options import check_work_root

SPEC = Path(__file__).resolve().parents[2] / "fixtures" / "workloads.toml"


def _check(work_root: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    argv = ["clean", "--spec", str(SPEC), "--faults", "kill", "--work-root", work_root]
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("/proc", "cannot create files in it"),
        ("/proc/preflight-work", "cannot create it"),
        ("FILE", "not a directory"),
        ("FILE/below", "cannot create it: Not a directory"),
        ("", "must not be empty"),
    ],
)
def test_unusable_work_root_is_bad_input_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, reason: str
) -> None:
    (tmp_path / "FILE").write_text("not a folder")
    path = where.replace("FILE", str(tmp_path / "FILE"))
    code, err = _check(path, capsys)
    assert code == 2
    assert f"--work-root {path}".rstrip() in err and reason in err
    assert "Traceback" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a mode-0555 directory")
def test_read_only_work_root_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o555)
    with pytest.raises(ValueError, match=f"--work-root {locked}: cannot create files"):
        check_work_root(str(locked))


def test_missing_work_root_is_created_and_left_empty(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b"
    args = build_parser().parse_args(["clean", "--work-root", str(root)])
    assert options_from(args).work_root == str(root)
    assert root.is_dir() and list(root.iterdir()) == []
