"""``dmsc report RESULTS...``: rebuild results folders' reports from their CSV, compare runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from dmsc.errors import DmscError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="rebuild a results folder's summary, figures and LaTeX table; compare runs",
        description="Rebuild summary.csv, latency.png/.pdf, reroute.png/.pdf and report.tex of "
        "each results folder from its CSV tables alone (no emulation), print the summary per "
        "variant, and with several folders compare them (comparison.csv). Every folder is "
        "checked before anything is written; nothing is deleted.",
    )
    parser.add_argument(
        "results", nargs="+", type=Path, metavar="RESULTS", help="a results folder of dmsc run"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for comparison.csv when several folders are given (default: the "
        "current directory)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dmsc import results
    from dmsc.experiments import report  # pandas and matplotlib: only for this command

    runs = [report.load_run(folder) for folder in args.results]
    for each in runs:
        paths = report.write_report(each)
        state = "complete" if each.complete else "INCOMPLETE (metadata.json: complete is false)"
        print(f"== {each.folder}: {state}")
        summary = report.build_summary(each)
        for note in (*each.notes, *report.latency_notes(summary)):
            print(f"note: {note}")
        print(report.format_table(report.aggregate(summary)))
        print(f"wrote {', '.join(path.name for path in paths)} in {each.folder}\n")
    if len(runs) > 1:
        out = Path.cwd() if args.out is None else args.out
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DmscError(f"{out}: cannot be used for comparison.csv: {error}") from None
        comparison = report.compare(runs)
        print("== comparison (median (p95) over repetitions)")
        print(report.format_table(comparison))
        print(f"wrote {results.write_tables({'comparison': comparison}, out)[0]}")
    return 0
