"""Decoding of DMSC signalling off the wire: bad bytes become a DecodeError, nothing else.

Protobuf accepts many byte strings that are not what the sender meant (unknown fields, missing
fields), so every decoder also checks the meaning: protocol version, a body present, names and
node ids well-formed, lifetimes and costs in range.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message

from dmsc.errors import DecodeError, InvalidName
from dmsc.names import ServiceName
from dmsc.proto import dmsc_pb2

PROTOCOL_VERSION = 1
#: Type 2 signalling: UDP between link-local addresses, sent to a link-scope multicast group.
LINK_STATE_UDP_PORT = 6464
ALL_DMSC_ROUTERS = "ff02::d5c"
#: Type 4 signalling rides in OpenFlow 1.3 EXPERIMENTER messages under this id (not an IEEE
#: OUI; chosen for the testbed), with exp_type 1 = Telemetry, 2 = LsaCopy.
DMSC_EXPERIMENTER_ID = 0x00D5C0DE
EXP_TELEMETRY = 1
EXP_LSA_COPY = 2
MAX_NODE_ID_LENGTH = 64
MAX_COST = 0xFFFFFF  # leaves room to add path costs in 32 bits without overflow concerns


def parse_message(message_type: type[Message], data: bytes, what: str) -> Message:
    """Parse ``data`` as ``message_type``; any failure becomes a DecodeError naming ``what``."""
    message = message_type()
    try:
        message.ParseFromString(bytes(data))
    except (ProtobufDecodeError, ValueError, TypeError, RuntimeWarning) as error:
        raise DecodeError(f"{what}: not a valid {message_type.__name__} ({error})") from None
    return message


def check_node_id(node_id: str, what: str) -> None:
    if not node_id:
        raise DecodeError(f"{what}: empty node id")
    if len(node_id) > MAX_NODE_ID_LENGTH or not node_id.isprintable() or " " in node_id:
        raise DecodeError(f"{what}: bad node id {node_id[:MAX_NODE_ID_LENGTH]!r}")


def check_lsa(lsa: dmsc_pb2.LinkStateAdvertisement, what: str = "LSA") -> None:
    check_node_id(lsa.originator, what)
    where = f"{what} from {lsa.originator} seq {lsa.sequence}"
    if lsa.sequence == 0:
        raise DecodeError(f"{where}: sequence number 0 is reserved")
    for adjacency in lsa.adjacencies:
        check_node_id(adjacency.neighbor, f"{where}: adjacency")
        if not 1 <= adjacency.cost <= MAX_COST:
            raise DecodeError(
                f"{where}: adjacency to {adjacency.neighbor} has cost {adjacency.cost}"
            )
    for prefix in lsa.prefixes:
        try:
            ServiceName.parse(prefix.name)
        except InvalidName as error:
            raise DecodeError(f"{where}: {error}") from None


def check_packet(packet: dmsc_pb2.LinkStatePacket) -> None:
    if packet.version != PROTOCOL_VERSION:
        raise DecodeError(
            f"link-state packet: version {packet.version}, expected {PROTOCOL_VERSION}"
        )
    check_node_id(packet.sender, "link-state packet sender")
    body = packet.WhichOneof("body")
    if body is None:
        raise DecodeError(f"link-state packet from {packet.sender}: no hello, update or ack")
    if body == "hello":
        hello = packet.hello
        if not 0 < hello.hello_interval_ms < hello.dead_interval_ms:
            raise DecodeError(
                f"hello from {packet.sender}: intervals hello={hello.hello_interval_ms} ms "
                f"dead={hello.dead_interval_ms} ms (need 0 < hello < dead)"
            )
        for neighbor in hello.neighbors:
            check_node_id(neighbor, f"hello from {packet.sender}: neighbor")
        if len(hello.hardware_address) not in (0, 6):
            raise DecodeError(
                f"hello from {packet.sender}: hardware address of "
                f"{len(hello.hardware_address)} bytes (need 6)"
            )
    elif body == "update":
        for lsa in packet.update.lsas:
            check_lsa(lsa, f"update from {packet.sender}: LSA")
    else:
        for header in packet.ack.headers:
            check_node_id(header.originator, f"ack from {packet.sender}")


def decode_packet(data: bytes) -> dmsc_pb2.LinkStatePacket:
    """Bytes of one UDP datagram → a checked LinkStatePacket, or DecodeError."""
    packet = parse_message(dmsc_pb2.LinkStatePacket, data, "link-state packet")
    check_packet(packet)
    return packet


def encode_packet(packet: dmsc_pb2.LinkStatePacket) -> bytes:
    return packet.SerializeToString()
