"""STAMP test packets (RFC 8762, unauthenticated mode) and a sans-I/O sender and reflector.

An SG probes each target instance with small UDP packets; the pod runtime's reflector stamps
and returns them. Nothing here touches a socket or a clock: callers pass the bytes they got and
the time they got them, and send what they are given.

Wire formats (all fields big-endian, 44 octets each way, so the reply is as long as the test)::

    sender (§4.2.1)                       reflector (§4.3.1)
     0  sequence number        (4)         0  sequence number                 (4)
     4  timestamp, NTP         (8)         4  timestamp, NTP (reply sent)     (8)
    12  error estimate         (2)        12  error estimate (2)   MBZ (2)
    14  MBZ                   (30)        16  receive timestamp, NTP          (8)
                                          24  sender sequence number          (4)
                                          28  sender timestamp                (8)
                                          36  sender error estimate (2) MBZ (2)
                                          40  sender TTL (1)       MBZ (3)

The error estimate is RFC 4656 §4.1.2: S (clock synchronized), Z (0 = NTP format), a 6-bit
scale and an 8-bit multiplier; the error is ``multiplier * 2**(scale - 32)`` seconds. MBZ octets
are sent as zero and ignored on receipt (RFC 8972 puts a session id and TLVs there). We refuse
PTP timestamps (Z = 1), a zero multiplier (RFC 4656 forbids it) and any length but 44: both
ends are ours, and a longer packet would carry RFC 8972 TLVs we do not implement.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from dataclasses import dataclass

from dmsc.errors import DecodeError

#: The IANA port of STAMP (RFC 8762 §4.1); the reflector listens here.
STAMP_PORT = 862
PACKET_SIZE = 44
#: Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
NTP_UNIX_OFFSET = 2_208_988_800
NTP_MODULUS = 1 << 64
SEQUENCE_MODULUS = 1 << 32

_SENDER = struct.Struct("!IQH30x")
_REFLECTOR = struct.Struct("!IQH2xQIQH2xB3x")
assert _SENDER.size == _REFLECTOR.size == PACKET_SIZE


# ---------------------------------------------------------------- timestamps


def ntp_from_unix(seconds: float) -> int:
    """The 64-bit NTP timestamp (32.32 fixed point) of a Unix time; wraps at the 2036 era."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"time must be a finite Unix time >= 0, got {seconds!r}")
    whole = math.floor(seconds)
    fraction = round((seconds - whole) * (1 << 32))
    return (((whole + NTP_UNIX_OFFSET) << 32) + fraction) % NTP_MODULUS


def unix_from_ntp(timestamp: int) -> float:
    """The Unix time of an NTP timestamp; seconds with the top bit clear are era 1 (2036-2104),
    as RFC 4330 §3 suggests, so the conversion works on both sides of the 2036 wrap."""
    seconds, fraction = divmod(timestamp, 1 << 32)
    if seconds < 1 << 31:
        seconds += 1 << 32
    return seconds - NTP_UNIX_OFFSET + fraction / (1 << 32)


def ntp_delta(later: int, earlier: int) -> float:
    """``later - earlier`` in seconds, exact to 2**-32 s and correct across the era wrap."""
    difference = (later - earlier + (1 << 63)) % NTP_MODULUS - (1 << 63)
    return difference / (1 << 32)


# ---------------------------------------------------------------- error estimate


@dataclass(frozen=True)
class ErrorEstimate:
    """RFC 4656 §4.1.2, NTP format only. The default claims a synchronized clock (every
    namespace reads the same kernel clock) good to about a microsecond (2**-20 s), which is the
    resolution of a Python float Unix time, not better."""

    synchronized: bool = True
    scale: int = 12
    multiplier: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.scale < 64:
            raise ValueError(f"error estimate scale {self.scale} not in 0..63")
        if not 1 <= self.multiplier <= 255:
            raise ValueError(f"error estimate multiplier {self.multiplier} not in 1..255")

    @property
    def seconds(self) -> float:
        return self.multiplier * 2.0 ** (self.scale - 32)

    def encode(self) -> int:
        return self.synchronized << 15 | self.scale << 8 | self.multiplier

    @classmethod
    def decode(cls, value: int, what: str) -> ErrorEstimate:
        if value & 0x4000:
            raise DecodeError(f"{what}: Z flag set (PTP timestamps are not supported)")
        multiplier = value & 0xFF
        if multiplier == 0:
            raise DecodeError(f"{what}: multiplier 0 (RFC 4656 §4.1.2 forbids it)")
        return cls(bool(value & 0x8000), (value >> 8) & 0x3F, multiplier)


DEFAULT_ERROR = ErrorEstimate()


# ---------------------------------------------------------------- packets


@dataclass(frozen=True)
class SenderPacket:
    """A Session-Sender test packet; ``timestamp`` is 64-bit NTP."""

    sequence: int
    timestamp: int
    error: ErrorEstimate = DEFAULT_ERROR


@dataclass(frozen=True)
class ReflectorPacket:
    """A Session-Reflector reply: its own sequence, send time and error estimate, when it
    received the test packet, and the test packet's sequence, timestamp, error and TTL."""

    sequence: int
    timestamp: int
    receive_timestamp: int
    sender_sequence: int
    sender_timestamp: int
    sender_ttl: int
    error: ErrorEstimate = DEFAULT_ERROR
    sender_error: ErrorEstimate = DEFAULT_ERROR


def _check_range(value: int, bits: int, what: str) -> None:
    if not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ValueError(f"STAMP {what} must be an unsigned {bits}-bit integer, got {value!r}")


def encode_sender_packet(packet: SenderPacket) -> bytes:
    _check_range(packet.sequence, 32, "sequence number")
    _check_range(packet.timestamp, 64, "timestamp")
    return _SENDER.pack(packet.sequence, packet.timestamp, packet.error.encode())


def _check_length(data: bytes, what: str) -> None:
    if len(data) != PACKET_SIZE:
        raise DecodeError(
            f"{what}: {len(data)} octets, expected {PACKET_SIZE} "
            "(unauthenticated RFC 8762 packet without RFC 8972 TLVs)"
        )


def decode_sender_packet(data: bytes) -> SenderPacket:
    """The test packet in ``data``; DecodeError naming the problem if it is not one."""
    what = "STAMP test packet"
    _check_length(data, what)
    sequence, timestamp, error = _SENDER.unpack(data)
    return SenderPacket(sequence, timestamp, ErrorEstimate.decode(error, f"{what}: error estimate"))


def encode_reflector_packet(packet: ReflectorPacket) -> bytes:
    for value, bits, what in (
        (packet.sequence, 32, "sequence number"),
        (packet.timestamp, 64, "timestamp"),
        (packet.receive_timestamp, 64, "receive timestamp"),
        (packet.sender_sequence, 32, "sender sequence number"),
        (packet.sender_timestamp, 64, "sender timestamp"),
        (packet.sender_ttl, 8, "sender TTL"),
    ):
        _check_range(value, bits, what)
    return _REFLECTOR.pack(
        packet.sequence,
        packet.timestamp,
        packet.error.encode(),
        packet.receive_timestamp,
        packet.sender_sequence,
        packet.sender_timestamp,
        packet.sender_error.encode(),
        packet.sender_ttl,
    )


def decode_reflector_packet(data: bytes) -> ReflectorPacket:
    """The reply in ``data``; DecodeError naming the problem if it is not one."""
    what = "STAMP reply"
    _check_length(data, what)
    seq, stamp, error, received, sender_seq, sender_stamp, sender_error, ttl = _REFLECTOR.unpack(
        data
    )
    return ReflectorPacket(
        sequence=seq,
        timestamp=stamp,
        receive_timestamp=received,
        sender_sequence=sender_seq,
        sender_timestamp=sender_stamp,
        sender_ttl=ttl,
        error=ErrorEstimate.decode(error, f"{what}: error estimate"),
        sender_error=ErrorEstimate.decode(sender_error, f"{what}: sender error estimate"),
    )


# ---------------------------------------------------------------- reflector


class Reflector:
    """Stateless Session-Reflector (RFC 8762 §4.3): the reply carries the test packet's own
    sequence number, so the sender can match it without any per-session state here."""

    def __init__(self, error: ErrorEstimate = DEFAULT_ERROR) -> None:
        self.error = error
        self.counters: Counter[str] = Counter()

    def reflect(
        self, packet: bytes, received_at: float, ttl: int = 255, sent_at: float | None = None
    ) -> bytes:
        """The reply to ``packet``, received at ``received_at`` with IP hop limit ``ttl``.

        ``sent_at`` is when the reply leaves (default: ``received_at``; a userspace reflector
        turns a packet around in microseconds). DecodeError, counted, for a bad packet.
        """
        try:
            test = decode_sender_packet(packet)
        except DecodeError:
            self.counters["decode_errors"] += 1
            raise
        reply = ReflectorPacket(
            sequence=test.sequence,
            timestamp=ntp_from_unix(received_at if sent_at is None else sent_at),
            receive_timestamp=ntp_from_unix(received_at),
            sender_sequence=test.sequence,
            sender_timestamp=test.timestamp,
            sender_ttl=ttl,
            error=self.error,
            sender_error=test.error,
        )
        self.counters["reflected"] += 1
        return encode_reflector_packet(reply)


# ---------------------------------------------------------------- sender


@dataclass(frozen=True)
class ProbeResult:
    """One answered probe: the four NTP timestamps of RFC 8762 §4 (T1 sent, T2 reflector
    received, T3 reflector sent, T4 reply received), the TTL the test packet arrived with, and
    the local times the sender was given (for logs and freshness)."""

    target: str
    sequence: int
    t1: int
    t2: int
    t3: int
    t4: int
    sender_ttl: int
    sent_at: float
    received_at: float


@dataclass(frozen=True)
class _Outstanding:
    sent_at: float
    timestamp: int


class StampSender:
    """Session-Sender for one target: a probe every ``interval`` seconds, replies matched to
    the sequence numbers sent, probes without a reply after ``timeout`` declared lost.

    The caller sends what :meth:`packets_due` returns, feeds replies to :meth:`receive`, calls
    :meth:`expire`, and sleeps until :meth:`get_timer`.
    """

    def __init__(
        self,
        target: str,
        interval: float,
        now: float,
        timeout: float = 1.0,
        error: ErrorEstimate = DEFAULT_ERROR,
    ) -> None:
        if not interval > 0 or not timeout > 0:
            raise ValueError(
                f"STAMP sender: interval and timeout must be > 0, got {interval!r}, {timeout!r}"
            )
        self.target = target
        self.interval = interval
        self.timeout = timeout
        self.error = error
        self.counters: Counter[str] = Counter()
        self._next_sequence = 0
        self._next_send = now
        self._outstanding: dict[int, _Outstanding] = {}

    def packets_due(self, now: float) -> list[bytes]:
        """The test packets to send now: at most one; after a stall the schedule restarts
        from ``now`` rather than sending a burst of missed probes."""
        if now < self._next_send:
            return []
        sequence = self._next_sequence
        timestamp = ntp_from_unix(now)
        self._outstanding[sequence] = _Outstanding(now, timestamp)
        self._next_sequence = (sequence + 1) % SEQUENCE_MODULUS
        self._next_send += self.interval
        if self._next_send <= now:
            self._next_send = now + self.interval
        self.counters["sent"] += 1
        return [encode_sender_packet(SenderPacket(sequence, timestamp, self.error))]

    def receive(self, data: bytes, now: float) -> ProbeResult | None:
        """The result of the probe ``data`` answers, or None for a reply we no longer wait for
        (a duplicate, a reply after its timeout, another sender's). DecodeError, counted, for
        bytes that are not a reply."""
        try:
            reply = decode_reflector_packet(data)
        except DecodeError:
            self.counters["decode_errors"] += 1
            raise
        sent = self._outstanding.get(reply.sender_sequence)
        if sent is None or sent.timestamp != reply.sender_timestamp:
            self.counters["unmatched"] += 1
            return None
        del self._outstanding[reply.sender_sequence]
        self.counters["received"] += 1
        return ProbeResult(
            target=self.target,
            sequence=reply.sender_sequence,
            t1=sent.timestamp,
            t2=reply.receive_timestamp,
            t3=reply.timestamp,
            t4=ntp_from_unix(now),
            sender_ttl=reply.sender_ttl,
            sent_at=sent.sent_at,
            received_at=now,
        )

    def expire(self, now: float) -> list[int]:
        """Sequence numbers of probes unanswered for ``timeout`` seconds, now declared lost."""
        lost = [
            sequence
            for sequence, sent in self._outstanding.items()
            if now - sent.sent_at >= self.timeout
        ]
        for sequence in lost:
            del self._outstanding[sequence]
        self.counters["lost"] += len(lost)
        return lost

    def get_timer(self) -> float:
        """When to call again: the next probe, or the earliest timeout if sooner."""
        deadlines = [sent.sent_at + self.timeout for sent in self._outstanding.values()]
        return min([self._next_send, *deadlines])

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)
