"""Service traffic from ordinary tools across the Python forwarders, by service address."""

import json
import subprocess
import sys
import time

import networkx as nx
import pytest

from dmsc.names import name_address, node_address
from dmsc.topologies import figure2

CLIENT = [sys.executable, "-m", "dmsc.nodes.client"]


@pytest.fixture
def figure2_network(emulate):
    network = emulate(figure2.spec())
    network.wait_converged(timeout=30)
    return network


def run(host, *command) -> str:
    return host.cmd(*command)


def http_answerer(network, client: str, name: str) -> str:
    output = run(network.hosts[client], *CLIENT, "http", name)
    assert "answered by" in output, output
    return output.split("answered by ")[1].split()[0]


def traceroute_hops(network, client: str, name: str) -> list[str]:
    output = run(
        network.hosts[client],
        "traceroute",
        "-6",
        "-n",
        "-q",
        "1",
        "-w",
        "2",
        str(name_address(name)),
    )
    by_address = {str(node_address(n)): n for n in network.spec.router_graph().nodes}
    hops = [line.split()[1] for line in output.splitlines()[1:] if line.strip()]
    return [by_address.get(hop, hop) for hop in hops]


def spf_path(network, source_sg: str, target_sg: str) -> list[str]:
    graph = network.working_graph()
    paths = list(nx.all_shortest_paths(graph, source_sg, target_sg, weight="cost"))
    assert len(paths) == 1, f"the test needs a unique shortest path, got {paths}"
    return paths[0]


def test_ping_reaches_service_and_instance_addresses(figure2_network):
    pod2 = figure2_network.hosts["pod2"]
    for name in ("/B", "/B/4", "/A/1"):
        output = run(pod2, "ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", str(name_address(name)))
        assert " 0% packet loss" in output, output


def test_http_reaches_the_nearest_instance_of_a_service_and_a_named_one(figure2_network):
    assert http_answerer(figure2_network, "pod2", "/B") == "pod4"  # sg2-sr2-sg4 is nearest
    assert http_answerer(figure2_network, "pod2", "/B/1") == "pod1"  # that instance, farther
    assert http_answerer(figure2_network, "pod1", "/C") == "pod3"  # sg1-sr1-sg3


def test_udp_and_tcp_echo_by_name(figure2_network):
    pod3 = figure2_network.hosts["pod3"]
    for protocol in ("udp", "tcp"):
        output = run(pod3, *CLIENT, protocol, "/A/4", "--count", "3")
        assert output.count(f"{protocol} echo:") == 3, output


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
@pytest.mark.parametrize("target", ["/B", "/B/4"])
def test_iperf3_through_the_forwarders(figure2_network, udp, target):
    # bound to the address asked for: a UDP server on [::] would answer from the pod's
    # first instance address, which iperf3's connected client socket rejects
    address = str(name_address(target))
    server = figure2_network.hosts["pod4"].popen(
        ["iperf3", "-s", "-1", "-B", address], stdout=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while not figure2_network.listening("pod4", 5201):
            assert time.monotonic() < deadline, "iperf3 server did not start listening"
            time.sleep(0.05)
        options = ["-u", "-b", "20M"] if udp else []
        command = ["iperf3", "-6", "-c", address, "-t", "2", "-J", *options]
        report = json.loads(run(figure2_network.hosts["pod2"], *command))
        assert "error" not in report, report.get("error")
        summary = report["end"]["sum"] if udp else report["end"]["sum_received"]
        assert summary["bits_per_second"] > 1e6
        if udp:
            assert summary["lost_percent"] < 5.0
    finally:
        server.terminate()
        server.wait(5)


def test_traceroute_follows_the_spf_path_and_a_link_failure_reroutes(figure2_network):
    network = figure2_network
    assert traceroute_hops(network, "pod2", "/B/4") == [
        *spf_path(network, "sg2", "sg4"),
        str(name_address("/B/4")),
    ]
    network.set_link("sg4", "sr2", False)
    network.wait_converged(timeout=10)
    rerouted = traceroute_hops(network, "pod2", "/B/4")
    assert rerouted == [*spf_path(network, "sg2", "sg4"), str(name_address("/B/4"))]
    assert "sr3" in rerouted
    assert http_answerer(network, "pod2", "/B/4") == "pod4"


def test_malformed_frames_are_counted_and_forwarding_goes_on(figure2_network, tmp_path):
    network = figure2_network
    interface = network.link_ends[("sg2", "sr2")][0]  # sg2's end: frames arrive at sr2
    script = tmp_path / "garbage.py"
    script.write_text(
        "from scapy.all import Ether, IPv6, Raw, sendp\n"
        "frames = [Ether(type=0x86DD) / Raw(b'\\x60'),\n"  # IPv6 header cut short
        "          Ether(type=0x86DD) / Raw(b'\\x40' + bytes(60)),\n"  # version 4 in an IPv6 frame
        "          Ether(type=0x86DD) / IPv6(dst='fd64:6d73:63:92eb:4::1', plen=900) / Raw(b'x')]\n"
        f"sendp(frames * 5, iface={interface!r}, verbose=False)\n"
    )
    before = network.ask("sr2", "dataplane")["ports"]
    run(network.hosts["sg2"], sys.executable, str(script))
    after = network.ask("sr2", "dataplane")["ports"]
    port = network.link_ends[("sg2", "sr2")][1]
    assert after[port]["drops"]["malformed"] - before[port]["drops"]["malformed"] == 15
    assert http_answerer(network, "pod2", "/B/4") == "pod4"  # still forwarding
