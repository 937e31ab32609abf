"""The experiment runner's own cost: one network per repetition against one kept network.

Runs one short SCSC experiment (Figure 2; sr2-sg4 throttled to 20 kbit/s toward sg4 with HTB,
so it needs no netem) twice with ``dmsc run``, in the same run of this script: once with a
fresh network per repetition (``reuse_network: false``, the default) and once with one network
reset between repetitions (``reuse_network: true``). From each run's ``metadata.json`` and
``requests.csv``:

    to first request   ``dmsc run`` started -> the first repetition's first request sent
    between            one repetition's end -> the next one's first request (mean): teardown
                       and start of a network, or the reset of the kept one
    reset              the reset alone (reuse only: restore, convergence, a probe window,
                       the SCSC's reset, the check)
    teardown           the last repetition's end -> ``dmsc run`` exited (report included)

and the ratio kept/fresh of "between". Both runs must move the calls in every repetition
(from /B/4 to /B/1): a reset that left a policy behind would show as a repetition without a
move, and the script then exits 1.

    sudo .venv/bin/python benchmarks/bench_runner.py [--repetitions 3] [--json FILE]
    sudo .venv/bin/dmsc vm run -- python benchmarks/bench_runner.py     # in the VM (TCG)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EXPERIMENT = """\
name: runner-{mode}
description: sr2-sg4 throttled toward sg4; the SCSC moves pod2's calls from /B/4 to /B/1.
topology: figure2
workload:
  - {{client: pod2, service: /B, rate_hz: 20, protocol: http, timeout_s: 1.0}}
scsc:
  thresholds: {{default: {{max_delay_ms: 50}}}}
duration_s: {duration}
repetitions: {repetitions}
seed: 1
reuse_network: {reuse}
timeline:
  - {{at: 4, action: impair, link: [sr2, sg4], rate_mbit: 0.02, direction: forward}}
  - {{at: {clear}, action: clear, link: [sr2, sg4]}}
"""
MODES = {"fresh": "false", "kept": "true"}


def run_once(folder: Path, mode: str, repetitions: int, duration: float) -> dict:
    path = folder / f"{mode}.yaml"
    text = EXPERIMENT.format(mode=mode, duration=duration, clear=duration - 4,
                             repetitions=repetitions, reuse=MODES[mode])  # fmt: skip
    path.write_text(text)
    results = folder / mode
    command = [sys.executable, "-m", "dmsc", "run", "--quiet", str(path), "--results", str(results)]
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    ended = time.time()
    if done.returncode != 0:
        raise RuntimeError(f"dmsc run ({mode}) failed:\n{done.stdout}\n{done.stderr}")
    (run,) = results.iterdir()
    return measure(run, started, ended)


def measure(run: Path, started: float, ended: float) -> dict:
    meta = json.loads((run / "metadata.json").read_text())
    requests = pd.read_csv(run / "requests.csv")
    decisions = pd.read_csv(run / "decisions.csv")
    repetitions = meta["repetitions"]
    first_sent = [
        r["t0"] + requests[requests["repetition"] == r["repetition"]]["sent_s"].min()
        for r in repetitions
    ]
    ends = [r["wall_end"] for r in repetitions[:-1]]
    between = [start - end for end, start in zip(ends, first_sent[1:], strict=True)]
    moved = []
    for record in repetitions:
        mine = decisions[decisions["repetition"] == record["repetition"]]
        moved.append(
            bool(((mine["old_instance"] == "/B/4") & (mine["new_instance"] == "/B/1")).any())
        )
    resets = [r["reset_s"] for r in repetitions if r.get("reset_s") is not None]
    return {
        "to_first_request_s": first_sent[0] - started,
        "between_s": between,
        "between_mean_s": statistics.mean(between) if between else None,
        "reset_s": resets,
        "teardown_s": ended - repetitions[-1]["wall_end"],
        "moved": moved,
    }


def report(figures: dict) -> str:
    lines = [f"{'':16}{'fresh':>10}{'kept':>10}"]
    rows = (("to first request", "to_first_request_s"), ("between (mean)", "between_mean_s"),
            ("teardown", "teardown_s"))  # fmt: skip
    for label, key in rows:
        cells = "".join(f"{figures[m][key]:>9.1f}s" for m in MODES)
        lines.append(f"{label:16}{cells}")
    kept, fresh = figures["kept"]["between_mean_s"], figures["fresh"]["between_mean_s"]
    resets = ", ".join(f"{r:.1f}" for r in figures["kept"]["reset_s"])
    lines.append(f"reset alone (kept): {resets} s")
    lines.append(f"between repetitions, kept/fresh: x{kept / fresh:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=3, help="per mode (>= 2; default 3)")
    parser.add_argument("--duration", type=float, default=12.0, help="s per repetition (>= 9)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.repetitions < 2 or args.duration < 9:
        parser.error("--repetitions must be >= 2 and --duration >= 9")
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as folder:
        figures = {m: run_once(Path(folder), m, args.repetitions, args.duration) for m in MODES}
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    unmoved = {m: f["moved"] for m, f in figures.items() if not all(f["moved"])}
    if unmoved:
        print(f"not every repetition moved the calls: {unmoved}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
