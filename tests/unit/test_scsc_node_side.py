"""The node side of the SCSC, without sockets: probe packets, routing a node's own packets,
flow entries as forwarder policies, what an SG probes, the CLI's threshold edits."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.all import UDP, Ether, IPv6

from dmsc.dataplane import DROP, Dataplane, Masked, NextHop, Policy, Port, Route, Tables
from dmsc.lpm import PrefixTable
from dmsc.measurement.stamp import STAMP_PORT
from dmsc.names import name_address, name_prefix, node_address
from dmsc.nodes.mncli import with_threshold_changes
from dmsc.nodes.ofagent import FlowEntry
from dmsc.nodes.openflow_link import datapath_id, policy_from_entry, table_changes, table_rows
from dmsc.nodes.probing import instances_to_probe, udp6_packet
from dmsc.proto import dmsc_pb2
from dmsc.proto.openflow import Instruction, MaskedAddress, Match, Output

PORT_MACS = (b"\x02\x00\x00\x00\xaa\x00", b"\x02\x00\x00\x00\xaa\x01")
NEIGHBOR_MACS = (b"\x02\x00\x00\x00\x00\x10", b"\x02\x00\x00\x00\x00\x11")
SG = node_address("sg2")


def tables(policies=()) -> Tables:
    routes: PrefixTable[Route] = PrefixTable()
    for prefix, port in ((name_prefix("/B/4"), 0), (name_prefix("/B"), 1)):
        routes.insert(prefix, Route(prefix, "r", (NextHop(port, NEIGHBOR_MACS[port]),), False))
    ports = tuple(Port(i, f"eth{i}", mac) for i, mac in enumerate(PORT_MACS))
    return Tables(ports, routes, tuple(policies), frozenset({SG}))


def probe(destination: str = "/B/4", source: ipaddress.IPv6Address = SG) -> bytes:
    return udp6_packet(source.packed, name_address(destination).packed, 40000, STAMP_PORT,
                       b"\x00" * 44)  # fmt: skip


def test_probe_packets_are_valid_ipv6_udp_with_a_correct_checksum():
    packet = IPv6(probe())
    assert (packet.src, packet.dst, packet.hlim) == (str(SG), str(name_address("/B/4")), 255)
    sent_checksum = packet[UDP].chksum
    del packet[UDP].chksum  # scapy recomputes it
    assert IPv6(bytes(packet))[UDP].chksum == sent_checksum
    assert packet[UDP].dport == STAMP_PORT and len(packet[UDP].payload) == 44


def test_a_nodes_own_packet_is_routed_by_the_fib_without_touching_the_hop_limit():
    dataplane = Dataplane(tables())
    port, frame = dataplane.originate(probe("/B/4"))
    ether = Ether(frame)
    assert port == 0
    assert (ether.dst, ether.src) == ("02:00:00:00:00:10", "02:00:00:00:aa:00")
    assert ether[IPv6].hlim == 255
    assert dataplane.counters.ports[0].tx_packets == 1
    assert dataplane.counters.route(name_prefix("/B/4"))[0] == 1


def test_a_nodes_own_packet_follows_policies_and_nothing_routes_the_unknown():
    steer = Policy(1000, 1, Masked.prefix(name_prefix("/B/4")), None, NextHop(1, NEIGHBOR_MACS[1]))
    port, _ = Dataplane(tables([steer])).originate(probe("/B/4"))
    assert port == 1
    drop = Policy(1000, 2, Masked.prefix(name_prefix("/B/4")), None, DROP)
    assert Dataplane(tables([drop])).originate(probe("/B/4")) is None
    assert Dataplane(tables()).originate(probe("/Z/1")) is None
    with pytest.raises(ValueError, match="not an IPv6 packet"):
        Dataplane(tables()).originate(b"\x45" + bytes(39))


def entry(outputs, dst="fd64:6d73:63:92eb::1/128", src="fd64:6d73:63:f145:2::/80"):
    instructions = (Instruction(4, tuple(Output(port) for port in outputs)),)
    match = Match(eth_type=0x86DD, ipv6_dst=MaskedAddress.parse(dst),
                  ipv6_src=MaskedAddress.parse(src))  # fmt: skip
    return FlowEntry(7, match, 1000, instructions, cookie=0xD5C0)


def test_a_flow_entry_becomes_a_forwarder_policy_on_the_port_of_its_output():
    hops = {2: NextHop(1, NEIGHBOR_MACS[1])}
    policy = policy_from_entry(entry([2]), hops.get)
    assert policy.priority == 1000 and policy.cookie == 0xD5C0
    assert policy.action == NextHop(1, NEIGHBOR_MACS[1])
    assert policy.dst == Masked.prefix(ipaddress.IPv6Network("fd64:6d73:63:92eb::1/128"))
    assert policy.src == Masked.prefix(ipaddress.IPv6Network("fd64:6d73:63:f145:2::/80"))
    assert policy_from_entry(entry([]), hops.get).action is DROP
    # an output port with nobody behind it: not applied, the FIB decides
    assert policy_from_entry(entry([3]), hops.get) is None


def test_policy_table_changes_are_adds_modifies_and_deletes_by_priority_and_match():
    other = "fd64:6d73:63:1111::1/128"
    first = table_rows([entry([2]), entry([1], dst=other)])
    assert first[(1000, "fd64:6d73:63:92eb::1/128", "fd64:6d73:63:f145:2::/80")] == {
        "cookie": "0x000000000000d5c0", "priority": 1000, "ipv6_dst": "fd64:6d73:63:92eb::1/128",
        "ipv6_src": "fd64:6d73:63:f145:2::/80", "outputs": [2],
    }  # fmt: skip
    added = table_changes({}, first, 5.0)
    expected = [(5.0, "add", [1]), (5.0, "add", [2])]  # in the order of their match
    assert [(c["time"], c["change"], c["outputs"]) for c in added] == expected
    second = table_rows([entry([3])])  # re-pointed, and the other one gone
    changes = table_changes(first, second, 6.0)
    assert sorted((c["change"], c["ipv6_dst"], c["outputs"]) for c in changes) == [
        ("delete", other, [1]), ("modify", "fd64:6d73:63:92eb::1/128", [3]),
    ]  # fmt: skip
    assert table_changes(second, table_rows([entry([3])]), 7.0) == []


def test_datapath_ids_are_stable_48_bit_and_distinct():
    ids = {datapath_id(f"sr{i}") for i in range(1000)}
    assert len(ids) == 1000 and max(ids) < 1 << 48
    assert datapath_id("sg2") == datapath_id("sg2")


def lsa(originator, names):
    return dmsc_pb2.LinkStateAdvertisement(
        originator=originator, sequence=1, lifetime_ms=60_000,
        prefixes=[dmsc_pb2.AnnouncedPrefix(name=name) for name in names],
    )  # fmt: skip


def test_an_sg_probes_the_instances_of_its_services_not_the_anycast_names():
    lsas = [lsa("sg1", ["/B/1", "/B", "/A/1"]), lsa("sg4", ["/B/4", "/B", "/C/4"])]
    assert instances_to_probe(lsas, ("/B",)) == ["/B/1", "/B/4"]
    assert instances_to_probe(lsas, ("/B", "/C")) == ["/B/1", "/B/4", "/C/4"]
    assert instances_to_probe(lsas, ("/D",)) == []


def test_threshold_edits_from_the_cli_merge_into_the_current_table():
    current = {"default": {"max_delay_ms": 50.0}, "services": {"/B": {"max_jitter_ms": 5.0}}}
    table = with_threshold_changes(current, "/B", ["max_delay_ms=20", "max_jitter_ms=off"])
    assert table["services"]["/B"] == {"max_delay_ms": 20.0, "max_jitter_ms": None}
    assert table["default"] == {"max_delay_ms": 50.0}
    assert current["services"]["/B"] == {"max_jitter_ms": 5.0}  # not changed in place
    with pytest.raises(ValueError, match="'max_delay_ms=fast': 'fast' is not a number"):
        with_threshold_changes(current, "default", ["max_delay_ms=fast"])
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        with_threshold_changes(current, "default", ["max_delay_ms"])
    with pytest.raises(ValueError, match="at least one"):
        with_threshold_changes(current, "default", [])
