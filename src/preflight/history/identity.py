"""What a gate result is a result *for*: a hash of the code and of the configuration.

The launch guard compares these, so a 10pct rehearsal only licenses a production launch of
the same code with the same workload specs and gate policy. Hashed from file contents, not
git, so it works in any checkout and notices uncommitted edits.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from preflight.durable.manifest import config_hash
from preflight.spec.pyproject import preflight_table

CODE_DIRS = ("src", "examples")
CODE_SUFFIXES = (".py",)
FILES_MAX = 20_000


def _sources(root: Path) -> list[Path]:
    """Our layout (src/, examples/) when present; anyone else's: every .py file under the
    root outside hidden folders and virtual environments."""
    dirs = [root / d for d in CODE_DIRS if (root / d).is_dir()] or [root]
    skip = {"__pycache__", "venv", "node_modules"}
    found = []
    for directory in dirs:
        for path in directory.rglob("*"):
            parts = path.relative_to(root).parts
            if any(part.startswith(".") or part in skip for part in parts[:-1]):
                continue
            if path.suffix in CODE_SUFFIXES and path.is_file():
                found.append(path)
                if len(found) > FILES_MAX:
                    raise ValueError(f"{root}: more than {FILES_MAX} source files to hash")
    return sorted(found)


def code_hash(root: str | Path = ".") -> str:
    root = Path(root)
    digest = hashlib.sha256()
    paths = _sources(root)
    if len(paths) > FILES_MAX:
        raise ValueError(f"{root}: more than {FILES_MAX} source files to hash")
    for path in paths:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def preflight_config_hash(pyproject: str | Path = "pyproject.toml") -> str:
    """Hash of ``[tool.preflight]`` (workload specs and gate policy)."""
    return config_hash(preflight_table(Path(pyproject)))
