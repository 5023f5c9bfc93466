"""Command-line help the workloads share: exit codes in every --help, whole descriptions,
and a subcommand's usage beside an error found after parsing (argparse gives it only for
the errors it finds itself).

    parser = build_parser()
    finish_help(parser, EXIT_CODES)            # after every subcommand is added
    ...
    print_usage(parser, args.command)          # then the "prog: message" line, exit 2
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO


def _subcommands(parser: argparse.ArgumentParser) -> list[argparse._SubParsersAction]:
    # argparse keeps its subparsers only on this private action; there is no public list.
    return [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]


def finish_help(parser: argparse.ArgumentParser, epilog: str) -> None:
    """``epilog`` (the exit codes) under the help of ``parser`` and of every subcommand, its
    line breaks kept; a subcommand without a description gets its one-line help as one,
    so `prog sub --help` says what it does."""
    parser.epilog = epilog
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for action in _subcommands(parser):
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, sub in action.choices.items():
            if sub.description is None and helps.get(name):
                sub.description = helps[name]
            finish_help(sub, epilog)


def subcommand(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser:
    """The parser of subcommand ``name`` (``parser`` itself when there is none)."""
    for action in _subcommands(parser):
        if name in action.choices:
            return action.choices[name]
    return parser


def print_usage(
    parser: argparse.ArgumentParser, command: str | None, stream: TextIO | None = None
) -> None:
    """The subcommand's usage, as argparse prints it before its own errors."""
    subcommand(parser, command).print_usage(stream if stream is not None else sys.stderr)
