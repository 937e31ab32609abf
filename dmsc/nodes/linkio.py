"""The sockets of a node program: link-state UDP per interface, and carrier changes by netlink."""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from dmsc.proto.codec import ALL_DMSC_ROUTERS, LINK_STATE_UDP_PORT

SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
RTMGRP_LINK = 1
RTM_NEWLINK, RTM_DELLINK = 16, 17
IFF_UP, IFF_LOWER_UP = 0x1, 0x10000
_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
MAX_DATAGRAM = 65535


def open_link_state_socket(interface: str) -> socket.socket:
    """A UDP socket for type 2 signalling on one interface: bound to it, in the DMSC group."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        index = socket.if_nametoindex(interface)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
        sock.bind(("::", LINK_STATE_UDP_PORT))
        group = socket.inet_pton(socket.AF_INET6, ALL_DMSC_ROUTERS) + struct.pack("@I", index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        # 255, as a receiver can check that a packet never crossed a router (RFC 5082, GTSM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        enable_arrival_details(sock)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


#: what every type 2 datagram must show on arrival (RFC 5082, GTSM): sent with hop limit 255
#: by a neighbour on the link, from its link-local address
SIGNALLING_HOP_LIMIT = 255
_LINK_LOCAL = ipaddress.IPv6Network("fe80::/10")
_GROUP = ipaddress.IPv6Address(ALL_DMSC_ROUTERS)


def enable_arrival_details(sock: socket.socket) -> None:
    """Ask the kernel for each datagram's destination and hop limit (for the GTSM check)."""
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)


@dataclass(frozen=True)
class Arrival:
    """Where a datagram came from and to, and with which hop limit."""

    source: str
    destination: str | None
    hop_limit: int | None


def arrival_of(address, ancillary) -> Arrival:
    destination = hop_limit = None
    for level, kind, data in ancillary:
        if level != socket.IPPROTO_IPV6:
            continue
        if kind == socket.IPV6_PKTINFO and len(data) >= 16:
            destination = socket.inet_ntop(socket.AF_INET6, data[:16])
        elif kind == socket.IPV6_HOPLIMIT and len(data) >= 4:
            hop_limit = struct.unpack("@i", data[:4])[0]
    source = str(address[0]).split("%", 1)[0] if address else ""
    return Arrival(source, destination, hop_limit)


def signalling_refusal(arrival: Arrival) -> str | None:
    """Why a datagram cannot be type 2 signalling from a neighbour on this link, or None.

    A tenant's packet, routed to a node address, fails on all three counts: it comes from a
    routable source, to a unicast node address, with a hop limit below 255.
    """
    try:
        source = ipaddress.IPv6Address(arrival.source)
        destination = ipaddress.IPv6Address(arrival.destination or "")
    except ValueError:
        return f"unreadable addresses {arrival.source!r} -> {arrival.destination!r}"
    if source not in _LINK_LOCAL:
        return f"source {source} is not link-local"
    if destination != _GROUP and destination not in _LINK_LOCAL:
        return f"destination {destination} is neither {ALL_DMSC_ROUTERS} nor link-local"
    if arrival.hop_limit != SIGNALLING_HOP_LIMIT:
        return f"hop limit {arrival.hop_limit}, not {SIGNALLING_HOP_LIMIT} (crossed a router)"
    return None


def group_address(interface: str) -> tuple[str, int, int, int]:
    return (ALL_DMSC_ROUTERS, LINK_STATE_UDP_PORT, 0, socket.if_nametoindex(interface))


def hardware_address(interface: str) -> bytes:
    with open(f"/sys/class/net/{interface}/address") as handle:
        return bytes.fromhex(handle.read().strip().replace(":", ""))


def is_up(interface: str) -> bool:
    """Administratively up and carrier present."""
    try:
        with open(f"/sys/class/net/{interface}/operstate") as handle:
            state = handle.read().strip()
        with open(f"/sys/class/net/{interface}/flags") as handle:
            flags = int(handle.read().strip(), 16)
    except OSError:
        return False
    return bool(flags & IFF_UP) and state in ("up", "unknown")


def open_link_monitor() -> socket.socket:
    """A netlink socket that hears every interface state change at once (no polling)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    sock.bind((0, RTMGRP_LINK))
    sock.setblocking(False)
    return sock


@dataclass(frozen=True)
class LinkChange:
    index: int
    up: bool


def parse_link_changes(data: bytes) -> Iterator[LinkChange]:
    """RTM_NEWLINK/RTM_DELLINK messages → (interface index, up and carrier)."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            return
        body = offset + _NLMSGHDR.size
        if kind in (RTM_NEWLINK, RTM_DELLINK) and body + _IFINFOMSG.size <= len(data):
            _, _, index, flags, _ = _IFINFOMSG.unpack_from(data, body)
            up = kind == RTM_NEWLINK and bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP)
            yield LinkChange(index, up)
        offset += (length + 3) & ~3


#: socket option for kernel receive timestamps (struct timespec ancillary data)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def kernel_receive_time(ancillary) -> float | None:
    """The SO_TIMESTAMPNS time in ``recvmsg`` ancillary data: when the datagram reached the
    socket, not when the event loop got round to it. None if absent."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return seconds + nanoseconds / 1e9
    return None
