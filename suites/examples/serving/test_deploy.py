"""promote / rollback: the atomic ``current`` switch, history, refusals and repair."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from preflight_examples.serving import deploy

from preflight.durable import manifest
from suites.examples.serving.conftest import Cli, bundle_id


def target(deploy_dir: Path) -> str:
    return Path(os.readlink(deploy_dir / "current")).name


def test_promote_and_rollback_walk_the_history(
    bundle4: Path, worse4: Path, third4: Path, tmp_path: Path, cli: Cli
) -> None:
    d = tmp_path / "deploy"
    ids = [bundle_id(b) for b in (bundle4, worse4, third4)]
    for bundle in (bundle4, worse4, third4):
        result = cli(["promote", str(bundle), "--to", str(d)])
        assert result.code == 0, result.err
    assert target(d) == ids[2]
    assert os.readlink(d / "current") == f"bundles/{ids[2]}"  # relative: the dir can move
    for bundle in ids:
        manifest.verify(d / "bundles" / bundle)  # stored copies are committed bundles
    history = json.loads((d / "history.json").read_text())
    assert history["stack"] == ids
    assert [e["action"] for e in history["events"]] == ["promote"] * 3
    result = cli(["rollback", str(d)])
    assert result.code == 0 and json.loads(result.out)["bundle"] == ids[1]
    assert target(d) == ids[1]
    assert cli(["rollback", str(d)]).code == 0 and target(d) == ids[0]
    nothing = cli(["rollback", str(d)])
    assert nothing.code == 2 and "nothing to roll back to" in nothing.err
    assert target(d) == ids[0]
    assert not [p for p in d.iterdir() if p.name.startswith(".") and p.name != ".lock"]


def test_rollback_of_a_missing_deploy_dir_is_bad_input(tmp_path: Path, cli: Cli) -> None:
    result = cli(["rollback", str(tmp_path / "nowhere")])
    assert result.code == 2 and "nothing was ever promoted" in result.err


def test_promoting_the_current_bundle_changes_nothing(
    bundle4: Path, tmp_path: Path, cli: Cli
) -> None:
    d = tmp_path / "deploy"
    assert cli(["promote", str(bundle4), "--to", str(d)]).code == 0
    again = cli(["promote", str(bundle4), "--to", str(d)])
    assert again.code == 0 and json.loads(again.out)["changed"] is False
    assert json.loads((d / "history.json").read_text())["stack"] == [bundle_id(bundle4)]


def test_tampered_bundle_is_not_promoted(
    bundle4: Path, worse4: Path, tmp_path: Path, cli: Cli
) -> None:
    d = tmp_path / "deploy"
    assert cli(["promote", str(bundle4), "--to", str(d)]).code == 0
    bad = Path(shutil.copytree(worse4, tmp_path / "bad"))
    (bad / "model.ts").write_bytes(b"tampered")
    result = cli(["promote", str(bad), "--to", str(d)])
    assert result.code == 4 and "model.ts" in result.err
    assert target(d) == bundle_id(bundle4)


def test_rollback_refuses_a_damaged_previous_bundle(
    bundle4: Path, worse4: Path, tmp_path: Path, cli: Cli
) -> None:
    d = tmp_path / "deploy"
    for bundle in (bundle4, worse4):
        assert cli(["promote", str(bundle), "--to", str(d)]).code == 0
    (d / "bundles" / bundle_id(bundle4) / "bundle.json").write_text("{}")
    result = cli(["rollback", str(d)])
    assert result.code == 4 and "bundle.json" in result.err
    assert target(d) == bundle_id(worse4)  # still serving the good one


def test_a_switch_left_undone_is_finished_by_the_next_command(
    bundle4: Path, worse4: Path, third4: Path, tmp_path: Path
) -> None:
    d = tmp_path / "deploy"
    deploy.promote(bundle4, d)
    deploy.promote(worse4, d)
    # As if killed after history.json named worse4 but before ``current`` moved to it.
    deploy.switch_current(d, bundle_id(bundle4))
    outcome = deploy.promote(third4, d)
    assert outcome["repaired"] == bundle_id(worse4)
    assert deploy.read_history(d).stack == tuple(bundle_id(b) for b in (bundle4, worse4, third4))
    assert deploy.rollback(d)["bundle"] == bundle_id(worse4) == target(d)


def test_history_stack_is_bounded() -> None:
    history = deploy.History((), ())
    for i in range(deploy.STACK_MAX + 5):
        history = deploy.pushed(history, f"{i:016x}", "src")
    assert len(history.stack) == deploy.STACK_MAX
    assert history.current == f"{deploy.STACK_MAX + 4:016x}"
    assert deploy.popped(history).current == f"{deploy.STACK_MAX + 3:016x}"
