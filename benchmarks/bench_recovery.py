"""Data-plane recovery after a link failure, on the emulated network with the default timers.

A pod sends a numbered UDP echo every 2 ms to an instance across the network; a link on the
path is taken down (both ends, as a cable pull); the outage is the time from the first echo lost
to the first one answered again — everything a user of the service sees: carrier detection,
LSA origination and flooding, SPF throttle, FIB and forwarder-table swap. Repeated, then the link
is restored and convergence awaited; the next failure comes when the network has been quiet
for twice the SPF throttle's longest hold, so each one is measured as a first failure (a
failure amid churn waits for the throttle's back-off: see docs/routing.md).

    sudo .venv/bin/python benchmarks/bench_recovery.py [--repetitions 10] [--quick] [--json F]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import networkx as nx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dmsc.lifecycle import sigterm_unwinds  # noqa: E402
from dmsc.nodes.emulation import EmulatedNetwork  # noqa: E402
from dmsc.nodes.udpprobe import outages  # noqa: E402
from dmsc.topologies import figure2  # noqa: E402
from dmsc.topologies.builders import topohub  # noqa: E402

GEANT = "topozoo/Geant2012"  # from TopoHub (pinned in setup.py)
INTERVAL = 0.002
LEAD_IN = 1.5  # seconds of probing before the cut, so the stream is steady
TAIL = 3.5  # seconds of probing after it


def path_links(network: EmulatedNetwork, source_sg: str, target_sg: str) -> list[tuple[str, str]]:
    """Links of the current shortest path whose loss keeps the network connected."""
    graph = network.working_graph()
    path = nx.shortest_path(graph, source_sg, target_sg, weight="cost")
    usable = []
    for a, b in itertools.pairwise(path):
        trial = graph.copy()
        trial.remove_edge(a, b)
        if nx.is_connected(trial):
            usable.append((a, b))
    return usable


def one_failure(network, client: str, target: str, link, folder: Path) -> float | None:
    out = folder / f"probe-{time.monotonic_ns()}.json"
    prober = network.hosts[client].popen(
        [
            sys.executable,
            "-m",
            "dmsc.nodes.udpprobe",
            target,
            "--interval",
            str(INTERVAL),
            "--duration",
            str(LEAD_IN + TAIL),
            "--out",
            str(out),
        ]
    )
    try:
        time.sleep(LEAD_IN)  # the fault's place in the timeline, not a synchronisation
        cut = time.time()
        network.set_link(*link, False)
        prober.wait(LEAD_IN + TAIL + 10)
    finally:
        if prober.poll() is None:
            prober.kill()
        network.set_link(*link, True)
    runs = outages(json.loads(out.read_text()), after=cut - 4 * INTERVAL)
    network.wait_converged(timeout=30)
    return max((duration for _, duration in runs), default=0.0) if runs else 0.0


def scenario(spec, client, target, source_sg, target_sg, repetitions, folder) -> list[dict]:
    rows = []
    with EmulatedNetwork(spec) as network:
        network.wait_converged(timeout=120)
        quiet = 2 * network.timers.spf_max_hold + 1
        for repetition in range(repetitions):
            # each failure meets a quiet network: the SPF throttle has reset its back-off
            time.sleep(quiet)
            links = path_links(network, source_sg, target_sg)
            link = links[repetition % len(links)]
            outage = one_failure(network, client, target, link, folder)
            rows.append(
                {
                    "topology": spec.name,
                    "repetition": repetition,
                    "link": f"{link[0]}-{link[1]}",
                    "outage_s": round(outage, 4),
                }
            )
            print(
                f"  {spec.name:<10} #{repetition:<2} cut {link[0]}-{link[1]:<10} "
                f"outage {outage * 1000:8.1f} ms",
                flush=True,
            )
    return rows


def summarise(rows: list[dict]) -> None:
    by_topology: dict[str, list[float]] = {}
    for row in rows:
        by_topology.setdefault(row["topology"], []).append(row["outage_s"])
    for topology, values in by_topology.items():
        values = sorted(values)
        print(
            f"  {topology}: median {statistics.median(values) * 1000:.0f} ms, "
            f"max {values[-1] * 1000:.0f} ms over {len(values)} link failures"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 repetitions, Figure 2 only")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    repetitions = 3 if args.quick else args.repetitions
    print(f"DMSC data-plane recovery after a link failure (UDP echo every {INTERVAL * 1e3:.0f} ms)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows += scenario(figure2.spec(), "pod2", "/B/4", "sg2", "sg4", repetitions, folder)
        if not args.quick:
            spec = topohub(GEANT)
            first, second = spec.pods[0], spec.pods[1]
            rows += scenario(
                spec,
                first.name,
                second.instances[0],
                first.gateway,
                second.gateway,
                repetitions,
                folder,
            )
    summarise(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    with sigterm_unwinds():  # teardown also when killed
        sys.exit(main())
