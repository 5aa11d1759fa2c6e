"""``python -m tara_core``: the command-line front end (thin: parse, call the library, print).

One module per group of subcommands (``merging``, ``evaluation``, ``diagnosis``, ``zoos``); the library is
imported inside the handlers. Every error a user can cause (bad adapters, unknown methods or parameters,
existing output folders) is reported as one line on stderr with exit status 2; progress goes to stderr,
results to stdout.
"""
from __future__ import annotations

import argparse

from rich.text import Text

from . import diagnosis, evaluation, merging, zoos
from .common import UsageError, console

__all__ = ["main", "build_parser", "UsageError"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="tara-studio", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tara-studio {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (merging, evaluation, diagnosis, zoos):
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as exc:  # every library error type derives from ValueError
        console.print(Text.assemble(("error:", "red"), f" {exc}"))
        return 2
