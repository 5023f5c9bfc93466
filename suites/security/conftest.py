"""The bad-input fuzz harness shared by every parser module in this suite.

Each test feeds one parser family hypothesis-generated hostile input and sorts every outcome:
a value, the parser's documented error class ("refused"), or anything else ("crash"). The
counts land in the session report as ``security.<parser>.{inputs,refused,parser_crashes}``,
which the readiness report's "Bad inputs tried" table and the gate's
``max_parser_crashes`` requirement read. Every example runs under a wall-clock alarm, so a
parser that hangs fails as a crash instead of hanging the suite.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from preflight.durable import faults
from preflight.spec import tiers

# Examples per parser test by session --scale: seconds at small, much longer at 10pct.
# The smallest valid `datagen generate` sizes, for tests that need a real dataset fast.
TINY_DATAGEN = (
    "--samples",
    "8",
    "--frames",
    "2",
    "--size",
    "4",
    "--channels",
    "1",
    "--shard-size",
    "4",
    "--workers",
    "1",
)
EXAMPLES_BY_SCALE = {t.name: t.fuzz_examples for t in tiers.TIERS}
EXAMPLE_TIMEOUT_S = 5.0


class ParserHang(Exception):
    """One example ran past EXAMPLE_TIMEOUT_S: counted as a crash, never tolerated."""


@dataclass
class Tally:
    parser: str
    inputs: int = 0
    refused: int = 0
    crashes: list[str] = field(default_factory=list)

    def feed(self, call: Callable[[], Any], refusals: tuple[type[BaseException], ...]) -> None:
        """Run one parse under the alarm and classify its outcome; a crash re-raises so
        hypothesis shrinks it to a minimal reproducer."""
        self.inputs += 1
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, EXAMPLE_TIMEOUT_S)
        try:
            call()
        except refusals:
            self.refused += 1
        except Exception as exc:
            self.crashes.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            raise
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _on_alarm(signum: int, frame: object) -> None:
    raise ParserHang(f"one input took longer than {EXAMPLE_TIMEOUT_S} s")


@pytest.fixture
def examples(tier: Any) -> int:
    return EXAMPLES_BY_SCALE.get(tier.scale, EXAMPLES_BY_SCALE["small"])


@pytest.fixture
def fuzz(preflight_record: Any, examples: int) -> Iterator[Callable[..., Tally]]:
    """fuzz(parser, strategy, check, refusals) runs ``check(example)`` over ``examples``
    draws and records the tally; several calls in one test record one row each."""
    tallies: list[Tally] = []

    def run(
        parser: str,
        strategy: st.SearchStrategy[Any],
        check: Callable[[Any], Any],
        refusals: tuple[type[BaseException], ...],
        *,
        max_examples: int | None = None,
    ) -> Tally:
        tally = Tally(parser)
        tallies.append(tally)

        @settings(
            max_examples=max_examples or examples,
            deadline=None,  # the alarm bounds each example; timing noise must not fail CI
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def one(example: Any) -> None:
            tally.feed(lambda: check(example), refusals)

        one()
        return tally

    yield run
    for tally in tallies:
        name = f"security.{tally.parser}"
        preflight_record(f"{name}.inputs", tally.inputs, unit="count")
        preflight_record(f"{name}.refused", tally.refused, unit="count")
        preflight_record(
            f"{name}.parser_crashes",
            len(tally.crashes),
            unit="count",
            threshold=0.0,
            ok=not tally.crashes,
        )


@dataclass(frozen=True)
class Result:
    returncode: int
    stderr: str


@pytest.fixture
def trainer(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    """The trainer CLI in this process (no torch start-up per call), no fault armed."""
    from preflight_examples.trainer.cli import main

    monkeypatch.delenv("PREFLIGHT_FAULTS", raising=False)
    monkeypatch.setattr(faults, "_state", faults._State())  # fresh hit counters

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        return Result(code, capsys.readouterr().err)

    return run
