"""``dmsc clean``: remove node programs, namespaces and links left by crashed emulations."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "clean",
        help="remove what crashed emulations left behind (only this project's)",
        description="Like `mn -c`, but only for DMSC runs whose process is gone: their node "
        "programs, Mininet host shells (and so their namespaces), links and run folders under "
        "/run/dmsc. Running emulations are left alone.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dmsc.nodes.cleanup import clean_run, stale_runs

    runs = stale_runs()
    if not runs:
        print("nothing to clean")
    for folder in runs:
        for line in clean_run(folder):
            print(line)
    return 0
