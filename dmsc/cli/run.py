"""``dmsc run EXPERIMENT.yaml``: run an experiment file, write its results folder."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

VM_STOP_TIMEOUT_S = 60  # the VM runner kills qemu at once on SIGTERM; this bounds the wait


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
        help="seconds each node program gets to be ready (default 20; 120 in the VM)",
    )
    parser.add_argument(
        "--repetitions", type=int, help="override the file's repetitions (e.g. 1 for a try)"
    )
    parser.add_argument("--variants", help="run only these variants (comma-separated names)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a first figure fast: one repetition per variant (no spread across repetitions, "
        "so not for a paper; the same as --repetitions 1)",
    )
    parser.add_argument(
        "--vm",
        choices=("auto", "never"),
        default="never",
        help="auto: an experiment that needs netem on a host without it runs in the "
        "experiment VM (built or reused first); never (default): refuse it with a message",
    )
    parser.add_argument(
        "--vm-timeout", type=float, default=4 * 3600, help="with --vm auto: seconds for the VM"
    )
    parser.add_argument(
        "--vm-backend",
        choices=("auto", "uml", "qemu"),
        default="auto",
        help="with --vm auto: the VM's backend (dmsc vm run --backend; default: auto)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dmsc.errors import DmscError
    from dmsc.experiments.spec import describe, load_experiment

    if args.quick:
        if args.repetitions not in (None, 1):
            raise DmscError("--quick is one repetition per variant; drop --repetitions")
        args.repetitions = 1
    if args.vm == "auto" and not args.check and needs_vm(args.experiment):
        return run_in_vm(args)
    experiment = narrowed(load_experiment(args.experiment), args.repetitions, args.variants)
    print(describe(experiment))
    if args.check:
        return 0
    from dmsc.experiments.runner import ExperimentRunner
    from dmsc.lifecycle import sigterm_unwinds
    from dmsc.nodes.emulation import require_mininet

    require_mininet()
    # under the VM's software emulation every program starts about 5x slower
    default_ready = 120.0 if os.environ.get("DMSC_IN_VM") else 20.0
    ready = args.ready_timeout or default_ready
    runner = ExperimentRunner(
        experiment, args.results, progress=not args.quiet, ready_timeout_s=ready
    )
    with sigterm_unwinds():
        folder = runner.run()
    print_calibration(folder)
    print(f"results: {folder}")
    return 0


def print_calibration(folder) -> None:
    """The run's noise floor and impairment accuracy (calibration.csv) and what the report
    warns about them; nothing when the report could not be built (the runner said why)."""
    from dmsc.experiments import calibration

    path = folder / "calibration.csv"
    if not path.exists():
        return
    import pandas as pd

    table = pd.read_csv(path)
    print("== noise floor and netem accuracy (calibration.csv) ==")
    print(calibration.format_table(table))
    for note in calibration.notes(table):
        print(f"note: {note}")


def narrowed(experiment, repetitions: int | None, variants: str | None):
    """The experiment with fewer repetitions or variants, as asked on the command line."""
    from dataclasses import replace

    from dmsc.errors import DmscError

    if repetitions is not None:
        if repetitions < 1:
            raise DmscError(f"--repetitions must be at least 1, got {repetitions}")
        fewer = tuple(replace(v, repetitions=repetitions) for v in experiment.variants)
        experiment = replace(experiment, repetitions=repetitions, variants=fewer)
    if variants:
        wanted = [name.strip() for name in variants.split(",") if name.strip()]
        known = {v.name: v for v in experiment.variants}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise DmscError(f"--variants: unknown {unknown}; the file has {sorted(known)}")
        experiment = replace(experiment, variants=tuple(known[name] for name in wanted))
    return experiment


def needs_vm(path: Path) -> bool:
    """The file is valid with netem, and uses it, and this kernel has none."""
    from dmsc.experiments.spec import detect_netem, load_experiment

    experiment = load_experiment(path, netem_available=True)  # every other check applies
    uses_netem = any(
        event.impairment is not None and event.impairment.needs_netem
        for variant in experiment.variants
        for event in variant.timeline
    )
    return uses_netem and not detect_netem()


def run_in_vm(args: argparse.Namespace) -> int:
    """Build (or reuse) the experiment VM and run this same command inside it; the results
    folder is shared, so the run's folder appears under --results as if run here."""
    import subprocess
    import sys

    from dmsc.errors import DmscError
    from dmsc.lifecycle import sigterm_unwinds
    from dmsc.vm import image

    root = image.project_root()
    path = args.experiment.resolve()
    if not path.is_relative_to(root):
        raise DmscError(f"{args.experiment}: with --vm auto the file must be inside {root}")
    print(f"{args.experiment} needs tc netem, which this kernel lacks: running it in the VM")
    args.results.mkdir(parents=True, exist_ok=True)
    print("== the experiment VM: built once (1-5 min), then reused from its cache ==")
    with sigterm_unwinds():  # in this process, so a failed build is one DmscError, not a trace
        image.build(image.default_cache_dir())
    print("== the experiment, in the VM ==", flush=True)
    dmsc = [sys.executable, "-m", "dmsc"]
    inner = ["python3", "-m", "dmsc", "run", str(path.relative_to(root)), "--results",
             "/results"]  # fmt: skip
    inner += ["--repetitions", str(args.repetitions)] if args.repetitions else []
    inner += ["--variants", args.variants] if args.variants else []
    inner += ["--quiet"] if args.quiet else []
    command = [*dmsc, "vm", "run", "--results", str(args.results), "--timeout",
               str(args.vm_timeout), "--backend", args.vm_backend, "--", *inner]  # fmt: skip
    with sigterm_unwinds(), subprocess.Popen(command) as vm:
        try:
            return vm.wait()
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the VM runner stops qemu and reaps it
            vm.terminate()
            vm.wait(VM_STOP_TIMEOUT_S)
            raise
