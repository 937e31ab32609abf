"""The per-packet decision, with no I/O: frame bytes + tables -> action.

Offsets in an Ethernet frame carrying IPv6 (no VLAN tag)::

    0  dst MAC   6  src MAC   12  EtherType 0x86dd
    14 version/class/flow   18 payload length   20 next header   21 hop limit
    22 source address (16)  38 destination address (16)   54 upper layer (TCP/UDP ports)

:func:`decide` returns one of the action tuples of :mod:`dmsc.dataplane.tables` — for a
forwarded packet, a tuple built when the tables were compiled, so deciding allocates nothing but
the destination int. :class:`Dataplane` wraps it with the counters and the ICMPv6 errors (token
bucket, time passed in): what tests drive, and what the I/O loop calls for every packet that is
not simply forwarded.
"""

from __future__ import annotations

import struct

from dmsc.dataplane import icmp
from dmsc.dataplane.tables import (
    DROP_ACTION,
    FORWARD,
    ICMP_ERROR,
    TO_KERNEL,
    CompiledTables,
    Counters,
    DropReason,
    Tables,
    compile_tables,
)

MIN_FRAME = 54  # Ethernet + IPv6 headers
_TWO_U64 = struct.Struct(">QQ").unpack_from  # an address as two ints: 2x faster than from_bytes
TCP, UDP = 6, 17

KERNEL = (TO_KERNEL,)
MALFORMED = (DROP_ACTION, DropReason.MALFORMED, None)
SCOPE = (DROP_ACTION, DropReason.SCOPE, None)
#: (ICMP_ERROR, drop reason, ICMPv6 type, code)
NO_ROUTE = (ICMP_ERROR, DropReason.NO_ROUTE, icmp.DESTINATION_UNREACHABLE, 0)
TIME_EXCEEDED = (ICMP_ERROR, DropReason.HOP_LIMIT, icmp.TIME_EXCEEDED, 0)


def flow_hash(frame: bytes | memoryview, destination: int) -> int:
    """A stable hash of (source, destination, next header, TCP/UDP ports): one path per flow.

    Python's hash of a tuple of ints is deterministic (no per-process seed) and well mixed.
    """
    next_header = frame[20]
    ports = int.from_bytes(frame[54:58], "big") if next_header in (TCP, UDP) else 0
    source = int.from_bytes(frame[22:38], "big")
    return hash((source, destination, next_header, ports)) & 0x7FFF_FFFF_FFFF_FFFF


def _match_policy(frame: bytes | memoryview, destination: int, tables: CompiledTables):
    source = int.from_bytes(frame[22:38], "big")
    for policy in tables.policies:
        if (
            destination & policy.dst_mask == policy.dst_value
            and source & policy.src_mask == policy.src_value
        ):
            return policy.action
    return None


def decide(frame: bytes | memoryview, in_port: int, tables: CompiledTables) -> tuple:
    """What to do with one frame received on port ``in_port``. Never raises on any bytes.

    Left to the kernel: non-IPv6, link-local or multicast destination, one of our addresses,
    or a frame not sent to this port's MAC. Then policies (highest priority first), then the
    FIB's longest match, then the hop limit, then ECMP.
    """
    # One flat function on purpose: it runs for every packet, and a helper call costs more
    # than most of the checks it would hide.
    length = len(frame)
    if length < 14:
        return MALFORMED
    if frame[12] != 0x86 or frame[13] != 0xDD:
        return KERNEL
    if length < MIN_FRAME or frame[14] >> 4 != 6:
        return MALFORMED
    if MIN_FRAME + (frame[18] << 8 | frame[19]) > length:  # truncated (padding may follow)
        return MALFORMED
    first = frame[38]
    if first == 0xFF or (first == 0xFE and frame[39] & 0xC0 == 0x80):
        return KERNEL
    if frame[0:6] != tables.port_macs[in_port]:
        return KERNEL
    high, low = _TWO_U64(frame, 38)
    destination = high << 64 | low
    if destination in tables.own:
        return KERNEL
    first = frame[22]
    if first == 0xFF or (first == 0xFE and frame[23] & 0xC0 == 0x80):
        return SCOPE  # multicast or link-local source: never forwarded
    if not first and not any(frame[22:38]):
        return SCOPE  # unspecified source
    if tables.policies:
        action = _match_policy(frame, destination, tables)
        if action is not None:
            if action[0] == FORWARD and frame[21] <= 1:
                return TIME_EXCEEDED
            return action
    route = tables.routes.lookup_int(destination)
    if route is None:
        return NO_ROUTE
    if frame[21] <= 1:
        return TIME_EXCEEDED
    hops = route.hops
    if len(hops) == 1:
        return hops[0]
    return hops[flow_hash(frame, destination) % len(hops)]


def rewrite(buffer: bytearray | memoryview, action: tuple) -> None:
    """Apply a FORWARD action in place: new Ethernet dst/src, hop limit - 1.

    IPv6 has no header checksum and TCP/UDP checksums do not cover the hop limit.
    """
    buffer[0:12] = action[2]
    buffer[21] -= 1


def forwarded(frame: bytes | memoryview, action: tuple) -> bytes:
    """The frame as it leaves for a FORWARD action (a copy; the loop rewrites in place)."""
    buffer = bytearray(frame)
    rewrite(buffer, action)
    return bytes(buffer)


class Dataplane:
    """Decision + counters + ICMPv6 errors for one forwarder, sans I/O.

    ``handle(frame, in_port, now)`` returns the frames to send as ``(port, bytes)``. The I/O
    loop inlines the forward case for speed and calls :meth:`other` for everything else, so the
    two count alike.
    """

    def __init__(self, tables: Tables, icmp_rate: float = 100.0, icmp_burst: float = 20.0):
        self.counters = Counters()
        self.icmp_bucket = icmp.TokenBucket(icmp_rate, icmp_burst)
        self.compiled = compile_tables(tables, self.counters)

    def set_tables(self, tables: Tables) -> CompiledTables:
        """Compile and swap (one reference assignment: safe while a loop reads it)."""
        self.compiled = compiled = compile_tables(tables, self.counters)
        return compiled

    def handle(
        self, frame: bytes | memoryview, in_port: int, now: float
    ) -> list[tuple[int, bytes]]:
        port = self.counters.ports[in_port]
        port.rx_packets += 1
        port.rx_bytes += len(frame)
        action = decide(frame, in_port, self.compiled)
        if action[0] != FORWARD:
            error = self.other(action, frame, in_port, now)
            return [error] if error is not None else []
        out = self.counters.ports[action[1]]
        out.tx_packets += 1
        out.tx_bytes += len(frame)
        stats = action[3]
        stats[0] += 1
        stats[1] += len(frame)
        return [(action[1], forwarded(frame, action))]

    def originate(self, packet: bytes) -> tuple[int, bytes] | None:
        """Route an IPv6 packet this node sends itself (the SG's probes): policies, then the
        FIB, then ECMP, as for a forwarded packet, but no hop-limit decrement and no ICMP
        error. Returns the frame to send as ``(port, bytes)``; None when nothing routes it."""
        if len(packet) < MIN_FRAME - 14 or packet[0] >> 4 != 6:
            raise ValueError("originate: not an IPv6 packet")
        tables = self.compiled
        frame = bytearray(12) + b"\x86\xdd" + packet
        high, low = _TWO_U64(frame, 38)
        destination = high << 64 | low
        action = _match_policy(frame, destination, tables) if tables.policies else None
        if action is None:
            route = tables.routes.lookup_int(destination)
            if route is None:
                return None
            hops = route.hops
            action = hops[0] if len(hops) == 1 else hops[flow_hash(frame, destination) % len(hops)]
        if action[0] != FORWARD:
            return None  # a drop policy
        frame[0:12] = action[2]
        out = self.counters.ports[action[1]]
        out.tx_packets += 1
        out.tx_bytes += len(frame)
        action[3][0] += 1
        action[3][1] += len(frame)
        return action[1], bytes(frame)

    def other(
        self, action: tuple, frame: bytes | memoryview, in_port: int, now: float
    ) -> tuple[int, bytes] | None:
        """Count a frame that is not forwarded; the ICMPv6 error to send back, if any."""
        port = self.counters.ports[in_port]
        kind = action[0]
        if kind == TO_KERNEL:
            port.to_kernel += 1
            return None
        port.drops[action[1]] += 1
        if kind == DROP_ACTION:
            stats = action[2]
            if stats is not None:
                stats[0] += 1
                stats[1] += len(frame)
            return None
        return self._icmp_error(action, frame, in_port, now)

    def _icmp_error(
        self, action: tuple, frame: bytes | memoryview, in_port: int, now: float
    ) -> tuple[int, bytes] | None:
        tables = self.compiled
        if tables.source is None or not icmp.may_send_error_about(frame):
            return None
        if not self.icmp_bucket.take(now):
            self.counters.ports[in_port].drops[DropReason.ICMP_RATE] += 1
            return None
        mac = tables.port_macs[in_port]
        reply = icmp.error_frame(frame, mac, tables.source, action[2], action[3])
        out = self.counters.ports[in_port]
        out.tx_packets += 1
        out.tx_bytes += len(reply)
        return in_port, reply
