"""ICMPv6 errors of the forwarder: checksums scapy agrees with, quotes, rate limit, never-cases."""

from __future__ import annotations

import ipaddress

import pytest

pytest.importorskip("scapy.all", reason="scapy dissects the ICMPv6 errors (pip install scapy)")
from scapy.all import (
    UDP,
    Ether,
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6TimeExceeded,
    IPerror6,
    IPv6,
    IPv6ExtHdrHopByHop,
    Raw,
)

from dmsc.dataplane import (
    Dataplane,
    DropReason,
    NextHop,
    Port,
    Route,
    Tables,
    format_mac,
    icmp,
)
from dmsc.lpm import PrefixTable

PORT_MACS = (b"\x02\x00\x00\x00\xaa\x00", b"\x02\x00\x00\x00\xaa\x01")
SENDER_MAC = b"\x02\x00\x00\x00\x00\x01"
NODE = ipaddress.IPv6Address("fd64:6d73:63:ffff::7")
CLIENT = "2001:db8:1::1"
ROUTED = ipaddress.IPv6Network("2001:db8:2::/64")


def make_dataplane(rate: float = 100.0, burst: float = 20.0, source=NODE) -> Dataplane:
    table: PrefixTable[Route] = PrefixTable()
    table.insert(ROUTED, Route(ROUTED, "server", (NextHop(1, b"\x02\x00\x00\x00\x00\x22"),)))
    ports = tuple(Port(i, f"eth{i}", mac) for i, mac in enumerate(PORT_MACS))
    own = frozenset({source}) if source else frozenset()
    return Dataplane(Tables(ports, table, own_addresses=own), rate, burst)


def frame(dst="2001:db8:2::1", hlim=64, upper=None, src=CLIENT, size=0) -> bytes:
    upper = upper if upper is not None else UDP(sport=33434, dport=33435) / Raw(b"x" * size)
    ether = Ether(dst=format_mac(PORT_MACS[0]), src=format_mac(SENDER_MAC))
    return bytes(ether / IPv6(src=src, dst=dst, hlim=hlim) / upper)


def assert_valid_checksum(reply: Ether, layer) -> None:
    """scapy recomputes the checksum when it is deleted: it must equal what we sent."""
    sent = reply[layer].cksum
    copy = Ether(bytes(reply))
    del copy[layer].cksum
    assert Ether(bytes(copy))[layer].cksum == sent


def test_hop_limit_one_gives_time_exceeded_back_to_the_sender():
    dataplane = make_dataplane()
    original = frame(hlim=1, size=20)
    [(port, sent)] = dataplane.handle(original, 0, now=0.0)
    assert port == 0  # back out of the in-port
    reply = Ether(sent)
    assert reply.dst == format_mac(SENDER_MAC) and reply.src == format_mac(PORT_MACS[0])
    assert reply[IPv6].src == str(NODE) and reply[IPv6].dst == CLIENT
    assert reply[IPv6].nh == 58 and reply[IPv6].plen == len(sent) - 54
    error = reply[ICMPv6TimeExceeded]
    assert (error.type, error.code) == (3, 0)
    assert_valid_checksum(reply, ICMPv6TimeExceeded)
    assert bytes(error.payload) == original[14:]  # the whole offending packet, quoted
    assert error[IPerror6].hlim == 1
    assert dataplane.counters.ports[0].drops[DropReason.HOP_LIMIT] == 1


def test_no_route_gives_destination_unreachable():
    dataplane = make_dataplane()
    [(port, sent)] = dataplane.handle(frame(dst="2001:db8:99::1"), 0, now=0.0)
    reply = Ether(sent)
    assert port == 0
    assert (reply[ICMPv6DestUnreach].type, reply[ICMPv6DestUnreach].code) == (1, 0)
    assert_valid_checksum(reply, ICMPv6DestUnreach)
    assert dataplane.counters.ports[0].drops[DropReason.NO_ROUTE] == 1


def test_quote_is_cut_to_fit_the_minimum_mtu():
    original = frame(hlim=1, size=1400)
    [(_, sent)] = make_dataplane().handle(original, 0, 0.0)
    assert len(sent) - 14 == icmp.MIN_MTU
    reply = Ether(sent)
    assert_valid_checksum(reply, ICMPv6TimeExceeded)
    assert sent[14 + 40 + 8 :] == original[14 : 14 + icmp.MAX_QUOTE]


def test_errors_are_rate_limited_by_a_token_bucket():
    dataplane = make_dataplane(rate=10.0, burst=3.0)
    lost = frame(dst="2001:db8:99::1")
    sent = [len(dataplane.handle(lost, 0, now=100.0)) for _ in range(10)]
    assert sent == [1, 1, 1] + [0] * 7
    assert dataplane.counters.ports[0].drops[DropReason.ICMP_RATE] == 7
    assert dataplane.counters.ports[0].drops[DropReason.NO_ROUTE] == 10  # every drop counted
    assert len(dataplane.handle(lost, 0, now=100.05)) == 0  # half a token
    assert len(dataplane.handle(lost, 0, now=100.2)) == 1


def test_token_bucket_refills_up_to_its_burst():
    bucket = icmp.TokenBucket(rate=2.0, burst=2.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)
    assert [bucket.take(100.0) for _ in range(3)] == [True, True, False]


def test_no_error_about_an_icmp_error():
    dataplane = make_dataplane()
    about = ICMPv6TimeExceeded() / IPerror6(src=CLIENT, dst="2001:db8:2::9") / UDP()
    assert dataplane.handle(frame(dst="2001:db8:99::1", upper=about), 0, 0.0) == []
    assert dataplane.handle(frame(hlim=1, upper=about), 0, 0.0) == []
    assert dataplane.counters.ports[0].drops[DropReason.NO_ROUTE] == 1  # still counted


def test_errors_about_icmp_informational_messages_are_sent():
    [(_, sent)] = make_dataplane().handle(frame(hlim=1, upper=ICMPv6EchoRequest()), 0, 0.0)
    assert Ether(sent).haslayer(ICMPv6TimeExceeded)


def test_extension_headers_are_walked_to_find_an_icmp_error():
    about = IPv6ExtHdrHopByHop() / ICMPv6DestUnreach() / IPerror6() / UDP()
    assert make_dataplane().handle(frame(hlim=1, upper=about), 0, 0.0) == []
    udp_behind = IPv6ExtHdrHopByHop() / UDP()
    assert len(make_dataplane().handle(frame(hlim=1, upper=udp_behind), 0, 0.0)) == 1


def test_no_error_about_multicast_sources_or_link_layer_broadcast():
    data = bytearray(frame(dst="2001:db8:99::1"))
    data[0:6] = b"\xff" * 6  # broadcast: not even for us, the kernel gets it
    assert make_dataplane().handle(bytes(data), 0, 0.0) == []
    assert not icmp.may_send_error_about(bytes(data))
    multicast_source = frame(dst="2001:db8:99::1", src="ff02::1")
    assert not icmp.may_send_error_about(multicast_source)


def test_no_error_without_an_own_address():
    dataplane = make_dataplane(source=None)
    assert dataplane.handle(frame(hlim=1), 0, 0.0) == []
    assert dataplane.counters.ports[0].drops[DropReason.HOP_LIMIT] == 1


def test_checksum_matches_rfc1071_examples():
    assert icmp.checksum(b"\x00\x01\xf2\x03\xf4\xf5\xf6\xf7") == ~0xDDF2 & 0xFFFF
    assert icmp.checksum(b"\xff") == 0x00FF
