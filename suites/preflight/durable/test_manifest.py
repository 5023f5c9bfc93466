"""Manifest-last commits: round trips, escapes refused, corruption named, kills never commit."""

from __future__ import annotations

import json
import os
import signal
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from preflight.durable import BadInputError, VerifyError, manifest
from preflight.durable.manifest import MANIFEST_NAME, FileEntry, config_hash

from .conftest import run_child

NAMES = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=12)
TREES = st.dictionaries(
    st.lists(NAMES, min_size=1, max_size=3).map("/".join), st.binary(max_size=256), max_size=8
)


def _write_tree(root, tree: dict[str, bytes]) -> None:
    for rel, data in tree.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _prefix_free(tree: dict[str, bytes]) -> bool:
    # A path cannot be both a file and a directory ("a" and "a/b").
    return not any(other.startswith(rel + "/") for rel in tree for other in tree)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tree=TREES.filter(_prefix_free))
def test_commit_verify_round_trip(tmp_path_factory, tree):
    root = tmp_path_factory.mktemp("tree")
    _write_tree(root, tree)
    committed = manifest.commit(root, config={"k": 1})
    assert {e.path for e in committed.files} == set(tree)
    again = manifest.verify(root)
    assert again.files == committed.files
    assert again.lineage["config_hash"] == config_hash({"k": 1})
    parsed = manifest.parse(json.loads((root / MANIFEST_NAME).read_text()), "m")
    assert parsed.files == committed.files


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.binary(min_size=1, max_size=512), where=st.integers(min_value=0), bit=st.integers(0, 7)
)
def test_flipped_byte_fails_naming_file(tmp_path_factory, data, where, bit):
    root = tmp_path_factory.mktemp("flip")
    (root / "sub").mkdir()
    (root / "sub" / "data.bin").write_bytes(data)
    (root / "other.bin").write_bytes(b"fine")
    manifest.commit(root)
    raw = bytearray(data)
    raw[where % len(raw)] ^= 1 << bit
    (root / "sub" / "data.bin").write_bytes(bytes(raw))
    with pytest.raises(VerifyError) as info:
        manifest.verify(root)
    assert info.value.path.endswith("sub/data.bin")


def test_config_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x", "a/../../x", "./a", "a//b", ""])
def test_traversal_paths_refused(tmp_path, bad):
    (tmp_path / "a").write_bytes(b"1")
    manifest.commit(tmp_path)
    raw = json.loads((tmp_path / MANIFEST_NAME).read_text())
    raw["files"][0]["path"] = bad
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(VerifyError):
        manifest.verify(tmp_path)


def test_symlink_escape_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    root = tmp_path / "root"
    root.mkdir()
    (root / "ok").write_bytes(b"1")
    committed = manifest.commit(root)
    os.symlink(outside / "secret", root / "link")
    entry = FileEntry("link", 1, committed.files[0].sha256)
    raw = committed.to_json()
    raw["files"].append(entry.__dict__)
    (root / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(VerifyError, match="symlink escape"):
        manifest.verify(root)


def test_symlinks_are_not_committed(tmp_path):
    (tmp_path / "real").write_bytes(b"1")
    os.symlink("/etc/hostname", tmp_path / "link")
    assert [e.path for e in manifest.commit(tmp_path).files] == ["real"]


def test_run_directory_may_itself_be_a_symlink(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "f").write_bytes(b"data")
    link = tmp_path / "link"
    os.symlink(real, link)
    manifest.commit(link)
    assert manifest.verify(link).files[0].path == "f"


def test_missing_manifest_is_not_committed(tmp_path):
    (tmp_path / "f").write_bytes(b"1")
    assert not manifest.is_committed(tmp_path)
    with pytest.raises(VerifyError, match="never committed"):
        manifest.verify(tmp_path)


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{", "invalid JSON"),
        ('{"format": 1, "files": [], "lineage": {}, "x": ' + "[" * 100 + "]" * 100 + "}", "deeper"),
        (
            '{"format": 1, "files": [{"path": "a", "size": 1' + "0" * 60 + ', "sha256": "00"}],'
            ' "lineage": {}}',
            "too large",
        ),
        (
            '{"format": 1, "files": [{"path": "a", "size": 10000000000000000, "sha256": "'
            + "0" * 64
            + '"}], "lineage": {}}',
            "out of range",
        ),
        (
            '{"format": 1, "files": [{"path": "a", "size": NaN, "sha256": "00"}], "lineage": {}}',
            "non-finite",
        ),
        ('{"format": 2, "files": [], "lineage": {}}', "unsupported"),
        ('{"format": 1, "files": "x", "lineage": {}}', "'files' must be list"),
    ],
)
def test_malformed_manifest_refused_with_reason(tmp_path, content, fragment):
    (tmp_path / MANIFEST_NAME).write_text(content)
    with pytest.raises(VerifyError, match=fragment):
        manifest.verify(tmp_path)


def test_build_entries_refuses_escaping_file_list(tmp_path):
    with pytest.raises(BadInputError):
        manifest.commit(tmp_path, files=["../etc"])


MANIFEST_POINTS = [
    "manifest.before_commit",
    "atomic.before_write",
    "atomic.before_fsync",
    "atomic.before_replace",
]


@pytest.mark.parametrize("point", MANIFEST_POINTS)
def test_kill_during_commit_never_leaves_a_committed_directory(tmp_path, point):
    (tmp_path / "a.bin").write_bytes(b"a" * 5000)
    (tmp_path / "b.bin").write_bytes(b"b" * 7000)
    code = f"from preflight.durable import manifest\nmanifest.commit({str(tmp_path)!r})\n"
    result = run_child(code, faults=f"{point}:kill")
    assert result.returncode == -signal.SIGKILL
    assert not manifest.is_committed(tmp_path)
    # The work is recoverable: committing again afterwards succeeds and verifies.
    manifest.commit(tmp_path)
    assert manifest.is_committed(tmp_path)


def test_kill_after_replace_leaves_a_valid_commit(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"a")
    code = f"from preflight.durable import manifest\nmanifest.commit({str(tmp_path)!r})\n"
    result = run_child(code, faults="atomic.before_dir_fsync:kill")
    assert result.returncode == -signal.SIGKILL
    assert manifest.is_committed(tmp_path)
