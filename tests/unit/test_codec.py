import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmsc.errors import ConfigError, DecodeError
from dmsc.proto import dmsc_pb2
from dmsc.proto.codec import (
    MAX_ADJACENCIES,
    MAX_DEAD_INTERVAL_MS,
    MAX_HEADERS_PER_ACK,
    MAX_LIFETIME_MS,
    MAX_LSAS_PER_UPDATE,
    MAX_NEIGHBORS_PER_HELLO,
    MAX_PREFIXES,
    MAX_SEQUENCE,
    PROTOCOL_VERSION,
    decode_packet,
    encode_packet,
)
from dmsc.routing import LinkStateRouter, LinkStateTimers
from dmsc.routing.router import _chunks


def packet(**body):
    return dmsc_pb2.LinkStatePacket(version=PROTOCOL_VERSION, sender="sr1", **body)


def lsa(**fields):
    values = dict(originator="sg1", sequence=3, lifetime_ms=60_000)
    values.update(fields)
    return dmsc_pb2.LinkStateAdvertisement(**values)


def update(*lsas):
    return packet(update=dmsc_pb2.LinkStateUpdate(lsas=list(lsas)))


def test_round_trip_of_each_body():
    hello = packet(
        hello=dmsc_pb2.Hello(hello_interval_ms=1000, dead_interval_ms=4000, neighbors=["sg1"])
    )
    ack = packet(
        ack=dmsc_pb2.LinkStateAck(headers=[dmsc_pb2.LsaHeader(originator="sg1", sequence=2)])
    )
    full = update(
        lsa(
            adjacencies=[dmsc_pb2.Adjacency(neighbor="sr1", cost=10)],
            prefixes=[dmsc_pb2.AnnouncedPrefix(name="/B/4")],
        )
    )
    for message in (hello, ack, full):
        assert decode_packet(encode_packet(message)) == message


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (dmsc_pb2.LinkStatePacket(version=9, sender="x", ack=dmsc_pb2.LinkStateAck()), "version 9"),
        (packet(), "no hello, update or ack"),
        (
            dmsc_pb2.LinkStatePacket(version=PROTOCOL_VERSION, ack=dmsc_pb2.LinkStateAck()),
            "empty node id",
        ),
        (
            packet(hello=dmsc_pb2.Hello(hello_interval_ms=5000, dead_interval_ms=1000)),
            "need 0 < hello < dead",
        ),
        (update(lsa(sequence=0)), "sequence number 0"),
        (update(lsa(adjacencies=[dmsc_pb2.Adjacency(neighbor="sr1", cost=0)])), "cost 0"),
        (update(lsa(prefixes=[dmsc_pb2.AnnouncedPrefix(name="B//4")])), "must start with '/'"),
        (update(lsa(originator="two words")), "bad node id"),
    ],
)
def test_meaningless_packets_are_refused_with_a_reason(message, reason):
    with pytest.raises(DecodeError, match=reason):
        decode_packet(encode_packet(message))


def test_truncated_bytes_are_a_decode_error():
    data = encode_packet(update(lsa(prefixes=[dmsc_pb2.AnnouncedPrefix(name="/B/4")])))
    with pytest.raises(DecodeError, match="not a valid LinkStatePacket"):
        decode_packet(data[:-3])


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_any_bytes_give_a_packet_or_a_decode_error(data):
    try:
        decoded = decode_packet(data)
    except DecodeError:
        return
    assert decoded.WhichOneof("body") is not None
    assert decode_packet(encode_packet(decoded)) == decoded


def hello(hello_ms=1000, dead_ms=4000, neighbors=("sg1",), interface="eth0"):
    return packet(
        hello=dmsc_pb2.Hello(
            interface=interface,
            hello_interval_ms=hello_ms,
            dead_interval_ms=dead_ms,
            neighbors=list(neighbors),
        )
    )


def ack(*headers):
    return packet(ack=dmsc_pb2.LinkStateAck(headers=list(headers)))


def header(sequence=3, lifetime_ms=60_000):
    return dmsc_pb2.LsaHeader(originator="sg1", sequence=sequence, lifetime_ms=lifetime_ms)


def adjacencies(count):
    return [dmsc_pb2.Adjacency(neighbor=f"n{i}", cost=1) for i in range(count)]


def prefixes(count):
    return [dmsc_pb2.AnnouncedPrefix(name=f"/p{i}") for i in range(count)]


def ids(count):
    return [f"n{i}" for i in range(count)]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (update(lsa(sequence=MAX_SEQUENCE + 1)), f"above MAX_SEQUENCE \\({MAX_SEQUENCE}\\)"),
        (update(lsa(sequence=2**64 - 1)), f"seq {2**64 - 1}: sequence number above MAX_SEQ"),
        (update(lsa(lifetime_ms=MAX_LIFETIME_MS + 1)), f"lifetime_ms {MAX_LIFETIME_MS + 1} above"),
        (update(lsa(lifetime_ms=2**32 - 1)), "lifetime_ms 4294967295 above MAX_LIFETIME_MS"),
        (update(lsa(adjacencies=adjacencies(MAX_ADJACENCIES + 1))), "adjacencies: 1025, more"),
        (update(lsa(prefixes=prefixes(MAX_PREFIXES + 1))), "prefixes: 1025, more than the limit"),
        (update(*[lsa()] * (MAX_LSAS_PER_UPDATE + 1)), "update from sr1: LSAs: 257, more"),
        (ack(*[header()] * (MAX_HEADERS_PER_ACK + 1)), "ack from sr1: headers: 257, more"),
        (ack(header(sequence=0)), "header of sg1 seq 0: sequence number 0 is reserved"),
        (ack(header(sequence=MAX_SEQUENCE + 1)), "header of sg1 .*above MAX_SEQUENCE"),
        (ack(header(lifetime_ms=MAX_LIFETIME_MS + 1)), "lifetime_ms 3600001 above"),
        (hello(dead_ms=MAX_DEAD_INTERVAL_MS + 1), "dead_interval_ms 600001 above MAX_DEAD"),
        (hello(hello_ms=2**32 - 2, dead_ms=2**32 - 1), "dead_interval_ms 4294967295 above"),
        (hello(neighbors=ids(MAX_NEIGHBORS_PER_HELLO + 1)), "hello from sr1: neighbors: 257"),
        (hello(interface="e" * 65), "interface name of 65 characters"),
    ],
)
def test_fields_beyond_their_bounds_are_refused_naming_field_and_value(message, reason):
    with pytest.raises(DecodeError, match=reason):
        decode_packet(encode_packet(message))


@pytest.mark.parametrize(
    "message",
    [
        update(lsa(sequence=MAX_SEQUENCE, lifetime_ms=MAX_LIFETIME_MS)),
        update(lsa(sequence=MAX_SEQUENCE, lifetime_ms=0)),
        update(lsa(adjacencies=adjacencies(MAX_ADJACENCIES), prefixes=prefixes(MAX_PREFIXES))),
        update(*[lsa()] * MAX_LSAS_PER_UPDATE),
        ack(*[header(sequence=MAX_SEQUENCE, lifetime_ms=MAX_LIFETIME_MS)] * MAX_HEADERS_PER_ACK),
        hello(hello_ms=MAX_DEAD_INTERVAL_MS - 1, dead_ms=MAX_DEAD_INTERVAL_MS),
        hello(neighbors=ids(MAX_NEIGHBORS_PER_HELLO), interface="e" * 64),
    ],
)
def test_fields_at_their_bounds_are_accepted(message):
    assert decode_packet(encode_packet(message)) == message


def test_the_packer_never_fills_an_update_or_ack_past_the_decoders_counts():
    smallest_lsas = [dmsc_pb2.LinkStateAdvertisement(originator="a", sequence=1)] * 2000
    smallest_headers = [dmsc_pb2.LsaHeader(originator="a", sequence=1)] * 2000
    assert max(len(chunk) for chunk in _chunks(smallest_lsas)) <= MAX_LSAS_PER_UPDATE
    assert max(len(chunk) for chunk in _chunks(smallest_headers)) <= MAX_HEADERS_PER_ACK


def test_timers_at_their_largest_give_hellos_and_lsas_that_neighbors_accept(spa):
    timers = LinkStateTimers(
        hello_interval=MAX_DEAD_INTERVAL_MS / 1000 - 0.001,
        dead_interval=MAX_DEAD_INTERVAL_MS / 1000,
        lsa_lifetime=MAX_LIFETIME_MS / 1000,
        lsa_refresh=MAX_LIFETIME_MS / 2000,
    )
    router = LinkStateRouter("a", spa.verifier, timers, now=0.0)
    router.add_interface("e" * 15, 10, 0.0)
    router.handle_timer(0.0)
    sent = [decode_packet(data) for _, data in router.datagrams_to_send()]
    assert {p.WhichOneof("body") for p in sent} == {"hello"}
    assert router.lsdb.get("a").lsa.lifetime_ms == MAX_LIFETIME_MS
    decode_packet(encode_packet(update(router.lsdb.get("a").wire_copy(0.0))))


@pytest.mark.parametrize(
    ("timers", "rule"),
    [
        ({"dead_interval": 600.001}, "dead_interval <= 600 s"),
        ({"hello_interval": 0.0004, "dead_interval": 1.0}, "1 ms <= hello_interval"),
        ({"hello_interval": 1.0001, "dead_interval": 1.0009}, "dead_interval <= 600 s in whole ms"),
        ({"lsa_lifetime": 3600.001, "lsa_refresh": 900.0}, "lsa_lifetime <= 3600 s"),
        ({"lsa_lifetime": 0.0009, "lsa_refresh": 0.0001}, "1 ms <= lsa_lifetime"),
    ],
)
def test_timers_the_wire_could_not_carry_are_refused(timers, rule):
    with pytest.raises(ConfigError, match=rule):
        LinkStateTimers(**timers)
