"""A linear pre-check of TOML text before tomllib parses it: bounds on what makes tomllib
slow or deep (specs and the gate policy both use it)."""

from __future__ import annotations

import re

# tomllib's cost grows with the square of a dotted key's parts (40 KB of `a.a.a...` took
# 2.4 GB) and it recurses per bracket level; no real spec or policy comes near these.
TOML_KEY_PARTS_MAX = 32
TOML_DEPTH_MAX = 32
_TOML_STRING_OR_COMMENT = re.compile(
    r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:\\.|[^"\\\n])*"|\'[^\'\n]*\'|#[^\n]*'
)
# A run of key characters and dots: a dotted key (or a float, which has one dot).
_TOML_DOTTED = re.compile(r'[A-Za-z0-9_\-"\' \t]+(?:\.[A-Za-z0-9_\-"\' \t]+)+')


def _blank_strings(text: str) -> str:
    """``text`` with every string literal emptied and comments removed, so that only the
    document's structure (keys, brackets) is left to measure."""

    def keep_quotes(match: re.Match[str]) -> str:
        token = match.group()
        return "" if token.startswith("#") else '""'

    return _TOML_STRING_OR_COMMENT.sub(keep_quotes, text)


def toml_shape_problem(text: str) -> str | None:
    """Why ``text`` is too costly to hand to tomllib (a key with too many dotted parts,
    brackets nested too deeply), or None. Linear in the text; run before parsing."""
    structure = _blank_strings(text)
    for match in _TOML_DOTTED.finditer(structure):
        parts = match.group().count(".") + 1
        if parts > TOML_KEY_PARTS_MAX:
            line = structure.count("\n", 0, match.start()) + 1
            return f"line {line}: a dotted key of {parts} parts (at most {TOML_KEY_PARTS_MAX})"
    depth = deepest = 0
    for char in re.findall(r"[\[\]{}]", structure):
        depth = depth + 1 if char in "[{" else max(0, depth - 1)
        deepest = max(deepest, depth)
        if deepest > TOML_DEPTH_MAX:
            return f"brackets nested too deeply (more than {TOML_DEPTH_MAX} levels)"
    return None
