"""The `harness` command: a thin layer over the library.

Each package that owns commands exposes ``register(subparsers)``; every command handler takes the
parsed namespace and returns an exit status. A `HarnessError` (bad spec, missing file, bad flag)
becomes one line on stderr and exit status 2, with nothing written.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from harness.errors import HarnessError

# Packages that contribute subcommands, in the order `--help` lists them.
COMMAND_MODULES = [
    "harness.launch.cli",     # run, status, cancel
    "harness.evaluate.cli",   # eval
    "harness.data.cli",       # data prepare
    "harness.train.cli",      # bench
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 already; keep one clear line
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HarnessError as exc:
        print(f"harness {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
