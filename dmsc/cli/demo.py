"""``dmsc demo``: Figure 2 simulated through faults; writes CSV tables, a figure and metadata."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="simulate Figure 2 through faults and write a results folder",
        description="Simulate the draft's Figure 2 in memory on a virtual clock through a "
        "timeline of faults, and write CSV tables, a figure and metadata.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("results"),
        help="folder under which the run's results folder is made (default: results)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of link delays and losses")
    parser.add_argument(
        "--emulated",
        action="store_true",
        help="run Figure 2 on Mininet instead (root): real programs, real "
        "traffic from pod2 to /B through a link failure and an SG crash",
    )
    parser.add_argument(
        "--pcap",
        action="store_true",
        help="also record every signalling datagram as signalling.pcapng "
        "(read it with `dmsc capture --read` or Wireshark)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.emulated:
        return run_emulated(args)
    from dmsc import demo, results  # pandas and matplotlib: only for this command
    from dmsc.routing import LinkStateTimers

    timers = LinkStateTimers()
    print(f"simulating Figure 2 for {demo.DURATION:.0f} virtual seconds (seed {args.seed}) ...")
    folder = results.new_results_dir(args.out, "demo")
    pcap = folder / "signalling.pcapng" if args.pcap else None
    outcome = demo.run_demo(args.seed, timers, pcap)
    frames = demo.tables(outcome)
    results.write_tables(frames, folder)
    results.write_figure(demo.plot(frames), folder, "routes")
    config = {
        "scenario": "figure2-demo",
        "seed": args.seed,
        "timers": asdict(timers),
        "timeline": [(s.at, s.kind, s.target) for s in demo.TIMELINE],
    }
    results.write_metadata(results.run_metadata(config, REPO), folder)
    print(frames["events"].to_string(index=False))
    print(f"\nresults: {folder}")
    return 0


def run_emulated(args: argparse.Namespace) -> int:
    from dmsc import emulated_demo, results
    from dmsc.nodes.emulation import require_mininet

    require_mininet()
    folder = results.new_results_dir(args.out, "demo-emulated")
    print(
        f"emulating Figure 2 on Mininet; {emulated_demo.CLIENT} calls "
        f"{emulated_demo.SERVICE} for {emulated_demo.DURATION:.0f} s through faults ..."
    )
    frames = emulated_demo.run_demo()
    results.write_tables(frames, folder)
    results.write_figure(emulated_demo.plot(frames), folder, "requests")
    config = {
        "scenario": "figure2-emulated-demo",
        "client": emulated_demo.CLIENT,
        "service": emulated_demo.SERVICE,
        "interval_s": emulated_demo.REQUEST_INTERVAL,
        "timeline": [(s.at, s.kind, s.target) for s in emulated_demo.TIMELINE],
    }
    results.write_metadata(results.run_metadata(config, REPO), folder)
    print(frames["summary"].to_string(index=False))
    print(f"\nresults: {folder}")
    return 0
