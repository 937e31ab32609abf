import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmsc.errors import DecodeError
from dmsc.proto import dmsc_pb2
from dmsc.proto.codec import PROTOCOL_VERSION, decode_packet, encode_packet


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
