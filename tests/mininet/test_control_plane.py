"""The emulated network's control plane: convergence, faults, leases and the SPA, on Mininet."""

import dataclasses
import signal
import sys
import time

from dmsc.proto.codec import ALL_DMSC_ROUTERS, LINK_STATE_UDP_PORT
from dmsc.topologies import figure2
from dmsc.topologies.builders import topohub

ZOO = "topozoo/Abilene"  # from TopoHub


def labels(network, node):
    return {row["label"] for row in network.ask(node, "fib")}


def test_figure2_converges_to_the_reference_spf(emulate):
    network = emulate(figure2.spec(), forward=False)
    network.wait_converged(timeout=30)
    assert "/B/4" in labels(network, "sg2") and "/C/3" in labels(network, "sg1")
    assert network.ask("sg1", "leases")  # pod1's prefixes are leased at its SG


def test_link_down_reroutes_and_link_up_restores(emulate):
    network = emulate(figure2.spec(), forward=False)
    network.wait_converged(timeout=30)
    before = {r["label"]: r for r in network.ask("sg2", "fib")}["/B/4"]
    assert [h["node"] for h in before["next_hops"]] == ["sr2"]
    network.set_link("sg4", "sr2", False)
    network.wait_converged(timeout=10)
    sr2 = {r["label"]: r for r in network.ask("sr2", "fib")}["/B/4"]
    assert [h["node"] for h in sr2["next_hops"]] == ["sr3"]  # around the cut
    network.set_link("sg4", "sr2", True)
    network.wait_converged(timeout=10)


def test_killed_sg_loses_its_prefixes_everywhere(emulate):
    network = emulate(figure2.spec(), forward=False)
    network.wait_converged(timeout=30)
    network.kill_node("sg4")  # silent: neighbors wait for the dead interval
    network.wait_converged(timeout=15)  # the reference drops sg4 and what it advertised
    for node in ("sg1", "sg2", "sr1", "sr3"):
        assert "/B/4" not in labels(network, node) and "/A/4" not in labels(network, node)
        assert "/B" in labels(network, node)  # still served, by pod1 behind sg1


def test_pod_that_stops_renewing_loses_its_prefixes(emulate):
    network = emulate(figure2.spec(), forward=False)
    network.wait_converged(timeout=30)
    network.signal_program("pod1", signal.SIGSTOP)
    without_pod1 = {
        name: origins
        for name, origins in network.spec.announced().items()
        if name not in ("/A/1", "/B/1")
    }
    without_pod1["/A"] = without_pod1["/B"] = {"sg4"}
    waited = network.wait_converged(timeout=20, announced=without_pod1)
    assert waited >= 2.0  # the lease (6 s, renewed every 2 s) had to run out first
    assert network.ask("sg1", "leases") == []


def test_unauthorized_claim_is_refused_with_a_reason_and_reaches_no_fib(emulate):
    pods = tuple(
        dataclasses.replace(p, unauthorized=("/B/4",)) if p.name == "pod3" else p
        for p in figure2.PODS
    )
    network = emulate(dataclasses.replace(figure2.spec(), pods=pods), forward=False)
    network.wait_converged(timeout=30)  # the reference has /B/4 at sg4 only
    refused = network.ask("pod3", "status")["prefixes"]["/B/4"]
    assert refused["accepted"] is False
    assert "pod3" in refused["reason"] and "/B/4" in refused["reason"]
    sr3 = {r["label"]: r for r in network.ask("sr3", "fib")}["/B/4"]
    assert [h["node"] for h in sr3["next_hops"]] == ["sg4"]


GARBAGE = [b"", b"\x00" * 10, b"\xff" * 300, b"\x08\x07\x12\x03sr1", bytes(range(256))]


def test_malformed_signalling_is_counted_and_the_node_carries_on(emulate, tmp_path):
    network = emulate(figure2.spec(), forward=False)
    network.wait_converged(timeout=30)
    interface = network.link_ends[("sg1", "sr1")][1]  # sr1's end of the sg1 link
    sender = tmp_path / "send_garbage.py"
    sender.write_text(
        "import socket\n"
        f"index = socket.if_nametoindex({interface!r})\n"
        "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
        "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)\n"
        "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)\n"  # as GTSM asks
        f"for payload in {GARBAGE!r}:\n"
        f"    s.sendto(payload, ({ALL_DMSC_ROUTERS!r}, {LINK_STATE_UDP_PORT}, 0, index))\n"
    )
    before = network.ask("sg1", "counters").get("rx_decode_errors", 0)
    network.hosts["sr1"].cmd(sys.executable, str(sender))
    deadline = time.monotonic() + 5
    while network.ask("sg1", "counters").get("rx_decode_errors", 0) < before + len(GARBAGE):
        assert time.monotonic() < deadline, network.ask("sg1", "counters")
        time.sleep(0.05)
    events = [e for e in network.ask("sg1", "events") if e["kind"] == "decode-error"]
    assert events and "sg1-eth0" in events[-1]["detail"]
    network.wait_converged(timeout=5)  # nothing else disturbed
    assert network.ask("sg1", "status")["full_neighbors"] == ["sr1"]


def test_topology_zoo_network_converges(emulate):
    network = emulate(topohub(ZOO), forward=False)
    network.wait_converged(timeout=60)
    instances = {i for pod in network.spec.pods for i in pod.instances}
    for router in network.spec.routers:
        assert instances <= labels(network, router)
