"""The ``[tool.preflight]`` table of a project's pyproject.toml, read bounded and checked.

The gate policy (gate/policy.py) and a run's config hash (history/identity.py) both read it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from preflight.durable.errors import BadInputError
from preflight.spec.tomlshape import toml_shape_problem

PYPROJECT_BYTES_MAX = 1 << 20


def preflight_table(path: Path) -> dict[str, Any]:
    """``[tool.preflight]`` of a pyproject.toml, read bounded; BadInputError naming the file
    for anything that is not valid TOML with tables there. A missing file reads as {}."""
    if not path.is_file():
        return {}
    if path.stat().st_size > PYPROJECT_BYTES_MAX:
        raise BadInputError(f"{path}: larger than {PYPROJECT_BYTES_MAX} bytes")
    try:
        text = path.read_text(encoding="utf-8")
        problem = toml_shape_problem(text)
        if problem is not None:
            raise BadInputError(f"{path}: refused before parsing: {problem}")
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses per nesting level
        raise BadInputError(f"{path}: invalid TOML: nested too deeply") from None
    table: Any = data
    for key in ("tool", "preflight"):
        table = table.get(key, {}) if isinstance(table, dict) else None
    if not isinstance(table, dict):
        raise BadInputError(f"{path}: [tool.preflight] must be a table")
    return table
