"""Issue 19: nothing outside a run directory is ever touched, and stop/resume rules hold.

Every symlink here points at a decoy inside the test's temp dir, never at a system file.
Items: 1 symlinks, 2 ledger cross-check, 3 exact resume, 4 --out ownership, 9 exit codes.
The hypothesis property test plants random symlinks, directories and permission changes
inside run dirs and checks that no file outside them changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from preflight_examples.datagen.cli import main as datagen_main

from preflight.durable import atomic_write, faults, manifest
from suites.examples.trainer.conftest import fit_args, write_tiny_dataset
from suites.security.conftest import TINY_DATAGEN, Result

CHILD_TIMEOUT_S = 60.0
STOP_AT = "trainer.after_optimizer_step:raise@7"  # fails at step 7: checkpoint 5 committed


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (never following links) -> a digest of what it is."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st_ = os.lstat(path)
            if path.is_symlink():
                found[rel] = f"link:{os.readlink(path)}"
            elif path.is_file():
                found[rel] = f"{st_.st_mode:o}:" + hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[rel] = f"dir:{st_.st_mode:o}"
    return found


@pytest.fixture
def decoys(tmp_path: Path) -> Path:
    """A directory of precious files outside every run dir."""
    root = tmp_path / "decoys"
    (root / "dir").mkdir(parents=True)
    (root / "victim").write_text("precious\n")
    (root / "dir" / "manifest.json").write_text('{"precious": true}\n')
    _outside_database(root / "db.sqlite")
    return root


def _outside_database(path: Path) -> None:
    """A real SQLite database: a ledger opened through a link would write into it."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE precious (x TEXT)")
        db.execute("INSERT INTO precious VALUES ('precious')")
        db.commit()


def datagen(*argv: str) -> Result:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PREFLIGHT_FAULTS", raising=False)
        patch.setattr(faults, "_state", faults._State())
        code = datagen_main(list(argv))
    return Result(code, "")


def gen_args(out: Path | str, *extra: str) -> list[str]:
    return ["generate", "--out", str(out), *TINY_DATAGEN, *extra]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(dataset, a trainer run that failed at step 7 with checkpoint step 5 committed)."""
    from preflight_examples.trainer.cli import main

    base = tmp_path_factory.mktemp("stopped")
    data = write_tiny_dataset(base / "ds")
    run = base / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFLIGHT_FAULTS", STOP_AT)
        patch.setattr(faults, "_state", faults._State())
        assert main(fit_args(data, run)) == 1
    assert (run / "checkpoints" / "step-00000005" / "manifest.json").is_file()
    yield data, run


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, symlinks=True)
    return dest


# ------------------------------------------------------------------ item 1: symlinks


DATAGEN_LINKS = {
    ".lock": "victim",
    "ledger.sqlite": "db.sqlite",
    "shards": "dir",
}


@pytest.mark.long  # drives real jobs for seconds: make test-long (CI runs it)
@pytest.mark.parametrize("name", sorted(DATAGEN_LINKS))
def test_datagen_never_writes_through_a_symlink_in_out(
    tmp_path: Path, decoys: Path, name: str
) -> None:
    out = tmp_path / "ds"
    assert datagen(*gen_args(out)).returncode == 0
    before = tree_digest(decoys)
    path = out / name
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    path.symlink_to(decoys / DATAGEN_LINKS[name])
    assert datagen(*gen_args(out)).returncode == 4
    # --new refuses, or (the ledger) removes the link itself and starts over: never follows.
    assert datagen(*gen_args(out, "--new")).returncode in (0, 4)
    assert tree_digest(decoys) == before


def test_datagen_verify_refuses_a_symlinked_manifest(tmp_path: Path, decoys: Path) -> None:
    out = tmp_path / "ds"
    assert datagen(*gen_args(out)).returncode == 0
    copy = decoys / "manifest.json"
    shutil.copy(out / "manifest.json", copy)
    (out / "manifest.json").unlink()
    (out / "manifest.json").symlink_to(copy)
    assert datagen("verify", str(out)).returncode == 4


TRAINER_LINKS = {
    ".lock": "victim",
    "metrics.jsonl": "victim",
    "config.json": "victim",
    "checkpoints/step-00000005": "dir",
    "checkpoints": "dir",
}


@pytest.mark.parametrize("name", sorted(TRAINER_LINKS))
def test_trainer_fit_never_writes_or_deletes_through_a_symlink(
    tmp_path: Path,
    decoys: Path,
    stopped_run: tuple[Path, Path],
    trainer: Callable[..., Result],
    name: str,
) -> None:
    data, base = stopped_run
    run = copy_run(base, tmp_path / "run")
    path = run / name
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.symlink_to(decoys / TRAINER_LINKS[name])
    before = tree_digest(decoys)
    done = trainer(*fit_args(data, run))
    assert done.returncode == 4, done.stderr
    assert "symlink" in done.stderr and name.split("/")[0] in done.stderr
    assert trainer(*fit_args(data, run), "--new").returncode == 4
    assert tree_digest(decoys) == before


@pytest.mark.parametrize("name", ["config.json", "final", "final/manifest.json"])
def test_trainer_verify_refuses_symlinked_run_files(
    tmp_path: Path,
    decoys: Path,
    stopped_run: tuple[Path, Path],
    trainer: Callable[..., Result],
    name: str,
) -> None:
    data, base = stopped_run
    run = copy_run(base, tmp_path / "run")
    assert trainer(*fit_args(data, run)).returncode == 0
    assert trainer("verify", str(run)).returncode == 0
    target = decoys / "moved"
    shutil.move(run / name, target)
    (run / name).symlink_to(target)
    done = trainer("verify", str(run))
    assert done.returncode == 4 and "symlink" in done.stderr


# ------------------------------------------------------------------ item 2: ledger cross-check


def _tamper_consistently(shard_dir: Path) -> None:
    """Change the shard's data and rewrite its manifest to match (same meta)."""
    old = manifest.read(shard_dir)
    videos = shard_dir / "videos.npy"
    data = bytearray(videos.read_bytes())
    data[-1] ^= 0xFF
    videos.write_bytes(bytes(data))
    manifest.commit(shard_dir, files=["labels.npy", "videos.npy"], meta=old.meta)


def test_a_consistently_tampered_shard_is_refused_not_refinalized(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert datagen(*gen_args(out)).returncode == 0
    _tamper_consistently(out / "shards" / "00000")
    assert datagen(*gen_args(out)).returncode == 4
    assert datagen("verify", str(out)).returncode == 4


# ------------------------------------------------------------------ item 3: exact resume


def test_resume_with_other_threads_is_refused(
    stopped_run: tuple[Path, Path], tmp_path: Path, trainer: Callable[..., Result]
) -> None:
    data, base = stopped_run
    run = copy_run(base, tmp_path / "run")
    done = trainer(*fit_args(data, run), "--threads", "2")
    assert done.returncode == 2 and "threads" in done.stderr
    assert not (run / "final").exists()
    assert trainer(*fit_args(data, run)).returncode == 0


def test_a_dataset_changed_under_a_running_fit_is_refused(
    tmp_path: Path, trainer: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    from preflight_examples.trainer import fit

    data = write_tiny_dataset(tmp_path / "ds")
    videos = data / "shards" / "00001" / "videos.npy"
    original = fit.Trainer._batch
    calls = {"n": 0}

    def batch_then_tamper(self: fit.Trainer) -> object:
        calls["n"] += 1
        if calls["n"] == 3:  # rewrite one byte in place, as another process would
            with open(videos, "r+b") as handle:
                handle.seek(-1, os.SEEK_END)
                last = handle.read(1)
                handle.seek(-1, os.SEEK_END)
                handle.write(bytes([last[0] ^ 0xFF]))
        return original(self)

    monkeypatch.setattr(fit.Trainer, "_batch", batch_then_tamper)
    done = trainer(*fit_args(data, tmp_path / "run"))
    assert done.returncode == 4 and "videos.npy" in done.stderr
    assert not (tmp_path / "run" / "final").exists()


# ------------------------------------------------------------------ item 4: --out ownership


def test_empty_out_is_refused_and_the_cwd_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trainer: Callable[..., Result]
) -> None:
    cwd = tmp_path / "project"
    (cwd / "shards" / "myproject").mkdir(parents=True)
    (cwd / "shards" / "myproject" / "data.txt").write_text("precious")
    (cwd / "manifest.json").write_text("{}")
    monkeypatch.chdir(cwd)
    before = tree_digest(cwd)
    assert datagen(*gen_args("")).returncode == 2
    assert datagen(*gen_args("", "--new")).returncode == 2
    data = write_tiny_dataset(tmp_path / "ds")
    assert trainer(*fit_args(data, Path("x"))[:4], "", "--steps", "2").returncode == 2
    assert tree_digest(cwd) == before


def test_a_foreign_non_empty_out_is_refused_even_with_new(
    tmp_path: Path, trainer: Callable[..., Result]
) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "manifest.json").write_text('{"theirs": 1}')
    (foreign / "dataset.json").write_text('{"theirs": 2}')
    (foreign / "metrics.jsonl").write_text('{"theirs": 3}\n')
    before = tree_digest(foreign)
    for extra in ((), ("--new",)):
        assert datagen(*gen_args(foreign, *extra)).returncode == 2
    data = write_tiny_dataset(tmp_path / "ds")
    for extra in ((), ("--new",)):
        done = trainer(*fit_args(data, foreign), *extra)
        assert done.returncode == 2 and "not a trainer run" in done.stderr
    assert tree_digest(foreign) == before
    # Ours stays ours: a second generate into its own directory resumes.
    assert datagen(*gen_args(tmp_path / "mine")).returncode == 0
    assert datagen(*gen_args(tmp_path / "mine")).returncode == 0


# ------------------------------------------------------------------ item 9: exit codes


def test_out_the_os_cannot_create_and_a_log_json_directory_exit_2(
    tmp_path: Path, trainer: Callable[..., Result]
) -> None:
    data = write_tiny_dataset(tmp_path / "ds")
    done = trainer(*fit_args(data, Path("/proc/preflight-no-such-dir/run")))
    assert done.returncode == 2, done.stderr
    logdir = tmp_path / "logs"
    logdir.mkdir()
    done = trainer(*fit_args(data, tmp_path / "run"), "--log-json", str(logdir))
    assert done.returncode == 2 and str(logdir) in done.stderr


def test_enospc_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFLIGHT_FAULTS", "atomic.before_fsync:enospc")
    monkeypatch.setattr(faults, "_state", faults._State())
    target = tmp_path / "state.json"
    with pytest.raises(OSError) as caught:
        atomic_write(target, {"a": 1})
    assert caught.value.errno == errno.ENOSPC and str(target) in str(caught.value)


STARTUP_PROBE = """
import signal, sys, ctypes
seen = {}
class Probe:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" and "numpy" not in seen:
            seen["numpy"] = signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
        return None
sys.meta_path.insert(0, Probe())
sys.argv = ["trainer", "fit"]
import preflight_examples.trainer.cli
sig = ctypes.c_int()
ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
print(seen.get("numpy"), sig.value, "torch" in sys.modules)
"""


def test_stop_handler_and_pdeathsig_are_set_before_heavy_imports() -> None:
    """Item 9 (SIGTERM at start-up is exit 75, not -15) and item 5 (a rank dies with its
    launcher from its first instruction): both are in place before numpy or torch load."""
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1"}
    env.pop("PREFLIGHT_FAULTS", None)
    done = subprocess.run(
        [sys.executable, "-c", STARTUP_PROBE],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    handler_before_numpy, pdeathsig, torch_loaded = done.stdout.split()
    assert handler_before_numpy == "True"
    assert int(pdeathsig) == 9 and torch_loaded == "False"
    assert ctypes.sizeof(ctypes.c_int) == 4


# ------------------------------------------------------------------ property: nothing escapes

ENTRY_NAMES = {
    "datagen": [
        ".lock",
        "ledger.sqlite",
        "ledger.sqlite-wal",
        "shards",
        "shards/00000",
        "shards/00000/videos.npy",
        "shards/00000/manifest.json",
        "manifest.json",
        "dataset.json",
        "PROGRESS.json",
        "ranks",
    ],
    "trainer": [
        ".lock",
        "config.json",
        "metrics.jsonl",
        "PROGRESS.json",
        "checkpoints",
        "checkpoints/step-00000005",
        "checkpoints/step-00000005/state.pt",
        "checkpoints/step-00000005/manifest.json",
        "final",
        "data-verified.json",
    ],
}
DECOY_TARGETS = ["victim", "dir", "dir/manifest.json", "db.sqlite", "missing"]
ACTIONS = ("symlink", "directory", "chmod0", "chmod_ro", "remove")

Damage = tuple[str, str, str]  # (action, entry, decoy target)


def _damage(run: Path, decoys: Path, action: str, name: str, target: str) -> None:
    path = run / name
    if not path.parent.is_dir() or path.parent.is_symlink():
        return
    if action in ("symlink", "directory", "remove"):
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
        if action == "symlink":
            path.symlink_to(decoys / target)
        elif action == "directory":
            path.mkdir()
    elif path.exists() and not path.is_symlink():
        path.chmod(0 if action == "chmod0" else 0o500)


def _restore_modes(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() else 0o644)


damage_lists = st.lists(
    st.tuples(st.sampled_from(ACTIONS), st.integers(0, 99), st.sampled_from(DECOY_TARGETS)),
    min_size=1,
    max_size=4,
)


@pytest.mark.long
def test_random_damage_inside_run_dirs_never_touches_files_outside(
    tmp_path: Path,
    stopped_run: tuple[Path, Path],
    trainer: Callable[..., Result],
    examples: int,
    preflight_record: Callable[..., None],
) -> None:
    data, trainer_base = stopped_run
    datagen_base = tmp_path / "datagen-base"
    assert datagen(*gen_args(datagen_base)).returncode == 0
    tally = {"cases": 0, "symlinks": 0, "refused": 0}

    @settings(
        max_examples=max(10, examples // 3),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.sampled_from(["datagen", "trainer"]), damage_lists)
    def one(kind: str, damage: list[tuple[str, int, str]]) -> None:
        case = tmp_path / f"case-{tally['cases']}"
        tally["cases"] += 1
        decoys = case / "decoys"
        (decoys / "dir").mkdir(parents=True)
        (decoys / "victim").write_text("precious\n")
        (decoys / "dir" / "manifest.json").write_text("{}\n")
        _outside_database(decoys / "db.sqlite")
        run = copy_run(datagen_base if kind == "datagen" else trainer_base, case / "run")
        names = ENTRY_NAMES[kind]
        for action, index, target in damage:
            _damage(run, decoys, action, names[index % len(names)], target)
            tally["symlinks"] += action == "symlink"
        before = tree_digest(decoys)
        try:
            if kind == "datagen":
                codes = [datagen(*gen_args(run)).returncode, datagen("verify", str(run)).returncode]
            else:
                codes = [
                    trainer(*fit_args(data, run)).returncode,
                    trainer("verify", str(run)).returncode,
                ]
        finally:
            _restore_modes(run)
        tally["refused"] += any(code in (2, 4) for code in codes)
        assert tree_digest(decoys) == before, f"{kind} {damage}: a file outside changed"
        shutil.rmtree(case)

    one()
    preflight_record("security.run_dir_damage.inputs", tally["cases"], unit="count")
    preflight_record("security.run_dir_damage.symlinks", tally["symlinks"], unit="count")
    preflight_record("security.run_dir_damage.refused", tally["refused"], unit="count")
