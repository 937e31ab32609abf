"""The ``dmsc`` command. Each subcommand lives in its own module with a ``register`` function."""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys

from dmsc import __version__
from dmsc.errors import DmscError

#: Modules of ``dmsc.cli`` that add a subcommand, in the order ``dmsc --help`` lists them.
SUBCOMMAND_MODULES = (
    "run",
    "report",
    "demo",
    "cli",
    "names",
    "spa",
    "keys",
    "capture",
    "clean",
    "vm",
    "scsc",
)
MODULE_OF = {"cli": "emulate"}  # `dmsc cli` lives in dmsc/cli/emulate.py


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmsc", description="DMSC testbed: service-prefix routing on Mininet."
    )
    parser.add_argument("--version", action="version", version=f"dmsc {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        module = importlib.import_module(f"dmsc.cli.{MODULE_OF.get(module_name, module_name)}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DmscError as error:
        print(f"dmsc {args.command}: error: {error}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:  # a program the set-up should have installed
        print(f"dmsc {args.command}: error: {missing_file_message(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dmsc {args.command}: interrupted", file=sys.stderr)
        return 130


def missing_file_message(error: FileNotFoundError) -> str:
    """What to tell a user when a program or a file is not there."""
    name = str(error.filename or "")
    if name and "/" not in name and shutil.which(name) is None:
        return f"the program {name!r} is not installed; run ./testbed setup (as root)"
    return f"{name or error}: no such file or directory"


if __name__ == "__main__":
    sys.exit(main())
