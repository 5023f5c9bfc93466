"""Every command's --help ends with its exit codes and says what the command does; an error
found after parsing shows the subcommand's usage above the message, as argparse's own do."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
from preflight_examples.telemetry.clihelp import subcommand

# preflight check and gate parse their own arguments (src/preflight/check/command.py,
# src/preflight/gate/cli.py).
DELEGATED_ELSEWHERE = {"preflight check", "preflight gate"}


def parsers() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    from preflight_examples.datagen.cli import build_parser as datagen_parser
    from preflight_examples.trainer.cli import build_parser as trainer_parser

    from preflight.cli import build_parser as preflight_parser
    from preflight.soak import command as soak

    soak_parser = soak.build_parser(argparse.ArgumentParser(prog="preflight soak"))
    for top in (datagen_parser(), trainer_parser(), preflight_parser(), soak_parser):
        yield top.prog, top
        for action in top._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    if sub.prog not in DELEGATED_ELSEWHERE and sub.prog != "preflight soak":
                        yield sub.prog, sub


def test_every_help_ends_with_the_exit_codes_and_a_description() -> None:
    seen = []
    for prog, parser in parsers():
        text = parser.format_help()
        assert "exit codes" in text and "2 bad input" in " ".join(text.split()), prog
        assert parser.description, f"{prog}: no description"
        assert not parser.description.rstrip().endswith("|"), f"{prog}: cut description"
        seen.append(prog)
    assert {"datagen generate", "trainer fit", "trainer serve", "preflight report"} <= set(seen)


def test_tiers_are_choices() -> None:
    from preflight.soak import command as soak

    parser = soak.build_parser(argparse.ArgumentParser(prog="preflight soak"))
    assert "{small,10pct,production}" in parser.format_help()


def test_bad_input_found_after_parsing_shows_the_subcommand_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from preflight_examples.datagen.cli import main as datagen_main
    from preflight_examples.trainer.cli import main as trainer_main

    from preflight.cli import main as preflight_main

    cases = [
        (datagen_main, ["generate", "--out", str(tmp_path / "d"), "--samples", "0"],
         "usage: datagen generate", "datagen: --samples"),
        (trainer_main, ["fit", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r"),
                        "--steps", "3"], "usage: trainer fit", "trainer: --data"),
        (preflight_main, ["soak", "no-such-workload", "--duration", "1s"],
         "usage: preflight soak", "preflight soak: error: workload 'no-such-workload'"),
    ]
    for main, argv, usage, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(usage), err
        assert err.rstrip().splitlines()[-1].startswith(message), err  # the message stays last
    assert not (tmp_path / "d").exists()  # bad input: nothing written


def test_subcommand_falls_back_to_the_parser_itself() -> None:
    from preflight_examples.datagen.cli import build_parser

    parser = build_parser()
    assert subcommand(parser, "verify").prog == "datagen verify"
    assert subcommand(parser, None) is parser
