"""SCSC reroute time, split into its parts, and the control traffic the SCSC costs.

On the emulated Figure 2 with the SCSC, pod2 calls /B over HTTP every 20 ms (routing alone sends
it to /B/4 via sg2 > sr2 > sg4). Each repetition degrades the path to the instance in use with
real queueing delay: its last link is shaped to 4 Mbit/s with a 40-packet queue (HTB) and
loaded with 4.6 Mbit/s of UDP from pod2 to that instance's own address (a flow no policy
steers), about 100 ms one way. The next repetition degrades the other instance, so every
repetition is one move (/B/4 -> /B/1 -> /B/4 ...). Parts, from the SCSC's own records:

    degradation (load starts) -> first telemetry over the threshold (as measured by sg2)
      -> SCSC decision (record time) -> last policy installed (from the nodes' tables)
      -> first request answered by the new instance

The loss threshold is off and relative moves are disabled (hysteresis floor 1 s): this measures
the delay trigger (the full queue also drops; and a building queue can make the other instance
better by the margin before it crosses 50 ms, which is a different, relative, move).
Control traffic: bytes and packets per second on every node's management interface (OpenFlow
to and from the SCSC) and the SGs' probe packets, over a quiet 10 s.

    sudo .venv/bin/python benchmarks/bench_reroute.py [--repetitions 10] [--quick] [--json F]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dmsc.controllers.decision import policy_cookie  # noqa: E402
from dmsc.lifecycle import sigterm_unwinds  # noqa: E402
from dmsc.names import name_address  # noqa: E402
from dmsc.nodes.emulation import (  # noqa: E402
    MGMT_INTERFACE,
    SCSC_HOST,
    EmulatedNetwork,
    ScscOptions,
)
from dmsc.topologies import figure2  # noqa: E402

PAIR = ("sg2", "/B")
#: where to degrade each instance's path: the node before its SG, and the pod holding it
DEGRADE = {"/B/4": ("sr2", "sg4", "pod4"), "/B/1": ("sr1", "sg1", "pod1")}
POD_OF = {"/B/4": "pod4", "/B/1": "pod1"}
PROBE_FRAME_BYTES = 14 + 40 + 8 + 44  # Ethernet + IPv6 + UDP + STAMP test packet
MAX_DELAY_MS = 50.0
PARTS = (
    "degrade_to_probe",
    "probe_to_decision",
    "decision_to_installed",
    "installed_to_request",
    "total",
)


def json_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def shape(network: EmulatedNetwork, node: str, neighbor: str, on: bool) -> None:
    interface = network.interface_toward(node, neighbor)
    host = network.hosts[node]
    if not on:
        host.cmd("tc", "qdisc", "del", "dev", interface, "root")
        return
    for command in (
        ["tc", "qdisc", "replace", "dev", interface, "root", "handle", "1:", "htb", "default", "1"],
        [
            "tc",
            "class",
            "replace",
            "dev",
            interface,
            "parent",
            "1:",
            "classid",
            "1:1",
            "htb",
            "rate",
            "4mbit",
            "ceil",
            "4mbit",
        ],
        [
            "tc",
            "qdisc",
            "replace",
            "dev",
            interface,
            "parent",
            "1:1",
            "handle",
            "10:",
            "pfifo",
            "limit",
            "40",
        ],
    ):
        result = subprocess.run(
            ["mnexec", "-a", str(host.pid), *command], capture_output=True, text=True
        )
        if result.returncode:
            raise RuntimeError(f"{' '.join(command)}: {result.stderr}")


def current_choice(network: EmulatedNetwork) -> dict | None:
    for row in network.ask(SCSC_HOST, "choices"):
        if (row["source"], row["service"]) == PAIR:
            return row
    return None


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
    return value


def installed_at(network: EmulatedNetwork, path: list[str]) -> float | None:
    """When the last policy of the pair on ``path`` was installed (from the tables' ages)."""
    cookie = f"{policy_cookie(*PAIR):#018x}"
    times = []
    for node in path[:-1]:
        asked = time.time()
        rows = [r for r in network.ask(node, "policies") if r["cookie"] == cookie]
        if not rows:
            return None  # this node has not been told yet
        times += [asked - r["age_s"] for r in rows]
    return max(times)


def one_move(network: EmulatedNetwork, instance: str, run_dir: Path) -> dict:
    node, sg, pod = DEGRADE[instance]
    address = str(name_address(instance))
    shape(network, node, sg, True)
    server = network.hosts[pod].popen(
        ["iperf3", "-s", "-1", "-B", address], stdout=subprocess.DEVNULL
    )
    wait_for(lambda: network.listening(pod, 5201), 10, "iperf3 server")
    degraded = time.time()
    client = network.hosts["pod2"].popen(
        ["iperf3", "-6", "-c", address, "-u", "-b", "4.6M", "-t", "40"],
        stdout=subprocess.DEVNULL,
    )
    try:
        choice = wait_for(
            lambda: (c := current_choice(network)) and c["instance"] != instance and c,
            40,
            f"the SCSC to leave {instance}",
        )
        installed = wait_for(lambda: installed_at(network, choice["path"]), 10,
                             "the policies on every node of the path")  # fmt: skip
    finally:
        client.terminate()
        server.terminate()
        client.wait(5)
        server.wait(5)
        shape(network, node, sg, False)
    over = [
        s["time"]
        for s in json_lines(run_dir / "scsc-telemetry.jsonl")
        if s["sg"] == PAIR[0]
        and s["target"] == instance
        and s["time"] >= degraded
        and s["delay_ms"] is not None
        and s["delay_ms"] >= MAX_DELAY_MS
    ]
    decisions = [
        d
        for d in json_lines(run_dir / "scsc-decisions.jsonl")
        if (d["source"], d["service"]) == PAIR and d["time"] >= degraded
    ]
    return {
        "from": instance,
        "to": choice["instance"],
        "path": ">".join(choice["path"]),
        "trigger": decisions[0]["trigger"] if decisions else "",
        "degraded": degraded,
        "probe": min(over) if over else None,
        "decision": decisions[0]["time"] if decisions else None,
        "installed": installed,
        "new_pod": POD_OF[choice["instance"]],
    }


def first_request(records: list[dict], pod: str, after: float) -> float | None:
    return next(
        (r["time"] for r in records if r["ok"] and r["served_by"] == pod and r["time"] >= after),
        None,
    )


def parts_of(move: dict, records: list[dict]) -> dict:
    request = first_request(records, move["new_pod"], move["decision"] or move["degraded"])
    points = [move["degraded"], move["probe"], move["decision"], move["installed"], request]
    if any(p is None for p in points):
        return {part: None for part in PARTS}
    spans = [b - a for a, b in itertools.pairwise(points)]
    return dict(zip(PARTS, [*spans, request - move["degraded"]], strict=True))


def counters_of(network: EmulatedNetwork, node: str) -> dict:
    base = f"/sys/class/net/{MGMT_INTERFACE}/statistics"
    values = (
        network.hosts[node]
        .cmd(
            "cat",
            f"{base}/rx_bytes",
            f"{base}/tx_bytes",
            f"{base}/rx_packets",
            f"{base}/tx_packets",
        )
        .split()
    )
    result = dict(
        zip(("rx_bytes", "tx_bytes", "rx_packets", "tx_packets"), map(int, values), strict=True)
    )
    if node in network.spec.gateways:
        probing = network.ask(node, "telemetry")["counters"]
        result["probes"] = probing["sent"] + probing["replies"]
    return result


def control_traffic(network: EmulatedNetwork, seconds: float) -> dict[str, dict]:
    nodes = (*network.spec.gateways, *network.spec.routers)
    before = {n: counters_of(network, n) for n in nodes}
    started = time.time()
    time.sleep(seconds)
    elapsed = time.time() - started
    after = {n: counters_of(network, n) for n in nodes}
    traffic = {}
    for node in nodes:
        delta = {k: after[node][k] - before[node][k] for k in after[node]}
        traffic[node] = {
            "openflow_bytes_s": (delta["rx_bytes"] + delta["tx_bytes"]) / elapsed,
            "openflow_packets_s": (delta["rx_packets"] + delta["tx_packets"]) / elapsed,
            "probe_packets_s": delta.get("probes", 0) / elapsed,
            "probe_bytes_s": delta.get("probes", 0) * PROBE_FRAME_BYTES / elapsed,
        }
    return traffic


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(moves: list[dict], traffic: dict, options: ScscOptions) -> None:
    print(
        f"\nSCSC reroute on Figure 2 (probe every {options.probe_interval_ms} ms, window "
        f"{options.probe_window}, telemetry every {options.telemetry_interval_ms} ms, decision "
        f"round every {options.decision_interval_s * 1000:.0f} ms), {len(moves)} moves"
    )
    print(f"  {'move':<14}{'path':<18}" + "".join(f"{p:>23}" for p in PARTS))
    for move in moves:
        cells = "".join(
            f"{'-' if move[p] is None else format(move[p] * 1000, '.0f') + ' ms':>23}"
            for p in PARTS
        )
        print(f"  {move['from'] + '->' + move['to']:<14}{move['path']:<18}{cells}")
    print(f"  {'median':<32}" + "".join(_stat(moves, p, statistics.median) for p in PARTS))
    print(f"  {'p95':<32}" + "".join(_stat(moves, p, lambda v: percentile(v, 0.95)) for p in PARTS))
    print("\nControl traffic per node, quiet network (OpenFlow on mgmt0; STAMP probes)")
    print(
        f"  {'node':<6}{'OpenFlow B/s':>14}{'OpenFlow pkt/s':>16}{'probe B/s':>12}"
        f"{'probe pkt/s':>13}"
    )
    for node, row in traffic.items():
        print(
            f"  {node:<6}{row['openflow_bytes_s']:>14.0f}{row['openflow_packets_s']:>16.1f}"
            f"{row['probe_bytes_s']:>12.0f}{row['probe_packets_s']:>13.1f}"
        )


def _stat(moves: list[dict], part: str, function) -> str:
    values = [m[part] for m in moves if m[part] is not None]
    return f"{function(values) * 1000:>20.0f} ms" if values else f"{'-':>23}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="2 moves, 3 s of traffic count")
    parser.add_argument("--probe-interval-ms", type=int, default=100)
    parser.add_argument(
        "--hold-down-s",
        type=float,
        default=3.0,
        help="the SCSC's hold-down (3 s keeps repetitions short)",
    )
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args(argv)
    repetitions = 2 if args.quick else args.repetitions
    options = ScscOptions(
        thresholds={"default": {"max_loss": None}},
        # no relative moves (a floor of 1 s): every move is a threshold crossing, not the other
        # instance becoming better by the margin while the queue builds (a different move)
        scheduler={"hold_down_s": args.hold_down_s, "hysteresis_floor_ms": 1000.0},
        probe_interval_ms=args.probe_interval_ms,
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmulatedNetwork(figure2.spec(), scsc=options, run_dir=Path(tmp) / "run") as network,
    ):
        network.wait_converged(timeout=30)
        wait_for(lambda: not network.ask(SCSC_HOST, "status")["settling"], 60,
                 "the SCSC to start deciding")  # fmt: skip
        traffic = control_traffic(network, 3 if args.quick else 10)
        out = Path(tmp) / "requests.json"
        duration = repetitions * (25 + args.hold_down_s) + 30
        workload = network.hosts["pod2"].popen(
            [
                sys.executable,
                "-m",
                "dmsc.nodes.workload",
                "/B",
                "--interval",
                "0.02",
                "--duration",
                str(duration),
                "--timeout",
                "0.5",
                "--out",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
        )
        moves = []
        try:
            time.sleep(1.0)
            instance = "/B/4"
            for index in range(repetitions):
                move = one_move(network, instance, network.run_dir)
                moves.append(move)
                print(
                    f"move {index + 1}/{repetitions}: {move['from']} -> {move['to']} "
                    f"({move['trigger']})",
                    flush=True,
                )
                instance = move["to"]
                time.sleep(args.hold_down_s + 1.5)  # the next move is allowed
        finally:
            workload.terminate()
            workload.wait(10)
        records = json.loads(out.read_text()) if out.exists() else []
    if not records:
        raise SystemExit("the workload wrote no requests (terminated before its end?)")
    rows = [{**move, **parts_of(move, records)} for move in moves]
    report(rows, traffic, options)
    if args.json:
        args.json.write_text(json.dumps({"moves": rows, "traffic": traffic}, indent=2))
    return 0


if __name__ == "__main__":
    with sigterm_unwinds():  # teardown also when killed
        sys.exit(main())
