"""Scapy layers for DMSC type 2 signalling (hello, LSA update, acknowledgement).

One UDP datagram to or from port 6464 carries one protobuf ``LinkStatePacket``. Scapy has no
protobuf fields, so the ``DMSC`` layer keeps the datagram in a single field, byte for byte as it
was on the wire (dissecting and rebuilding never changes it), and shows it through the nodes' own
decoder, :func:`dmsc.proto.codec.decode_packet`: what scapy renders is exactly what a node would
accept, and what a node would drop shows as *malformed*, with the decoder's reason. Rendering
never raises, so a bad datagram cannot break ``sniff``, ``rdpcap`` or ``show()``::

    >>> frame = dmsc_frame(packet, "02:00:00:00:00:01", eui64_link_local("02:00:00:00:00:01"))
    >>> Ether(bytes(frame)).summary()
    'Ether / IPv6 / UDP / DMSC hello from sr1: eth0, neighbors [sg1 sg2]'
    >>> Ether(bytes(frame))[DMSC].show()

Importing this module binds the layer (``bind_layers``), as scapy's own contrib modules do.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from scapy.fields import StrField
from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6, in6_getnsmac
from scapy.layers.l2 import Ether
from scapy.packet import Packet, bind_layers
from scapy.utils6 import in6_ismaddr, in6_mactoifaceid

from dmsc.errors import ConfigError, DecodeError
from dmsc.names import name_prefix
from dmsc.proto import dmsc_pb2
from dmsc.proto.codec import ALL_DMSC_ROUTERS, LINK_STATE_UDP_PORT, decode_packet
from dmsc.spa.claims import open_attestation

#: Link-local signalling is sent with the highest hop limit, so a receiver can require 255 to be
#: sure the datagram came from the link itself (GTSM, RFC 5082; NDP does the same).
SIGNALLING_HOP_LIMIT = 255
SHOW_NAME_WIDTH = 10  # scapy pads field names to 10 columns in show()
MAX_LISTED = 6  # LSAs or headers named in a one-line summary before "+N more"


# ---------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class Decoded:
    """A datagram through the node's decoder: the message, or why a node would drop it."""

    message: dmsc_pb2.LinkStatePacket | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.message is not None


def decode_datagram(data: bytes) -> Decoded:
    """Never raises for bad bytes: a DecodeError becomes ``Decoded(None, reason)``."""
    try:
        return Decoded(decode_packet(bytes(data)))
    except DecodeError as error:
        return Decoded(None, str(error))


# ---------------------------------------------------------------------- rendering


def describe(message: dmsc_pb2.LinkStatePacket) -> list[str]:
    """A checked message as readable lines: a headline, then its body indented."""
    body = message.WhichOneof("body")
    headline, lines = _BODY_RENDERERS[body](message)
    return [headline, *(f"  {line}" for line in lines)]


def describe_data(data: bytes) -> list[str]:
    """Lines for a datagram as it came off the wire, malformed or not."""
    decoded = decode_datagram(data)
    if decoded.message is None:
        return [f"MALFORMED DMSC ({len(data)} bytes): {decoded.error}"]
    return describe(decoded.message)


def summarize(data: bytes) -> str:
    """One line for a datagram: what ``pkt.summary()`` and ``sniff(prn=...)`` show."""
    decoded = decode_datagram(data)
    if decoded.message is None:
        return f"DMSC malformed: {decoded.error}"
    message = decoded.message
    body = message.WhichOneof("body")
    return f"DMSC {body} from {message.sender}: {_SUMMARIES[body](message)}"


def _hello(message: dmsc_pb2.LinkStatePacket) -> tuple[str, list[str]]:
    hello = message.hello
    neighbors = " ".join(hello.neighbors) or "(none heard yet)"
    return f"HELLO from {message.sender} on {hello.interface or '?'}", [
        f"hello every {_ms(hello.hello_interval_ms)}, dead after {_ms(hello.dead_interval_ms)}",
        f"neighbors heard: {neighbors}",
    ]


def _update(message: dmsc_pb2.LinkStatePacket) -> tuple[str, list[str]]:
    lsas = message.update.lsas
    lines = [line for lsa in lsas for line in _lsa_lines(lsa)]
    return f"UPDATE from {message.sender}: {_count(len(lsas), 'LSA')}", lines


def _ack(message: dmsc_pb2.LinkStatePacket) -> tuple[str, list[str]]:
    headers = message.ack.headers
    lines = [f"acknowledges {_header(h)}" for h in headers]
    return f"ACK from {message.sender}: {_count(len(headers), 'LSA')}", lines


_BODY_RENDERERS: dict[str, Callable] = {"hello": _hello, "update": _update, "ack": _ack}


def _lsa_lines(lsa: dmsc_pb2.LinkStateAdvertisement) -> list[str]:
    lines = [f"LSA {_header(lsa)}"]
    adjacencies = ", ".join(f"{a.neighbor} (cost {a.cost})" for a in lsa.adjacencies)
    lines.append(f"  adjacencies: {adjacencies or '(none)'}")
    if not lsa.prefixes:
        lines.append("  prefixes: (none)")
    for prefix in lsa.prefixes:
        lines.append(f"  prefix {prefix.name}  {name_prefix(prefix.name)}")
        lines.append(f"    {_attestation_text(prefix.attestation)}")
    return lines


def _attestation_text(attestation: dmsc_pb2.Attestation) -> str:
    """Who the SPA says owns the prefix. Not verified here: a capture holds no trust anchors."""
    try:
        body = open_attestation(attestation)
    except DecodeError as error:
        return f"attestation: undecodable ({error})"
    expires = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(_finite(body.expires_at)))
    return (
        f"SPA {body.spa_key_id or '?'}: {body.pod_id or '?'} via {body.sg_node_id or '?'}, "
        f"until {expires} (unverified)"
    )


def _header(lsa: dmsc_pb2.LinkStateAdvertisement | dmsc_pb2.LsaHeader) -> str:
    life = "PURGE (lifetime 0)" if lsa.lifetime_ms == 0 else f"lifetime {_ms(lsa.lifetime_ms)}"
    return f"{lsa.originator} seq {lsa.sequence}, {life}"


def _hello_summary(message: dmsc_pb2.LinkStatePacket) -> str:
    hello = message.hello
    return f"{hello.interface or '?'}, neighbors [{' '.join(hello.neighbors)}]"


def _listed(items: list[str]) -> str:
    shown = items[:MAX_LISTED]
    more = f" +{len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return " ".join(shown) + more


def _update_summary(message: dmsc_pb2.LinkStatePacket) -> str:
    items = []
    for lsa in message.update.lsas:
        names = ",".join(p.name for p in lsa.prefixes)
        purge = " purge" if lsa.lifetime_ms == 0 else ""
        items.append(f"{lsa.originator}#{lsa.sequence}{purge}" + (f"[{names}]" if names else ""))
    return _listed(items)


def _ack_summary(message: dmsc_pb2.LinkStatePacket) -> str:
    return _listed([f"{h.originator}#{h.sequence}" for h in message.ack.headers])


_SUMMARIES: dict[str, Callable] = {
    "hello": _hello_summary,
    "update": _update_summary,
    "ack": _ack_summary,
}


def _ms(milliseconds: int) -> str:
    """Seconds to the millisecond, without trailing zeros: ``1 s``, ``1799.996 s``."""
    return f"{milliseconds / 1000:.3f}".rstrip("0").rstrip(".") + " s"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _finite(seconds: float) -> float:
    """A timestamp gmtime accepts (a forged attestation may carry nan or 1e300)."""
    return min(max(seconds, 0.0), 253402300799.0) if seconds == seconds else 0.0


# ---------------------------------------------------------------------- the layer


class LinkStatePacketField(StrField):
    """The whole datagram, kept as bytes; ``show()`` renders it decoded, line by line."""

    def i2repr(self, pkt: Packet | None, value: bytes) -> str:
        # show() indents continuation lines by the name's length, not its padded width
        pad = " " * max(0, SHOW_NAME_WIDTH - len(self.name))
        return f"\n{pad}".join(describe_data(value or b""))


class DMSC(Packet):
    """DMSC type 2 signalling: one protobuf ``LinkStatePacket`` per UDP datagram."""

    name = "DMSC link-state"
    fields_desc = [LinkStatePacketField("message", b"")]  # noqa: RUF012 (scapy reads it)

    def decoded(self) -> Decoded:
        return decode_datagram(self.message or b"")

    def mysummary(self) -> str:
        return summarize(self.message or b"")


bind_layers(UDP, DMSC, dport=LINK_STATE_UDP_PORT)
bind_layers(UDP, DMSC, sport=LINK_STATE_UDP_PORT)


# ---------------------------------------------------------------------- building frames


def eui64_link_local(mac: str) -> str:
    """The IPv6 link-local address an interface with ``mac`` forms (modified EUI-64)."""
    return str(ipaddress.IPv6Address("fe80::" + in6_mactoifaceid(mac)))


def multicast_mac(address: str) -> str:
    """The Ethernet group address of an IPv6 multicast address (33:33 + its low 32 bits)."""
    return in6_getnsmac(socket.inet_pton(socket.AF_INET6, address))


def dmsc_frame(
    packet: dmsc_pb2.LinkStatePacket | bytes,
    src_mac: str,
    src_ll: str,
    iface_dst: str = ALL_DMSC_ROUTERS,
    dst_mac: str | None = None,
    hop_limit: int = SIGNALLING_HOP_LIMIT,
) -> Packet:
    """An Ethernet/IPv6/UDP/DMSC frame as a node sends it: from its link-local address and port
    6464 to ``iface_dst`` (all DMSC routers on the link by default), hop limit 255 by default.

    ``packet`` may be raw bytes, to build malformed datagrams. A unicast ``iface_dst`` needs
    the neighbor's ``dst_mac``; a multicast one maps to its 33:33 group address.
    """
    data = packet if isinstance(packet, bytes) else packet.SerializeToString()
    if dst_mac is None:
        if not in6_ismaddr(iface_dst):
            raise ConfigError(f"DMSC frame to unicast {iface_dst}: give the neighbor's dst_mac")
        dst_mac = multicast_mac(iface_dst)
    return (
        Ether(src=src_mac, dst=dst_mac)
        / IPv6(src=src_ll, dst=iface_dst, hlim=hop_limit)
        / UDP(sport=LINK_STATE_UDP_PORT, dport=LINK_STATE_UDP_PORT)
        / DMSC(message=data)
    )
