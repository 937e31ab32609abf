"""The forwarder's per-packet decision on crafted frames (scapy builds them; no root)."""

from __future__ import annotations

import ipaddress

import pytest

pytest.importorskip("scapy.all", reason="scapy crafts the test frames (pip install scapy)")
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import TCP, UDP, Ether, ICMPv6EchoRequest, IPv6, Raw

from dmsc.dataplane import (
    DROP,
    Dataplane,
    DropReason,
    Masked,
    NextHop,
    Policy,
    Port,
    Route,
    Tables,
    decide,
    format_mac,
    forwarded,
)
from dmsc.dataplane.decide import KERNEL, MALFORMED, NO_ROUTE, SCOPE, TIME_EXCEEDED
from dmsc.dataplane.tables import FORWARD
from dmsc.errors import ConfigError
from dmsc.lpm import PrefixTable
from dmsc.names import name_address, name_prefix

PORT_MACS = (b"\x02\x00\x00\x00\xaa\x00", b"\x02\x00\x00\x00\xaa\x01", b"\x02\x00\x00\x00\xaa\x02")
SENDER_MAC = b"\x02\x00\x00\x00\x00\x01"
NEIGHBOR = {0: SENDER_MAC, 1: b"\x02\x00\x00\x00\x00\x11", 2: b"\x02\x00\x00\x00\x00\x22"}
OWN = ipaddress.IPv6Address("fd64:6d73:63:ffff::1")
CLIENT = "2001:db8:1::1"
SERVICE_B = name_prefix("/B")
INSTANCE_B4 = name_prefix("/B/4")


def route(prefix, *ports: int, label: str = "r", local: bool = False) -> Route:
    prefix = ipaddress.IPv6Network(prefix)
    return Route(prefix, label, tuple(NextHop(p, NEIGHBOR[p]) for p in ports), local)


def make_tables(routes=(), policies=()) -> Tables:
    table: PrefixTable[Route] = PrefixTable()
    for each in routes:
        table.insert(each.prefix, each)
    ports = tuple(Port(i, f"eth{i}", mac) for i, mac in enumerate(PORT_MACS))
    return Tables(ports, table, tuple(policies), frozenset({OWN}))


def frame(dst, src=CLIENT, hlim=64, payload=None, in_port=0, mac=None) -> bytes:
    upper = payload if payload is not None else UDP(sport=1000, dport=2000) / Raw(b"hello")
    ether = Ether(dst=format_mac(mac or PORT_MACS[in_port]), src=format_mac(SENDER_MAC))
    return bytes(ether / IPv6(src=src, dst=str(dst), hlim=hlim) / upper)


@pytest.fixture
def dataplane() -> Dataplane:
    return Dataplane(
        make_tables(
            [
                route(SERVICE_B, 1, label="/B"),
                route(INSTANCE_B4, 2, label="/B/4"),
                route("2001:db8:1::/64", 0, label="clients"),
            ]
        )
    )


def test_forward_rewrites_macs_and_decrements_hop_limit(dataplane):
    data = frame(name_address("/B"), hlim=64)
    out = dataplane.handle(data, 0, now=0.0)
    assert len(out) == 1
    port, sent = out[0]
    assert port == 1
    packet = Ether(sent)
    assert packet.dst == format_mac(NEIGHBOR[1]) and packet.src == format_mac(PORT_MACS[1])
    assert packet[IPv6].hlim == 63
    assert bytes(packet[IPv6].payload) == bytes(Ether(data)[IPv6].payload)  # checksum untouched
    assert dataplane.counters.route(SERVICE_B) == (1, len(data))
    assert dataplane.counters.ports[1].tx_packets == 1


def test_longest_match_wins(dataplane):
    instance = name_address("/B/4")
    action = decide(frame(instance), 0, dataplane.compiled)
    assert action[0] == FORWARD and action[1] == 2
    assert decide(frame(name_address("/B")), 0, dataplane.compiled)[1] == 1


def test_local_delivery_is_a_next_hop_to_the_pod():
    pod_port = 2
    tables = make_tables([route(INSTANCE_B4, pod_port, label="/B/4", local=True)])
    action = decide(frame(name_address("/B/4")), 0, Dataplane(tables).compiled)
    assert action[0] == FORWARD and action[1] == pod_port
    assert action[2][:6] == NEIGHBOR[pod_port]


def test_policy_beats_fib_and_counts():
    policy = Policy(
        100,
        0xC0FFEE,
        Masked.prefix(SERVICE_B),
        Masked.prefix("2001:db8:1::/64"),
        NextHop(2, NEIGHBOR[2]),
    )
    dataplane = Dataplane(make_tables([route(SERVICE_B, 1)], [policy]))
    data = frame(name_address("/B"))
    [(port, sent)] = dataplane.handle(data, 0, 0.0)
    assert port == 2 and Ether(sent).dst == format_mac(NEIGHBOR[2])
    assert dataplane.counters.policy(policy) == (1, len(data))
    assert dataplane.counters.route(SERVICE_B) == (0, 0)
    # A source outside the policy's match falls through to the FIB.
    other = frame(name_address("/B"), src="2001:db8:7::1")
    assert decide(other, 0, dataplane.compiled)[1] == 1


def test_policies_highest_priority_first():
    low = Policy(10, 1, Masked.prefix(SERVICE_B), None, NextHop(1, NEIGHBOR[1]))
    high = Policy(20, 2, Masked.prefix(INSTANCE_B4), None, NextHop(2, NEIGHBOR[2]))
    tables = make_tables([], [low, high])
    compiled = Dataplane(tables).compiled
    assert decide(frame(name_address("/B/4")), 0, compiled)[1] == 2
    assert decide(frame(name_address("/B")), 0, compiled)[1] == 1


def test_drop_policy_drops_and_counts():
    drop = Policy(50, 7, None, Masked.prefix("2001:db8:1::/64"), DROP)
    dataplane = Dataplane(make_tables([route(SERVICE_B, 1)], [drop]))
    data = frame(name_address("/B"))
    assert dataplane.handle(data, 0, 0.0) == []
    assert dataplane.counters.policy(drop) == (1, len(data))
    assert dataplane.counters.ports[0].drops[DropReason.POLICY] == 1


def test_counters_survive_a_table_swap(dataplane):
    data = frame(name_address("/B"))
    dataplane.handle(data, 0, 0.0)
    dataplane.set_tables(make_tables([route(SERVICE_B, 2, label="/B")]))
    [(port, _)] = dataplane.handle(data, 0, 0.0)
    assert port == 2
    assert dataplane.counters.route(SERVICE_B) == (2, 2 * len(data))
    assert dataplane.counters.route(INSTANCE_B4) == (0, 0)  # gone with its route


def ecmp_tables() -> Dataplane:
    return Dataplane(make_tables([route(SERVICE_B, 1, 2, label="/B")]))


def test_ecmp_keeps_a_flow_on_one_next_hop():
    compiled = ecmp_tables().compiled
    flow = [
        frame(name_address("/B"), payload=TCP(sport=40000, dport=80, seq=i) / Raw(b"x" * i))
        for i in range(50)
    ]
    assert len({decide(data, 0, compiled)[1] for data in flow}) == 1


def test_ecmp_spreads_flows_over_all_next_hops():
    compiled = ecmp_tables().compiled
    counts = {1: 0, 2: 0}
    for sport in range(1000, 1400):
        counts[
            decide(frame(name_address("/B"), payload=UDP(sport=sport, dport=53)), 0, compiled)[1]
        ] += 1
    assert min(counts.values()) > 120, counts  # 400 flows, 2 hops: both well used


def test_ecmp_spreads_non_tcp_udp_by_addresses():
    compiled = ecmp_tables().compiled
    hops = {
        decide(
            frame(name_address("/B"), src=f"2001:db8:1::{i:x}", payload=ICMPv6EchoRequest()),
            0,
            compiled,
        )[1]
        for i in range(1, 64)
    }
    assert hops == {1, 2}


@pytest.mark.parametrize(
    "destination",
    ["fe80::1", "ff02::1", "ff05::2", str(OWN)],
    ids=["link-local", "multicast", "site-multicast", "own address"],
)
def test_left_to_kernel(dataplane, destination):
    assert decide(frame(destination), 0, dataplane.compiled) is KERNEL
    assert dataplane.handle(frame(destination), 0, 0.0) == []
    assert dataplane.counters.ports[0].to_kernel == 1


def test_non_ipv6_and_other_macs_left_to_kernel(dataplane):
    arp = bytes.fromhex("ffffffffffff020000000001" + "0806") + bytes(28)
    assert decide(arp, 0, dataplane.compiled) is KERNEL
    not_ours = frame(name_address("/B"), mac=b"\x02\x99\x99\x99\x99\x99")
    assert decide(not_ours, 0, dataplane.compiled) is KERNEL


@pytest.mark.parametrize("source", ["fe80::1", "ff02::1", "::"])
def test_unforwardable_sources_dropped(dataplane, source):
    assert decide(frame(name_address("/B"), src=source), 0, dataplane.compiled) is SCOPE


def test_no_route_and_hop_limit_actions(dataplane):
    assert decide(frame("2001:db8:99::1"), 0, dataplane.compiled) is NO_ROUTE
    assert decide(frame(name_address("/B"), hlim=1), 0, dataplane.compiled) is TIME_EXCEEDED
    assert decide(frame(name_address("/B"), hlim=0), 0, dataplane.compiled) is TIME_EXCEEDED
    assert decide(frame(name_address("/B"), hlim=2), 0, dataplane.compiled)[0] == FORWARD


def test_forwarded_leaves_the_input_untouched(dataplane):
    data = frame(name_address("/B"))
    action = decide(data, 0, dataplane.compiled)
    assert forwarded(data, action) != data
    assert Ether(data)[IPv6].hlim == 64


def test_decide_works_on_a_memoryview_of_a_larger_buffer(dataplane):
    data = frame(name_address("/B"))
    buffer = bytearray(2048)
    buffer[: len(data)] = data
    assert decide(memoryview(buffer)[: len(data)], 0, dataplane.compiled)[1] == 1


def test_malformed_frames_dropped_and_counted(dataplane):
    good = frame(name_address("/B"))
    bad_version = bytearray(good)
    bad_version[14] = 0x40
    cases = [b"", b"\x00" * 13, good[:30], good[:53], bytes(bad_version), good[:-3]]
    for data in cases:
        assert decide(data, 0, dataplane.compiled) is MALFORMED, data
        assert dataplane.handle(data, 0, 0.0) == []
    assert dataplane.counters.ports[0].drops[DropReason.MALFORMED] == len(cases)


def test_ethernet_padding_is_not_truncation(dataplane):
    padded = frame(name_address("/B")) + bytes(10)
    assert decide(padded, 0, dataplane.compiled)[0] == FORWARD


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 2))
def test_random_bytes_never_raise(data, in_port):
    dataplane = Dataplane(make_tables([route("::/0", 1)]))
    dataplane.handle(data, in_port, 0.0)
    counted = dataplane.counters.ports[in_port]
    assert counted.rx_packets == 1
    assert counted.to_kernel + sum(counted.drops) + dataplane.counters.ports[1].tx_packets >= 1


@settings(max_examples=1000, deadline=None)
@given(st.binary(min_size=40, max_size=120), st.integers(0, 255))
def test_random_ipv6_packets_never_raise(tail, hop_limit):
    """Valid Ethernet + IPv6 start, random rest: exercises every later branch."""
    dataplane = Dataplane(make_tables([route("::/0", 1, 2)]))
    header = PORT_MACS[0] + SENDER_MAC + b"\x86\xdd\x60\x00\x00\x00"
    data = header + tail[:2] + tail[2:3] + bytes([hop_limit]) + tail[3:]
    dataplane.handle(data, 0, 0.0)
    assert dataplane.counters.ports[0].rx_packets == 1


def test_tables_refuse_bad_ports():
    table: PrefixTable[Route] = PrefixTable()
    table.insert(SERVICE_B, Route(SERVICE_B, "/B", (NextHop(5, NEIGHBOR[1]),)))
    with pytest.raises(ConfigError, match="no port 5"):
        Tables((Port(0, "eth0", PORT_MACS[0]),), table)
    with pytest.raises(ConfigError, match="index 1, expected 0"):
        Tables((Port(1, "eth0", PORT_MACS[0]),))
    with pytest.raises(ConfigError, match="bits outside"):
        Masked(1, 0)
    with pytest.raises(ConfigError, match="no next hop"):
        Route(SERVICE_B, "/B", ())


def test_forwarder_config_from_json():
    from dmsc.dataplane.forwarder import config_from_json

    data = {
        "ports": [
            {"name": "eth0", "mac": "02:00:00:00:aa:00"},
            {"name": "eth1", "mac": "02:00:00:00:aa:01"},
        ],
        "routes": [
            {
                "prefix": str(SERVICE_B),
                "label": "/B",
                "next_hops": [{"port": "eth1", "mac": "02:00:00:00:00:11"}],
            }
        ],
        "policies": [{"priority": 5, "cookie": 9, "src": "2001:db8:1::/64", "action": "drop"}],
        "own_addresses": [str(OWN)],
        "options": {"io": "socket", "spin_us": 10},
    }
    config = config_from_json({**data, "steer": True})
    tables, options = config.tables, config.options
    assert options.io == "socket" and options.spin_us == 10
    assert config.prepare and config.steer
    assert tables.routes.lookup(name_address("/B")).next_hops == (NextHop(1, NEIGHBOR[1]),)
    assert tables.policies[0].action is DROP and tables.policies[0].src == Masked.prefix(
        "2001:db8:1::/64"
    )
    assert tables.source_address == OWN


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": 1}, r"config: unknown key\(s\) \['colour'\]"),
        ({"routes": [{"prefix": "nope", "next_hops": []}]}, r"routes\[0\].prefix"),
        (
            {
                "routes": [
                    {"prefix": "::/0", "next_hops": [{"port": "eth9", "mac": "02:00:00:00:00:01"}]}
                ]
            },
            "unknown port 'eth9'",
        ),
        ({"options": {"io": "dpdk"}}, "io: 'dpdk'"),
        ({"options": {"turbo": True}}, r"options: unknown key\(s\) \['turbo'\]"),
        ({"ports": [{"name": "eth0", "mac": "02:00"}]}, "bad MAC"),
    ],
)
def test_forwarder_config_errors_name_the_field(change, message):
    from dmsc.dataplane.forwarder import config_from_json

    data = {"ports": [{"name": "eth0", "mac": "02:00:00:00:aa:00"}], **change}
    with pytest.raises(ConfigError, match=message):
        config_from_json(data)
