"""Tiers: order, selection, and the 10pct derivation."""

from __future__ import annotations

import pytest

from preflight.spec import tiers


def test_tiers_are_ordered_from_cheap_to_expensive() -> None:
    assert tiers.TIER_NAMES == ("small", "10pct", "production")
    assert [t.slow for t in tiers.TIERS] == [False, True, True]


@pytest.mark.parametrize(
    ("scale", "expected"),
    [("small", ("small",)), ("10pct", ("small", "10pct")),
     ("production", ("small", "10pct", "production"))],
)
def test_selected_tiers_are_the_scale_and_everything_cheaper(scale: str, expected: tuple) -> None:
    assert tiers.selected_tiers(scale) == expected


def test_unknown_tier_names_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown tier 'huge'.*small, 10pct, production"):
        tiers.selected_tiers("huge")


@pytest.mark.parametrize(
    ("production", "derived"),
    [(30000, 3000), (25, 3), (24, 2), (15, 2), (5, 1), (4, 1), (1, 1), (0, 1)],
)
def test_10pct_is_a_tenth_rounded_half_up_and_at_least_one(production: int, derived: int) -> None:
    assert tiers.derive_size(production) == derived


def test_derive_10pct_maps_every_size() -> None:
    assert tiers.derive_10pct({"samples": 30000, "workers": 8}) == {"samples": 3000, "workers": 1}
