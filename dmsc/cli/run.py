"""``dmsc run EXPERIMENT.yaml``: run an experiment file, write its results folder."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run an experiment file (YAML) and write a results folder (root)",
        description="Validate the experiment file, then run every variant and repetition on "
        "the emulated network: convergence, workload, timeline of events, collection, "
        "teardown. Writes CSV tables, figures, a LaTeX table and metadata.json. An experiment "
        "with netem delay/jitter/loss needs the experiment VM: dmsc vm run EXPERIMENT.yaml.",
    )
    parser.add_argument("experiment", type=Path, help="the experiment file (docs/experiments.md)")
    parser.add_argument(
        "--results",
        type=Path,
        default=Path(os.environ.get("DMSC_RESULTS", "results")),
        help="folder under which the run's folder is made (default: $DMSC_RESULTS or results)",
    )
    parser.add_argument(
        "--check", action="store_true", help="only validate the file and describe it"
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=None,
        help="seconds each node program gets to be ready (default 20; the VM sets 120)",
    )
    parser.add_argument(
        "--repetitions", type=int, help="override the file's repetitions (e.g. 1 for a try)"
    )
    parser.add_argument("--variants", help="run only these variants (comma-separated names)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dmsc.experiments.spec import describe, load_experiment

    experiment = narrowed(load_experiment(args.experiment), args.repetitions, args.variants)
    print(describe(experiment))
    if args.check:
        return 0
    from dmsc.experiments.runner import ExperimentRunner
    from dmsc.nodes.emulation import require_mininet, stop_on_sigterm

    require_mininet()
    stop_on_sigterm()
    ready = args.ready_timeout or float(os.environ.get("DMSC_READY_TIMEOUT", 20))
    runner = ExperimentRunner(
        experiment, args.results, progress=not args.quiet, ready_timeout_s=ready
    )
    folder = runner.run()
    print(f"results: {folder}")
    return 0


def narrowed(experiment, repetitions: int | None, variants: str | None):
    """The experiment with fewer repetitions or variants, as asked on the command line."""
    from dataclasses import replace

    from dmsc.errors import DmscError

    if repetitions is not None:
        if repetitions < 1:
            raise DmscError(f"--repetitions must be at least 1, got {repetitions}")
        experiment = replace(experiment, repetitions=repetitions)
    if variants:
        wanted = [name.strip() for name in variants.split(",") if name.strip()]
        known = {v.name: v for v in experiment.variants}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise DmscError(f"--variants: unknown {unknown}; the file has {sorted(known)}")
        experiment = replace(experiment, variants=tuple(known[name] for name in wanted))
    return experiment
