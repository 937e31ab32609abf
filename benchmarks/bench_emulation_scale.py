"""How large an emulated DMSC network this machine runs, and what each node program costs.

For each topology, in one run: start the emulated network (SPAs, SGs, SRs, pods on Mininet),
time start-up and convergence (every FIB equal to an independent SPF), read the resident memory
of every node program, then tear down. ``--compare`` also runs each topology's control plane
alone (no forwarders), so the forwarder's share shows as a ratio.

    sudo .venv/bin/python benchmarks/bench_emulation_scale.py [--quick] [--json FILE]
        [--topology NAME|topohub:KEY|PATH ...] [--control-plane | --compare]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dmsc.errors import DmscError  # noqa: E402
from dmsc.lifecycle import sigterm_unwinds  # noqa: E402
from dmsc.nodes.emulation import EmulatedNetwork  # noqa: E402
from dmsc.topologies.builders import build_topology  # noqa: E402
from dmsc.topologies.zoo import is_topohub  # noqa: E402

QUICK = ["figure2", "ring:routers=12"]
FULL = [
    "figure2",
    "ring:routers=24",
    "fattree:k=4",
    "topohub:topozoo/Geant2012",
    "topohub:topozoo/Garr201201",
    "ring:routers=100",
    "fattree:k=6",
]


def parse_topology(text: str):
    """``name`` or ``name:key=value,...``, ``topohub:<key>`` or a GraphML path."""
    if is_topohub(text) or text.endswith(".graphml"):
        return build_topology(text)
    name, _, options = text.partition(":")
    parameters = {}
    for item in filter(None, options.split(",")):
        key, _, value = item.partition("=")
        parameters[key] = int(value)
    return build_topology(name, **parameters)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory_by_role(network: EmulatedNetwork) -> dict[str, list[int]]:
    by_role: dict[str, list[int]] = {}
    for program in network.programs.values():
        role = program.role
        if role == "router":
            role = "sg" if program.host in network.spec.gateways else "sr"
        by_role.setdefault(role, []).append(rss_kib(program.process.pid))
    return by_role


def measure(spec, forward: bool, timeout: float) -> dict:
    started = time.monotonic()
    network = EmulatedNetwork(spec, forward=forward)
    try:
        network.start()
        up = time.monotonic() - started
        converged = network.wait_converged(timeout=timeout)
        memory = memory_by_role(network)
    finally:
        stop_started = time.monotonic()
        network.stop()
    return {
        "topology": spec.name,
        "forward": forward,
        "routers": len(spec.gateways) + len(spec.routers),
        "pods": len(spec.pods),
        "programs": sum(len(v) for v in memory.values()),
        "start_s": round(up, 2),
        "converge_s": round(converged, 2),
        "stop_s": round(time.monotonic() - stop_started, 2),
        "rss_mib_median": {r: round(statistics.median(v) / 1024, 1) for r, v in memory.items()},
        "rss_mib_total": round(sum(sum(v) for v in memory.values()) / 1024, 1),
    }


def print_row(row: dict) -> None:
    memory = ", ".join(f"{role} {mib}" for role, mib in sorted(row["rss_mib_median"].items()))
    print(
        f"  {row['topology']:<12} fwd={'on ' if row['forward'] else 'off'} "
        f"{row['routers']:>4} routers {row['pods']:>3} pods {row['programs']:>4} programs  "
        f"start {row['start_s']:>6.1f} s  converge {row['converge_s']:>5.2f} s  "
        f"stop {row['stop_s']:>5.1f} s  RSS median MiB: {memory}  total {row['rss_mib_total']} MiB"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--topology", action="append", help="name[:k=v,...], topohub:<key> or a GraphML path"
    )
    parser.add_argument(
        "--control-plane",
        action="store_true",
        help="run without Python forwarders (control plane only)",
    )
    parser.add_argument(
        "--compare", action="store_true", help="run each topology with and without forwarders"
    )
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = []
    print("DMSC emulation scale (start-up, convergence, memory per node program)")
    for text in args.topology or (QUICK if args.quick else FULL):
        for forward in (True, False) if args.compare else (not args.control_plane,):
            try:
                row = measure(parse_topology(text), forward, args.timeout)
            except DmscError as error:
                print(f"  {text}: FAILED: {str(error).splitlines()[0]}")
                rows.append({"topology": text, "forward": forward, "error": str(error)})
                continue
            print_row(row)
            rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    with sigterm_unwinds():  # teardown also when killed
        sys.exit(main())
