"""ICMPv6 errors a forwarder sends (RFC 4443): Time Exceeded and Destination Unreachable.

Pure functions over bytes plus a token bucket that takes the time as an argument. Only the slow
path calls them (a packet that is not forwarded), so clarity wins over speed here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ETH_HEADER = 14
IPV6_HEADER = 40
ICMPV6 = 58
MIN_MTU = 1280  # RFC 4443 2.4 (c): an error quotes as much as fits in the minimum MTU
MAX_QUOTE = MIN_MTU - IPV6_HEADER - 8
ERROR_HOP_LIMIT = 64

TIME_EXCEEDED = 3  # code 0: hop limit exceeded in transit
DESTINATION_UNREACHABLE = 1  # code 0: no route to destination

# Extension headers walked to find the upper layer (RFC 8200 4.1); fragment (44) is fixed-size.
_EXTENSION_HEADERS = frozenset({0, 43, 60})
_FRAGMENT = 44


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmpv6_checksum(source: bytes, destination: bytes, message: bytes) -> int:
    """Checksum of an ICMPv6 message over the IPv6 pseudo-header (RFC 8200 8.1)."""
    pseudo = source + destination + struct.pack("!I3xB", len(message), ICMPV6)
    return checksum(pseudo + message)


def upper_layer(packet: bytes | memoryview) -> tuple[int, int] | None:
    """(next header, offset) of the upper-layer header of an IPv6 packet; None if truncated.

    Walks hop-by-hop, routing, destination-options and fragment headers. A non-first fragment
    reports its next header at the fragment payload's offset (its content is not a header).
    """
    next_header, offset = packet[6], IPV6_HEADER
    while next_header in _EXTENSION_HEADERS or next_header == _FRAGMENT:
        if offset + 8 > len(packet):
            return None
        following = packet[offset]
        offset += 8 if next_header == _FRAGMENT else (packet[offset + 1] + 1) * 8
        next_header = following
    return next_header, offset


def may_send_error_about(frame: bytes | memoryview) -> bool:
    """False for what RFC 4443 2.4 (e) forbids errors about: ICMPv6 errors, multicast.

    The frame is a well-formed Ethernet + IPv6 frame (the decision checked that).
    """
    if frame[0] & 1:  # link-layer multicast or broadcast
        return False
    packet = frame[ETH_HEADER:]
    if packet[24] == 0xFF or packet[8] == 0xFF:  # multicast destination or source
        return False
    if not any(packet[8:24]):  # unspecified source: nobody to tell
        return False
    found = upper_layer(packet)
    if found is None:
        return False
    next_header, offset = found
    if next_header == ICMPV6:
        # Type < 128 is an error message; an unreadable type is treated as one.
        return offset < len(packet) and packet[offset] >= 128
    return True


def error_frame(
    frame: bytes | memoryview, port_mac: bytes, source: bytes, icmp_type: int, code: int
) -> bytes:
    """An Ethernet frame carrying an ICMPv6 error about ``frame``, back toward its sender.

    ``port_mac``: the MAC of the port the frame came in on (the error leaves by it);
    ``source``: the node's own 16-byte address. The quote is the offending IPv6 packet, cut so
    the error fits in 1280 bytes.
    """
    packet = bytes(frame[ETH_HEADER:])
    payload_length = packet[4] << 8 | packet[5]
    quote = packet[: min(IPV6_HEADER + payload_length, MAX_QUOTE)]
    destination = packet[8:24]
    unsummed = struct.pack("!BBHI", icmp_type, code, 0, 0) + quote
    summed = icmpv6_checksum(source, destination, unsummed)
    message = struct.pack("!BBHI", icmp_type, code, summed, 0) + quote
    ip = struct.pack("!IHBB", 6 << 28, len(message), ICMPV6, ERROR_HOP_LIMIT)
    ethernet = bytes(frame[6:12]) + port_mac + b"\x86\xdd"
    return ethernet + ip + source + destination + message


@dataclass
class TokenBucket:
    """At most ``rate`` tokens a second, bursts of ``burst``; time is passed in (seconds)."""

    rate: float
    burst: float
    tokens: float = -1.0  # -1: full at the first call
    last: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.last = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
