"""What a gate result is a result *for*: a hash of the code and of the configuration.

The launch guard compares these, so a 10pct rehearsal only licenses a production launch of
the same code with the same workload specs and gate policy. Hashed from file contents, not
git, so it works in any checkout and notices uncommitted edits.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from durable.manifest import config_hash
from harness.gate.policy import preflight_table

CODE_DIRS = ("harness", "src")
CODE_SUFFIXES = (".py",)
FILES_MAX = 20_000


def code_hash(root: str | Path = ".") -> str:
    root = Path(root)
    digest = hashlib.sha256()
    paths = sorted(
        p
        for d in CODE_DIRS
        if (root / d).is_dir()
        for p in (root / d).rglob("*")
        if p.suffix in CODE_SUFFIXES and p.is_file() and "__pycache__" not in p.parts
    )
    if len(paths) > FILES_MAX:
        raise ValueError(f"{root}: more than {FILES_MAX} source files to hash")
    for path in paths:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def preflight_config_hash(pyproject: str | Path = "pyproject.toml") -> str:
    """Hash of ``[tool.preflight]`` (workload specs and gate policy)."""
    return config_hash(preflight_table(Path(pyproject)))
