"""Hostile-input strategies shared by the parser modules (pure hypothesis building blocks)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

HOSTILE_TOKENS = (
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e999",
    b"-1e999",
    b"9" * 5000,
    b"\x00",
    b"\xff\xfe",
    b'"\\ud800"',
    b"[",
    b"{",
    b"]",
    b"}",
    b'"',
    b"\\",
    b",",
    b":",
    b"null",
    b"true",
    b"-0",
    b"1" + b"0" * 400,
    b"0.0000000001e-400",
    b"/..",
    b"../../etc/passwd",
    b"/etc/passwd",
)


def deep(depth: int, opener: str = "[", closer: str = "]") -> bytes:
    return (opener * depth + closer * depth).encode()


def json_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Arbitrary JSON-able values of the wrong-type kind a field might be given."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**50), max_value=10**50),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=40),
        st.sampled_from(["../x", "/abs", "a/../../b", "", ".", "a\\b", "x" * 2000]),
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def mutated_document(valid: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``valid`` with one field deleted, retyped or replaced by a hostile value, or a new one
    added; nested objects and lists are reached by one level of descent."""
    keys = sorted(valid)

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        doc = json.loads(json.dumps(valid))
        for _ in range(draw(st.integers(1, 3))):
            action = draw(st.sampled_from(["delete", "replace", "add", "nested"]))
            key = draw(st.sampled_from(keys))
            if action == "delete":
                doc.pop(key, None)
            elif action == "replace":
                doc[key] = draw(json_values())
            elif action == "add":
                doc[draw(st.text(max_size=12))] = draw(json_values())
            else:
                doc[key] = _nested_mutation(draw, doc.get(key))
        return doc

    return build()


def _nested_mutation(draw: st.DrawFn, value: Any) -> Any:
    if isinstance(value, list) and value:
        index = draw(st.integers(0, len(value) - 1))
        item = value[index]
        if isinstance(item, dict) and item:
            item = dict(item)
            item[draw(st.sampled_from(sorted(item)))] = draw(json_values())
        else:
            item = draw(json_values())
        out = list(value)
        out[index] = item
        return out + draw(st.lists(json_values(), max_size=2))
    if isinstance(value, dict) and value:
        out = dict(value)
        out[draw(st.sampled_from(sorted(out)))] = draw(json_values())
        return out
    return draw(json_values())


def document_bytes(valid: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """The bytes of a JSON file: mutated documents, damaged encodings and raw garbage."""
    text = json.dumps(valid).encode()
    mutated = mutated_document(valid).map(lambda d: json.dumps(d).encode())
    return st.one_of(
        mutated,
        mutated,
        st.binary(max_size=512),
        st.integers(0, len(text)).map(lambda n: text[:n]),  # truncated
        st.tuples(st.integers(0, len(text)), st.sampled_from(HOSTILE_TOKENS)).map(
            lambda t: text[: t[0]] + t[1] + text[t[0] :]
        ),
        st.integers(65, 5_000).map(deep),
        st.integers(65, 5_000).map(lambda d: deep(d, '{"a":', "}")),
        st.sampled_from(HOSTILE_TOKENS),
    )
