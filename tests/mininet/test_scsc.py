"""The Scheduling Center on the emulated network: SGs probe, the SCSC decides, policies steer.

Degradations are real: an HTB-shaped link whose capacity is below a service's minimum, and an
HTB-shaped link loaded by a background flow until its queue delays the probes. (Delay and
jitter from netem are tested in the VM: this kernel has no sch_netem.)
"""

from __future__ import annotations

import dataclasses
import re
import signal
import subprocess
import sys
import time
from itertools import pairwise

import pytest

from dmsc.controllers.decision import policy_cookie
from dmsc.names import name_address, node_address
from dmsc.nodes.emulation import OPENFLOW_LISTEN_PORT, SCSC_HOST, ScscOptions
from dmsc.topologies import figure2

CLIENT = [sys.executable, "-m", "dmsc.nodes.client"]
PAIR = ["sg2", "/B"]  # pod2 behind sg2 calls /B; routing alone: /B/4 via sg2 > sr2 > sg4
#: Quick enough for a test, slow enough for two cores: 20 probes/s per target, telemetry 4/s,
#: a 2 s hold-down.
FAST = dict(probe_interval_ms=50, telemetry_interval_ms=250, probe_window=10,
            scheduler={"hold_down_s": 2.0})  # fmt: skip


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.2)


def choice_of(network, pair=PAIR):
    for row in network.ask(SCSC_HOST, "choices"):
        if [row["source"], row["service"]] == pair:
            return row
    return None


def http_answerer(network, client: str, name: str) -> str:
    output = network.hosts[client].cmd(*CLIENT, "http", name)
    assert "answered by" in output, output
    return output.split("answered by ")[1].split()[0]


def traceroute_nodes(network, client: str, name: str) -> list[str]:
    output = network.hosts[client].cmd(
        "traceroute", "-6", "-n", "-q", "1", "-w", "2", str(name_address(name))
    )
    by_address = {str(node_address(n)): n for n in network.spec.router_graph().nodes}
    hops = [line.split()[1] for line in output.splitlines()[1:] if line.strip()]
    return [by_address.get(hop, hop) for hop in hops]


def dump_flows(network, node: str) -> str:
    return network.hosts[node].cmd(
        "ovs-ofctl", "-O", "OpenFlow13", "dump-flows", f"tcp:127.0.0.1:{OPENFLOW_LISTEN_PORT}"
    )


def port_toward(network, node: str, neighbor: str) -> int:
    """The OpenFlow port number of ``node``'s link to ``neighbor`` (forwarder index + 1)."""
    interface = network.interface_toward(node, neighbor)
    return network.router_interfaces[node].index(interface) + 1


def pair_policies(network, node: str) -> list[dict]:
    cookie = f"{policy_cookie(*PAIR):#018x}"
    return [row for row in network.ask(node, "policies") if row["cookie"] == cookie]


def assert_steered_along(network, path: list[str]) -> None:
    """Every node of the path but the last holds the pair's policy, out toward the next."""
    anycast = f"{name_address('/B')}/128"
    for node, next_node in pairwise(path):
        (row,) = pair_policies(network, node)
        assert row["ipv6_dst"] == anycast
        assert row["outputs"] == [port_toward(network, node, next_node)], (node, row)
        flows = dump_flows(network, node)  # an independent OpenFlow implementation reads it
        port_name = network.interface_toward(node, next_node)  # it names ports by their names
        expected = f'ipv6_dst={name_address("/B")} actions=output:"{port_name}"'
        assert expected in flows.replace(",", " "), flows


def htb(network, node: str, neighbor: str, rate: str, queue_packets: int | None = None):
    interface = network.interface_toward(node, neighbor)
    host = network.hosts[node]
    commands = [
        ["tc", "qdisc", "replace", "dev", interface, "root", "handle", "1:", "htb", "default",
         "1"],
        ["tc", "class", "replace", "dev", interface, "parent", "1:", "classid", "1:1", "htb",
         "rate", rate, "ceil", rate],
    ]  # fmt: skip
    if queue_packets:
        commands.append(["tc", "qdisc", "replace", "dev", interface, "parent", "1:1", "handle",
                         "10:", "pfifo", "limit", str(queue_packets)])  # fmt: skip
    for command in commands:
        result = subprocess.run(["mnexec", "-a", str(host.pid), *command], capture_output=True,
                                text=True)  # fmt: skip
        assert result.returncode == 0, f"{command}: {result.stderr}"


# ---------------------------------------------------------------- bandwidth below the minimum


def test_a_link_narrower_than_the_services_minimum_is_avoided(emulate):
    spec = figure2.spec()
    links = tuple(
        dataclasses.replace(link, bandwidth_mbps=2.0)
        if {link.a, link.b} == {"sr2", "sg4"}
        else link
        for link in spec.links
    )  # Mininet's TCLink shapes it with HTB; the nodes are told its capacity
    options = ScscOptions(thresholds={"services": {"/B": {"min_bandwidth_bps": 5_000_000}}},
                          **FAST)  # fmt: skip
    network = emulate(dataclasses.replace(spec, links=links), scsc=options)
    network.wait_converged(timeout=30)

    choice = wait_until(lambda: choice_of(network), 30, "the SCSC to take sg2's /B over")
    path = choice["path"]
    # /B/4 on a path around the link, or /B/1: whichever measures the lower delay just now
    assert ("sr2", "sg4") not in set(pairwise(path)), choice
    records = [r for r in network.ask(SCSC_HOST, "decisions") if r["source"] == "sg2"
               and r["service"] == "/B"]  # fmt: skip
    # available = 2 Mbit/s of capacity - what the node sent over it (probes, hellos)
    trigger = re.fullmatch(r"/B/4 \(routing's choice\): bandwidth ([\d.]+) Mbit/s ≤ 5 Mbit/s",
                           records[0]["trigger"])  # fmt: skip
    assert trigger and 1.5 < float(trigger.group(1)) <= 2.0, records[0]
    assert records[0]["old_path"] == "sg2>sr2>sg4"
    wait_until(lambda: all(pair_policies(network, n) for n in path[:-1]), 10, "the policies")
    assert_steered_along(network, path)
    assert traceroute_nodes(network, "pod2", "/B")[: len(path)] == path
    serving_pod = {"/B/4": "pod4", "/B/1": "pod1"}[choice["instance"]]
    assert http_answerer(network, "pod2", "/B") == serving_pod
    # the agent copies the forwarder's counters in every 0.25 s
    wait_until(lambda: sum(row["packets"] for row in pair_policies(network, path[-2])) > 0, 3,
               f"packets counted by {path[-2]}'s policy")  # fmt: skip
    # only the pair's own traffic is steered: pod2 asking for /B/4 by name takes routing's path
    assert traceroute_nodes(network, "pod2", "/B/4")[:3] == ["sg2", "sr2", "sg4"]


# ---------------------------------------------------------------- queueing delay, fail-static


@pytest.fixture
def loaded_network(emulate):
    # TCP keeps the queue standing and drops a probe only now and then; loss is off all the
    # same so that this test is about the delay threshold alone.
    options = ScscOptions(
        thresholds={"default": {"max_loss": None}}, **{**FAST, "probe_window": 20}
    )
    network = emulate(figure2.spec(), scsc=options)
    network.wait_converged(timeout=30)
    wait_until(lambda: network.ask("sg2", "telemetry")["targets"].get("/B/4", {}).get("delay_ms"),
               20, "sg2's first measurement of /B/4")  # fmt: skip
    return network


def load_link(network, seconds: int) -> tuple[subprocess.Popen, subprocess.Popen]:
    """sr2 -> sg4 shaped to 4 Mbit/s with a 40-packet queue, filled by one TCP flow from pod2
    to /B/4 (an instance address: no policy steers it). TCP keeps the queue nearly full
    (bufferbloat): about 40 x 1.5 kB / 4 Mbit/s = 120 ms in front of every probe to /B/4, and
    still about 80 ms after each halving of its window. An overloaded UDP flow would queue as
    much but tail-drop in bursts, and on a loaded machine a burst can take every probe of a
    window: the SCSC then rightly reports no reply rather than a delay."""
    htb(network, "sr2", "sg4", "4mbit", queue_packets=40)
    address = str(name_address("/B/4"))
    server = network.hosts["pod4"].popen(["iperf3", "-s", "-1", "-B", address],
                                         stdout=subprocess.DEVNULL)  # fmt: skip
    wait_until(lambda: network.listening("pod4", 5201), 10, "the iperf3 server")
    client = network.hosts["pod2"].popen(
        ["iperf3", "-6", "-c", address, "-t", str(seconds)], stdout=subprocess.DEVNULL
    )
    return server, client


def test_queueing_delay_moves_the_traffic_and_fail_static_keeps_it_moved(loaded_network):
    network = loaded_network
    assert http_answerer(network, "pod2", "/B") == "pod4"  # routing's choice, no policy
    assert choice_of(network) is None
    server, client = load_link(network, seconds=60)
    try:
        choice = wait_until(lambda: choice_of(network), 30, "the SCSC to move sg2's /B")
        assert choice["instance"] == "/B/1", choice
        record = next(r for r in network.ask(SCSC_HOST, "decisions") if r["source"] == "sg2"
                      and r["service"] == "/B")  # fmt: skip
        delay = re.search(r"delay ([\d.]+) ms ≥ 50 ms", record["trigger"])
        assert delay and float(delay.group(1)) >= 50, record
        path = choice["path"]
        wait_until(lambda: all(pair_policies(network, n) for n in path[:-1]), 10, "policies")
        assert_steered_along(network, path)
        assert http_answerer(network, "pod2", "/B") == "pod1"

        # The SCSC goes away: the forwarders keep their policies (fail-static)
        network.kill_node(SCSC_HOST)
        wait_until(lambda: network.ask("sg2", "openflow")["state"] == "disconnected", 20,
                   "sg2 to notice the SCSC is gone")  # fmt: skip
        assert http_answerer(network, "pod2", "/B") == "pod1"
        ages = {n: pair_policies(network, n)[0]["age_s"] for n in path[:-1]}

        # It comes back: reads the tables, re-decides the same, installs nothing twice
        network.restart_node(SCSC_HOST)
        wait_until(lambda: network.ask("sg2", "openflow")["state"] == "connected", 20,
                   "sg2 to reconnect")  # fmt: skip
        wait_until(lambda: choice_of(network), 30, "the restarted SCSC to decide")
        for node in path[:-1]:
            (row,) = pair_policies(network, node)
            assert row["age_s"] > ages[node], f"{node}'s policy was installed again"
        status = network.ask(SCSC_HOST, "status")
        assert not status.get("pending"), status
        assert http_answerer(network, "pod2", "/B") == "pod1"
    finally:
        client.terminate()
        server.terminate()
        client.wait(5)
        server.wait(5)


def test_a_silent_scsc_is_given_up_after_the_dead_interval_and_rejoined(emulate):
    """SIGSTOP keeps the SCSC's sockets open but answers nothing: the nodes' keepalive gives
    up (15 s), closes and reconnects once it answers again."""
    network = emulate(figure2.spec(), scsc=ScscOptions(**FAST))
    network.wait_converged(timeout=30)
    wait_until(lambda: network.ask("sr1", "openflow")["state"] == "connected", 20, "sr1")
    connects = network.ask("sr1", "openflow")["connects"]
    network.signal_program(SCSC_HOST, signal.SIGSTOP)
    try:
        wait_until(lambda: network.ask("sr1", "openflow")["state"] != "connected", 30,
                   "sr1 to give the silent SCSC up")  # fmt: skip
    finally:
        network.signal_program(SCSC_HOST, signal.SIGCONT)
    wait_until(lambda: network.ask("sr1", "openflow")["state"] == "connected", 30, "rejoining")
    assert network.ask("sr1", "openflow")["connects"] > connects
