"""Decoding of DMSC signalling off the wire: bad bytes become a DecodeError, nothing else.

Protobuf accepts many byte strings that are not what the sender meant (unknown fields, missing
fields), so every decoder also checks the meaning: protocol version, a body present, names and
node ids well-formed, and every number and count within a named bound (below), so no field can
pin state for longer, or cost more work, than the protocol ever needs.
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
MAX_INTERFACE_NAME_LENGTH = 64  # informative in hellos; Linux allows 15 characters
MAX_COST = 0xFFFFFF  # leaves room to add path costs in 32 bits without overflow concerns
#: Highest LSA sequence number (RFC 2328's MaxSequenceNumber, in 64 bits). Signed 64-bit, so
#: every tool that records it (sqlite, pandas, Wireshark's int64) reads it right; at one
#: origination per min_lsa_interval it is never reached honestly. An originator that must go
#: past it purges its LSA and starts again at 1 (``LinkStateRouter._wrap_sequence``).
MAX_SEQUENCE = 2**63 - 1
#: Longest LSA lifetime on the wire: OSPF's MaxAge (3600 s), twice our default lsa_lifetime. Fixed
#: rather than taken from any node's timers so every node applies the same bound; it caps how
#: long an LSA outlives a silent originator, since only its originator may purge it early.
MAX_LIFETIME_MS = 3_600_000
#: Longest dead interval a hello may ask for: 10 min, three times the slowest baseline (NLSR's
#: 180 s), so a single hello cannot keep a neighbor up for the 49 days a uint32 of ms allows.
MAX_DEAD_INTERVAL_MS = 600_000
#: Counts per message, bounding the work (parsing, signature checks, SPF, RIB) one datagram can
#: cause. A sender packs updates and acks into MAX_PACKET_BYTES (1.3 kB): even the smallest LSAs
#: or headers stay below 150 per packet. A hello lists the neighbors on one link. Adjacencies:
#: twenty times the highest degree in the Topology Zoo (54). Prefixes: more than one datagram
#: can carry with their SPA attestations (~150 bytes each).
MAX_LSAS_PER_UPDATE = 256
MAX_HEADERS_PER_ACK = 256
MAX_NEIGHBORS_PER_HELLO = 256
MAX_ADJACENCIES = 1024
MAX_PREFIXES = 1024


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


def check_count(count: int, limit: int, what: str) -> None:
    if count > limit:
        raise DecodeError(f"{what}: {count}, more than the limit of {limit}")


def check_sequence_and_lifetime(sequence: int, lifetime_ms: int, where: str) -> None:
    """Shared by LSAs and the headers that acknowledge them."""
    if sequence == 0:
        raise DecodeError(f"{where}: sequence number 0 is reserved")
    if sequence > MAX_SEQUENCE:
        raise DecodeError(f"{where}: sequence number above MAX_SEQUENCE ({MAX_SEQUENCE})")
    if lifetime_ms > MAX_LIFETIME_MS:
        raise DecodeError(
            f"{where}: lifetime_ms {lifetime_ms} above MAX_LIFETIME_MS ({MAX_LIFETIME_MS})"
        )


def check_lsa(lsa: dmsc_pb2.LinkStateAdvertisement, what: str = "LSA") -> None:
    check_node_id(lsa.originator, what)
    where = f"{what} from {lsa.originator} seq {lsa.sequence}"
    check_sequence_and_lifetime(lsa.sequence, lsa.lifetime_ms, where)
    check_count(len(lsa.adjacencies), MAX_ADJACENCIES, f"{where}: adjacencies")
    check_count(len(lsa.prefixes), MAX_PREFIXES, f"{where}: prefixes")
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
        if hello.dead_interval_ms > MAX_DEAD_INTERVAL_MS:
            raise DecodeError(
                f"hello from {packet.sender}: dead_interval_ms {hello.dead_interval_ms} above "
                f"MAX_DEAD_INTERVAL_MS ({MAX_DEAD_INTERVAL_MS})"
            )
        if len(hello.interface) > MAX_INTERFACE_NAME_LENGTH:
            raise DecodeError(
                f"hello from {packet.sender}: interface name of {len(hello.interface)} "
                f"characters (at most {MAX_INTERFACE_NAME_LENGTH})"
            )
        check_count(
            len(hello.neighbors), MAX_NEIGHBORS_PER_HELLO, f"hello from {packet.sender}: neighbors"
        )
        for neighbor in hello.neighbors:
            check_node_id(neighbor, f"hello from {packet.sender}: neighbor")
        if len(hello.hardware_address) not in (0, 6):
            raise DecodeError(
                f"hello from {packet.sender}: hardware address of "
                f"{len(hello.hardware_address)} bytes (need 6)"
            )
    elif body == "update":
        lsas = packet.update.lsas
        check_count(len(lsas), MAX_LSAS_PER_UPDATE, f"update from {packet.sender}: LSAs")
        for lsa in lsas:
            check_lsa(lsa, f"update from {packet.sender}: LSA")
    else:
        headers = packet.ack.headers
        check_count(len(headers), MAX_HEADERS_PER_ACK, f"ack from {packet.sender}: headers")
        for header in headers:
            check_node_id(header.originator, f"ack from {packet.sender}")
            where = f"ack from {packet.sender}: header of {header.originator} seq {header.sequence}"
            check_sequence_and_lifetime(header.sequence, header.lifetime_ms, where)


def decode_packet(data: bytes) -> dmsc_pb2.LinkStatePacket:
    """Bytes of one UDP datagram → a checked LinkStatePacket, or DecodeError."""
    packet = parse_message(dmsc_pb2.LinkStatePacket, data, "link-state packet")
    check_packet(packet)
    return packet


def encode_packet(packet: dmsc_pb2.LinkStatePacket) -> bytes:
    return packet.SerializeToString()
