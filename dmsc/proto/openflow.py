"""OpenFlow 1.3, the switch side: framing, decoding what a controller sends, encoding replies.

Type 4 signalling (DESIGN.md §4): every SG and SR is an OpenFlow 1.3 datapath of the Scheduling
Center. os-ken's ``ofproto_v1_3_parser`` is built for the controller: it serializes what a
controller sends and parses what a switch sends, and little of the reverse (no serializer for
a features reply, a port status or a multipart reply; no parser for a multipart request). This
module is the reverse, built on os-ken's sound pieces — the constants and struct formats of
``ofproto_v1_3``, ``OFPMatch`` to parse and serialize OXM matches, ``OFPInstructionActions`` and
``OFPActionOutput`` for instructions — and proved by round trips through os-ken's own parser
and serializer (tests/unit/test_openflow_codec.py).

os-ken's parsers trust their input (asserts; an endless loop on an unknown instruction type),
so every TLV is walked and bounds-checked here before an os-ken parser sees it.

Pure functions, no I/O. A complete message decodes to one of the frozen dataclasses below, or
raises :class:`OpenFlowError` — a :class:`~dmsc.errors.DecodeError` that carries the
OFPT_ERROR type and code to answer with; :func:`error_reply` builds that reply, offending bytes
included. Only what DMSC needs is supported: matches on ``in_port``, ``eth_type``, ``ipv6_src``
and ``ipv6_dst`` (with masks), OUTPUT actions to a port, one flow table. See docs/openflow.md.
"""

from __future__ import annotations

import ipaddress
import math
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofparser

from dmsc.errors import ConfigError, DecodeError, InvalidName
from dmsc.names import ServiceName
from dmsc.proto import dmsc_pb2
from dmsc.proto.codec import (
    DMSC_EXPERIMENTER_ID,
    EXP_LSA_COPY,
    EXP_TELEMETRY,
    check_lsa,
    check_node_id,
    parse_message,
)

OFP_VERSION = ofp.OFP_VERSION  # 4 = OpenFlow 1.3
OFP_TCP_PORT = 6653
HEADER = struct.Struct(ofp.OFP_HEADER_PACK_STR)
HEADER_SIZE = ofp.OFP_HEADER_SIZE
MAX_MESSAGE_SIZE = 0xFFFF
ETH_TYPE_IPV6 = 0x86DD
#: FEATURES_REPLY capabilities: what the agent answers (flow, table and port statistics).
CAPABILITIES = ofp.OFPC_FLOW_STATS | ofp.OFPC_TABLE_STATS | ofp.OFPC_PORT_STATS
FLOW_MOD_FLAGS = (
    ofp.OFPFF_SEND_FLOW_REM
    | ofp.OFPFF_CHECK_OVERLAP
    | ofp.OFPFF_RESET_COUNTS
    | ofp.OFPFF_NO_PKT_COUNTS
    | ofp.OFPFF_NO_BYT_COUNTS
)
U64_MAX = (1 << 64) - 1
_ALL_ONES_128 = (1 << 128) - 1


# ---------------------------------------------------------------- errors


_ERROR_CODE_PREFIX = {
    ofp.OFPET_HELLO_FAILED: "OFPHFC_",
    ofp.OFPET_BAD_REQUEST: "OFPBRC_",
    ofp.OFPET_BAD_ACTION: "OFPBAC_",
    ofp.OFPET_BAD_INSTRUCTION: "OFPBIC_",
    ofp.OFPET_BAD_MATCH: "OFPBMC_",
    ofp.OFPET_FLOW_MOD_FAILED: "OFPFMFC_",
    ofp.OFPET_SWITCH_CONFIG_FAILED: "OFPSCFC_",
    ofp.OFPET_ROLE_REQUEST_FAILED: "OFPRRFC_",
    ofp.OFPET_TABLE_FEATURES_FAILED: "OFPTFFC_",
}


def constant_name(prefix: str, value: int) -> str:
    """The name of an ``ofproto_v1_3`` constant, e.g. ("OFPT_", 14) → "OFPT_FLOW_MOD"."""
    for name, constant in vars(ofp).items():
        if name.startswith(prefix) and constant == value and isinstance(constant, int):
            return name
    return f"{prefix}{value}"


def error_name(error_type: int, error_code: int) -> str:
    """E.g. "OFPET_BAD_MATCH/OFPBMC_BAD_FIELD"."""
    prefix = _ERROR_CODE_PREFIX.get(error_type)
    code = constant_name(prefix, error_code) if prefix else str(error_code)
    return f"{constant_name('OFPET_', error_type)}/{code}"


class OpenFlowError(DecodeError):
    """A message the switch refuses, with the OFPT_ERROR type and code to answer it with.

    ``xid`` and ``request`` (the offending message) are filled in by :func:`decode_message`.
    """

    def __init__(self, error_type: int, error_code: int, reason: str) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.error_code = error_code
        self.reason = reason
        self.xid = 0
        self.request = b""

    def __str__(self) -> str:
        return f"{self.reason} [{error_name(self.error_type, self.error_code)}]"


def _bad_len(what: str, error_type: int = ofp.OFPET_BAD_REQUEST) -> OpenFlowError:
    code = {
        ofp.OFPET_BAD_REQUEST: ofp.OFPBRC_BAD_LEN,
        ofp.OFPET_BAD_MATCH: ofp.OFPBMC_BAD_LEN,
        ofp.OFPET_BAD_INSTRUCTION: ofp.OFPBIC_BAD_LEN,
        ofp.OFPET_BAD_ACTION: ofp.OFPBAC_BAD_LEN,
    }[error_type]
    return OpenFlowError(error_type, code, what)


def _unpack(
    fmt: str, data: bytes, offset: int, end: int, what: str, error_type: int
) -> tuple[int, ...]:
    """struct.unpack_from that refuses to read past ``end`` with a BAD_LEN error."""
    if offset + struct.calcsize(fmt) > end:
        raise _bad_len(f"{what}: truncated", error_type)
    return struct.unpack_from(fmt, data, offset)


def _round_up8(length: int) -> int:
    return (length + 7) // 8 * 8


# ---------------------------------------------------------------- framing


class Header(NamedTuple):
    version: int
    msg_type: int
    length: int
    xid: int


def parse_header(data: bytes) -> Header:
    """The ofp_header at the start of ``data``; DecodeError if it cannot frame a message."""
    if len(data) < HEADER_SIZE:
        raise DecodeError(f"OpenFlow header: {len(data)} bytes, need {HEADER_SIZE}")
    header = Header(*HEADER.unpack_from(data))
    if header.length < HEADER_SIZE:
        raise DecodeError(
            f"OpenFlow header: length {header.length} < {HEADER_SIZE} "
            f"(version {header.version}, type {header.msg_type}): the stream cannot be framed"
        )
    return header


class MessageSplitter:
    """Cuts a TCP byte stream into whole OpenFlow messages, by the headers' length fields.

    ``feed`` bytes as they arrive, then take the complete messages from ``messages()``. A header
    whose length is below 8 makes the rest of the stream meaningless: ``messages()`` raises
    DecodeError after yielding what came before it, and the connection should be closed.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def messages(self) -> Iterator[bytes]:
        while len(self._buffer) >= HEADER_SIZE:
            length = parse_header(self._buffer).length
            if len(self._buffer) < length:
                return
            message = bytes(self._buffer[:length])
            del self._buffer[:length]
            yield message

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole message."""
        return len(self._buffer)


# ---------------------------------------------------------------- matches


@dataclass(frozen=True)
class MaskedAddress:
    """An IPv6 match field: a value and a mask (all ones = exact; any mask, not only prefixes)."""

    value: int
    mask: int = _ALL_ONES_128

    def __post_init__(self) -> None:
        if not (0 <= self.value <= _ALL_ONES_128 and 0 <= self.mask <= _ALL_ONES_128):
            raise ValueError(f"IPv6 value/mask out of range: {self.value:#x}/{self.mask:#x}")
        if self.value & ~self.mask:
            raise ValueError(f"{_ipv6(self.value)} has bits outside mask {_ipv6(self.mask)}")

    @classmethod
    def parse(cls, text: str) -> MaskedAddress:
        """Parse "fd00::1", "fd00::/64" or "fd00::/ffff:ffff::" (ValueError if invalid)."""
        address, _, mask = text.partition("/")
        value = int(ipaddress.IPv6Address(address))
        if not mask:
            return cls(value)
        if mask.isdigit():
            bits = int(ipaddress.IPv6Network(f"::/{mask}").netmask)
        else:
            bits = int(ipaddress.IPv6Address(mask))
        return cls(value & bits, bits)

    @property
    def exact(self) -> bool:
        return self.mask == _ALL_ONES_128

    @property
    def prefix_length(self) -> int | None:
        """The prefix length if the mask is contiguous, else None."""
        length = self.mask.bit_count()
        return length if self.mask == _ALL_ONES_128 ^ ((1 << (128 - length)) - 1) else None

    def contains(self, address: int) -> bool:
        return address & self.mask == self.value

    def covers(self, other: MaskedAddress) -> bool:
        """Every address ``other`` matches is matched by this too."""
        return other.mask & self.mask == self.mask and other.value & self.mask == self.value

    def overlaps(self, other: MaskedAddress) -> bool:
        """Some address matches both."""
        return (self.value ^ other.value) & self.mask & other.mask == 0

    def to_user(self) -> str | tuple[str, str]:
        """The value os-ken's OFPMatch takes: "addr" or ("addr", "mask")."""
        return _ipv6(self.value) if self.exact else (_ipv6(self.value), _ipv6(self.mask))

    def __str__(self) -> str:
        if self.exact:
            return _ipv6(self.value)
        length = self.prefix_length
        return f"{_ipv6(self.value)}/{length if length is not None else _ipv6(self.mask)}"


def _ipv6(value: int) -> str:
    return str(ipaddress.IPv6Address(value))


@dataclass(frozen=True)
class Match:
    """The match of a DMSC policy entry; None = wildcard."""

    in_port: int | None = None
    eth_type: int | None = None
    ipv6_src: MaskedAddress | None = None
    ipv6_dst: MaskedAddress | None = None

    def covers(self, other: Match) -> bool:
        """OpenFlow's non-strict match: every packet ``other`` matches, this matches too."""
        return (
            _exact_covers(self.in_port, other.in_port)
            and _exact_covers(self.eth_type, other.eth_type)
            and _masked_covers(self.ipv6_src, other.ipv6_src)
            and _masked_covers(self.ipv6_dst, other.ipv6_dst)
        )

    def overlaps(self, other: Match) -> bool:
        """Some packet matches both (OFPFF_CHECK_OVERLAP)."""
        return (
            _exact_overlap(self.in_port, other.in_port)
            and _exact_overlap(self.eth_type, other.eth_type)
            and _masked_overlap(self.ipv6_src, other.ipv6_src)
            and _masked_overlap(self.ipv6_dst, other.ipv6_dst)
        )

    def matches(self, in_port: int, eth_type: int, ipv6_src: int, ipv6_dst: int) -> bool:
        """Does a packet (addresses as 128-bit integers) match?"""
        return (
            (self.in_port is None or self.in_port == in_port)
            and (self.eth_type is None or self.eth_type == eth_type)
            and (self.ipv6_src is None or self.ipv6_src.contains(ipv6_src))
            and (self.ipv6_dst is None or self.ipv6_dst.contains(ipv6_dst))
        )

    def to_ofpmatch(self) -> ofparser.OFPMatch:
        fields: dict[str, object] = {}
        if self.in_port is not None:
            fields["in_port"] = self.in_port
        if self.eth_type is not None:
            fields["eth_type"] = self.eth_type
        if self.ipv6_src is not None:
            fields["ipv6_src"] = self.ipv6_src.to_user()
        if self.ipv6_dst is not None:
            fields["ipv6_dst"] = self.ipv6_dst.to_user()
        return ofparser.OFPMatch(**fields)

    def __str__(self) -> str:
        """ovs-ofctl's spelling, e.g. "in_port=1,eth_type=0x86dd,ipv6_dst=fd00::/64"."""
        parts = [f"in_port={self.in_port}"] if self.in_port is not None else []
        if self.eth_type is not None:
            parts.append(f"eth_type={self.eth_type:#06x}")
        if self.ipv6_src is not None:
            parts.append(f"ipv6_src={self.ipv6_src}")
        if self.ipv6_dst is not None:
            parts.append(f"ipv6_dst={self.ipv6_dst}")
        return ",".join(parts) or "any"


def _exact_covers(mine: int | None, theirs: int | None) -> bool:
    return mine is None or mine == theirs


def _masked_covers(mine: MaskedAddress | None, theirs: MaskedAddress | None) -> bool:
    return mine is None or (theirs is not None and mine.covers(theirs))


def _exact_overlap(mine: int | None, theirs: int | None) -> bool:
    return mine is None or theirs is None or mine == theirs


def _masked_overlap(mine: MaskedAddress | None, theirs: MaskedAddress | None) -> bool:
    return mine is None or theirs is None or mine.overlaps(theirs)


#: OXM fields a DMSC forwarder matches on: field → (name, value size, maskable).
_SUPPORTED_OXM = {
    ofp.OFPXMT_OFB_IN_PORT: ("in_port", 4, False),
    ofp.OFPXMT_OFB_ETH_TYPE: ("eth_type", 2, False),
    ofp.OFPXMT_OFB_IPV6_SRC: ("ipv6_src", 16, True),
    ofp.OFPXMT_OFB_IPV6_DST: ("ipv6_dst", 16, True),
}
_OXM_NAMES = {
    field.oxm_field: field.name
    for field in ofp.oxm_types
    if getattr(field, "_class", None) == ofp.OFPXMC_OPENFLOW_BASIC
}


def _match_error(code: int, reason: str) -> OpenFlowError:
    return OpenFlowError(ofp.OFPET_BAD_MATCH, code, reason)


def decode_match(data: bytes, offset: int, end: int) -> tuple[Match, int]:
    """The ofp_match at ``offset`` → (Match, offset past its padding), or OpenFlowError."""
    what = "match"
    match_type, length = _unpack("!HH", data, offset, end, what, ofp.OFPET_BAD_MATCH)
    if match_type != ofp.OFPMT_OXM:
        raise _match_error(ofp.OFPBMC_BAD_TYPE, f"match type {match_type}: only OXM (1)")
    if length < 4 or offset + _round_up8(length) > end:
        raise _bad_len(f"match length {length} does not fit the message", ofp.OFPET_BAD_MATCH)
    _check_oxm_tlvs(data, offset + 4, offset + length)
    fields = _parse_with_os_ken(data, offset, end)
    return _match_from_fields(fields), offset + _round_up8(length)


def _check_oxm_tlvs(data: bytes, position: int, end: int) -> None:
    seen: set[int] = set()
    while position < end:
        (header,) = _unpack("!I", data, position, end, "OXM header", ofp.OFPET_BAD_MATCH)
        oxm_class, field = header >> 16, (header >> 9) & 0x7F
        has_mask, length = bool(header & 0x100), header & 0xFF
        if position + 4 + length > end:
            raise _bad_len(
                f"OXM field {field} of {length} bytes runs past the match", ofp.OFPET_BAD_MATCH
            )
        _check_oxm_field(oxm_class, field, has_mask, length)
        if field in seen:
            raise _match_error(ofp.OFPBMC_DUP_FIELD, f"{_OXM_NAMES[field]} appears twice")
        seen.add(field)
        position += 4 + length


def _check_oxm_field(oxm_class: int, field: int, has_mask: bool, length: int) -> None:
    if oxm_class != ofp.OFPXMC_OPENFLOW_BASIC or field not in _SUPPORTED_OXM:
        name = _OXM_NAMES.get(field, f"field {field}")
        if oxm_class != ofp.OFPXMC_OPENFLOW_BASIC:
            name = f"OXM class {oxm_class:#06x} field {field}"
        raise _match_error(
            ofp.OFPBMC_BAD_FIELD,
            f"match on {name} is not supported (only in_port, eth_type, ipv6_src, ipv6_dst)",
        )
    name, size, maskable = _SUPPORTED_OXM[field]
    if has_mask and not maskable:
        raise _match_error(ofp.OFPBMC_BAD_MASK, f"{name} cannot be masked")
    if length != size * (2 if has_mask else 1):
        raise _bad_len(f"{name}: {length} bytes", ofp.OFPET_BAD_MATCH)


def _parse_with_os_ken(data: bytes, offset: int, end: int) -> dict[str, object]:
    try:
        return dict(ofparser.OFPMatch.parser(bytes(data[:end]), offset)._fields2)
    except Exception as error:  # os-ken raises assorted types; the TLVs were checked already
        reason = f"os-ken cannot parse the match: {error!r}"
        raise _match_error(ofp.OFPBMC_BAD_VALUE, reason) from None


def _match_from_fields(fields: dict[str, object]) -> Match:
    in_port = fields.get("in_port")
    if in_port is not None and not 1 <= int(in_port) <= ofp.OFPP_MAX:  # type: ignore[arg-type]
        raise _match_error(ofp.OFPBMC_BAD_VALUE, f"in_port {in_port}: not a port number")
    eth_type = fields.get("eth_type")
    for name in ("ipv6_src", "ipv6_dst"):
        if name in fields and eth_type != ETH_TYPE_IPV6:
            raise _match_error(ofp.OFPBMC_BAD_PREREQ, f"{name} needs eth_type=0x86dd")
    return Match(
        in_port=in_port,  # type: ignore[arg-type]
        eth_type=eth_type,  # type: ignore[arg-type]
        ipv6_src=_masked_address(fields.get("ipv6_src"), "ipv6_src"),
        ipv6_dst=_masked_address(fields.get("ipv6_dst"), "ipv6_dst"),
    )


def _masked_address(user: object, name: str) -> MaskedAddress | None:
    """os-ken's "addr" or ("addr", "mask") → MaskedAddress; an all-zero mask is a wildcard."""
    if user is None:
        return None
    address, mask = user if isinstance(user, tuple) else (user, None)
    value = int(ipaddress.IPv6Address(address))
    bits = _ALL_ONES_128 if mask is None else int(ipaddress.IPv6Address(mask))
    if value & ~bits:
        raise _match_error(
            ofp.OFPBMC_BAD_WILDCARDS, f"{name} {address} has bits set outside mask {mask}"
        )
    return MaskedAddress(value, bits) if bits else None


def encode_match(match: Match) -> bytes:
    """Match → ofp_match bytes (padded to 8), serialized by os-ken's OFPMatch."""
    buffer = bytearray()
    match.to_ofpmatch().serialize(buffer, 0)
    return bytes(buffer)


# ---------------------------------------------------------------- instructions and actions


class Output(NamedTuple):
    """An OUTPUT action; ``max_len`` only matters for the controller port, kept for echo."""

    port: int
    max_len: int = 0


class Instruction(NamedTuple):
    """APPLY_ACTIONS or WRITE_ACTIONS with OUTPUT actions; no action at all = drop."""

    kind: int
    actions: tuple[Output, ...] = ()


_ACTION_INSTRUCTIONS = (ofp.OFPIT_APPLY_ACTIONS, ofp.OFPIT_WRITE_ACTIONS)


def output_ports(instructions: Iterable[Instruction]) -> tuple[int, ...]:
    """The ports a packet is sent to, in order; () = drop."""
    return tuple(action.port for inst in instructions for action in inst.actions)


def decode_instructions(data: bytes, position: int, end: int) -> tuple[Instruction, ...]:
    """The instructions from ``position`` to ``end``, or OpenFlowError."""
    instructions: list[Instruction] = []
    while position < end:
        kind, length = _unpack("!HH", data, position, end, "instruction", ofp.OFPET_BAD_INSTRUCTION)
        if length < 8 or length % 8 or position + length > end:
            raise _bad_len(f"instruction of {length} bytes", ofp.OFPET_BAD_INSTRUCTION)
        _check_instruction_kind(kind, instructions)
        _check_actions(data, position + 8, position + length, kind)
        instructions.append(_instruction_with_os_ken(data, position, position + length))
        position += length
    return tuple(instructions)


def _check_instruction_kind(kind: int, earlier: list[Instruction]) -> None:
    if kind in _ACTION_INSTRUCTIONS:
        if any(inst.kind == kind for inst in earlier):
            raise OpenFlowError(
                ofp.OFPET_BAD_INSTRUCTION,
                ofp.OFPBIC_UNSUP_INST,
                f"{constant_name('OFPIT_', kind)} appears twice",
            )
        return
    name = constant_name("OFPIT_", kind)
    if name == f"OFPIT_{kind}":
        raise OpenFlowError(
            ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_UNKNOWN_INST, f"unknown instruction {kind}"
        )
    raise OpenFlowError(
        ofp.OFPET_BAD_INSTRUCTION,
        ofp.OFPBIC_UNSUP_INST,
        f"{name} is not supported (only APPLY_ACTIONS and WRITE_ACTIONS; one table)",
    )


def _check_actions(data: bytes, position: int, end: int, kind: int) -> None:
    outputs = 0
    while position < end:
        action, length = _unpack("!HH", data, position, end, "action", ofp.OFPET_BAD_ACTION)
        if length < 8 or length % 8 or position + length > end:
            raise _bad_len(f"action of {length} bytes", ofp.OFPET_BAD_ACTION)
        if action != ofp.OFPAT_OUTPUT:
            raise OpenFlowError(
                ofp.OFPET_BAD_ACTION,
                ofp.OFPBAC_BAD_TYPE,
                f"action {constant_name('OFPAT_', action)} is not supported (only OUTPUT)",
            )
        if length != ofp.OFP_ACTION_OUTPUT_SIZE:
            raise _bad_len(f"OUTPUT action of {length} bytes", ofp.OFPET_BAD_ACTION)
        check_output_port(struct.unpack_from("!I", data, position + 4)[0])
        outputs += 1
        position += length
    if kind == ofp.OFPIT_WRITE_ACTIONS and outputs > 1:
        raise OpenFlowError(
            ofp.OFPET_BAD_ACTION,
            ofp.OFPBAC_TOO_MANY,
            "WRITE_ACTIONS with more than one OUTPUT (an action set holds one)",
        )


def check_output_port(port: int) -> None:
    """Only physical ports: no packet-in (CONTROLLER), no FLOOD/ALL/IN_PORT/NORMAL/LOCAL."""
    if port == ofp.OFPP_CONTROLLER:
        raise OpenFlowError(
            ofp.OFPET_BAD_ACTION,
            ofp.OFPBAC_BAD_OUT_PORT,
            "output to CONTROLLER: a DMSC forwarder sends no packet-in",
        )
    if not 1 <= port <= ofp.OFPP_MAX:
        raise OpenFlowError(
            ofp.OFPET_BAD_ACTION,
            ofp.OFPBAC_BAD_OUT_PORT,
            f"output to {constant_name('OFPP_', port)}: only physical ports are supported",
        )


def _instruction_with_os_ken(data: bytes, position: int, end: int) -> Instruction:
    try:
        parsed = ofparser.OFPInstructionActions.parser(bytes(data[:end]), position)
        actions = tuple(Output(action.port, action.max_len) for action in parsed.actions)
    except Exception as error:  # os-ken raises assorted types; the TLVs were checked already
        reason = f"os-ken cannot parse an instruction: {error!r}"
        raise _bad_len(reason, ofp.OFPET_BAD_INSTRUCTION) from None
    return Instruction(parsed.type, actions)


def encode_instructions(instructions: Iterable[Instruction]) -> bytes:
    """Instructions → bytes, serialized by os-ken's OFPInstructionActions/OFPActionOutput."""
    buffer = bytearray()
    for inst in instructions:
        actions = [ofparser.OFPActionOutput(out.port, out.max_len) for out in inst.actions]
        serializer = ofparser.OFPInstructionActions(inst.kind, actions)
        serializer.serialize(buffer, len(buffer))
    return bytes(buffer)


# ---------------------------------------------------------------- controller → switch messages


@dataclass(frozen=True)
class Hello:
    xid: int
    version: int  # the header's: the highest version the sender speaks
    versions: frozenset[int] | None = None  # from the version bitmap, if any

    def negotiate(self, supported: frozenset[int] = frozenset({OFP_VERSION})) -> int | None:
        """The version both sides speak (OpenFlow 1.3 §6.3.1), or None."""
        if self.versions is not None:
            common = self.versions & supported
            return max(common) if common else None
        version = min(self.version, max(supported))
        return version if version in supported else None


@dataclass(frozen=True)
class ErrorMsg:
    xid: int
    error_type: int
    error_code: int
    data: bytes = b""

    def __str__(self) -> str:
        return f"{error_name(self.error_type, self.error_code)} ({len(self.data)} bytes of data)"


@dataclass(frozen=True)
class EchoRequest:
    xid: int
    data: bytes = b""


@dataclass(frozen=True)
class EchoReply:
    xid: int
    data: bytes = b""


@dataclass(frozen=True)
class Experimenter:
    xid: int
    experimenter: int
    exp_type: int
    data: bytes = b""


@dataclass(frozen=True)
class FeaturesRequest:
    xid: int


@dataclass(frozen=True)
class GetConfigRequest:
    xid: int


@dataclass(frozen=True)
class SetConfig:
    xid: int
    flags: int
    miss_send_len: int


@dataclass(frozen=True)
class FlowMod:
    xid: int
    command: int
    match: Match
    instructions: tuple[Instruction, ...] = ()
    cookie: int = 0
    cookie_mask: int = 0
    table_id: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0
    priority: int = ofp.OFP_DEFAULT_PRIORITY
    buffer_id: int = ofp.OFP_NO_BUFFER
    out_port: int = ofp.OFPP_ANY
    out_group: int = ofp.OFPG_ANY
    flags: int = 0


@dataclass(frozen=True)
class DescRequest:
    xid: int


@dataclass(frozen=True)
class FlowStatsRequest:
    """OFPMP_FLOW, or OFPMP_AGGREGATE when ``aggregate``."""

    xid: int
    match: Match
    aggregate: bool = False
    table_id: int = ofp.OFPTT_ALL
    out_port: int = ofp.OFPP_ANY
    out_group: int = ofp.OFPG_ANY
    cookie: int = 0
    cookie_mask: int = 0


@dataclass(frozen=True)
class PortStatsRequest:
    xid: int
    port_no: int = ofp.OFPP_ANY


@dataclass(frozen=True)
class PortDescRequest:
    xid: int


@dataclass(frozen=True)
class TableStatsRequest:
    xid: int


@dataclass(frozen=True)
class TableFeaturesRequest:
    """OFPMP_TABLE_FEATURES without a body: read the table's features."""

    xid: int


@dataclass(frozen=True)
class BarrierRequest:
    xid: int


@dataclass(frozen=True)
class RoleRequest:
    xid: int
    role: int
    generation_id: int


ControllerMessage = (
    Hello
    | ErrorMsg
    | EchoRequest
    | EchoReply
    | Experimenter
    | FeaturesRequest
    | GetConfigRequest
    | SetConfig
    | FlowMod
    | DescRequest
    | FlowStatsRequest
    | PortStatsRequest
    | PortDescRequest
    | TableStatsRequest
    | BarrierRequest
    | RoleRequest
)


def decode_message(data: bytes) -> ControllerMessage:
    """One whole message from the controller → a dataclass above, or OpenFlowError.

    A message of a type a DMSC forwarder does not take (PACKET_OUT, GROUP_MOD, …) is an
    OpenFlowError too (OFPBRC_BAD_TYPE): answer it with :func:`error_reply`.
    """
    header = parse_header(data)
    try:
        if header.length != len(data):
            raise _bad_len(f"header says {header.length} bytes, message has {len(data)}")
        if header.version != OFP_VERSION and header.msg_type != ofp.OFPT_HELLO:
            raise OpenFlowError(
                ofp.OFPET_BAD_REQUEST,
                ofp.OFPBRC_BAD_VERSION,
                f"version {header.version}; this switch speaks OpenFlow 1.3 ({OFP_VERSION})",
            )
        decoder = _DECODERS.get(header.msg_type)
        if decoder is None:
            raise OpenFlowError(
                ofp.OFPET_BAD_REQUEST,
                ofp.OFPBRC_BAD_TYPE,
                f"{constant_name('OFPT_', header.msg_type)} is not supported by a DMSC switch",
            )
        return decoder(header, data)
    except OpenFlowError as error:
        error.xid, error.request = header.xid, bytes(data)
        raise


def _expect_length(header: Header, size: int) -> None:
    if header.length != size:
        name = constant_name("OFPT_", header.msg_type)
        raise _bad_len(f"{name} of {header.length} bytes, expected {size}")


def _decode_hello(header: Header, data: bytes) -> Hello:
    versions: set[int] | None = None
    position = HEADER_SIZE
    while position < header.length:
        kind, length = _unpack(
            "!HH", data, position, header.length, "hello element", ofp.OFPET_BAD_REQUEST
        )
        if length < 4 or position + length > header.length:
            raise _bad_len(f"hello element of {length} bytes")
        if kind == ofp.OFPHET_VERSIONBITMAP:
            versions = (versions or set()) | _bitmap_versions(
                data[position + 4 : position + length]
            )
        position += _round_up8(length)
    return Hello(header.xid, header.version, None if versions is None else frozenset(versions))


def _bitmap_versions(bitmaps: bytes) -> set[int]:
    words = struct.unpack_from(f"!{len(bitmaps) // 4}I", bitmaps)
    return {32 * i + bit for i, word in enumerate(words) for bit in range(32) if word >> bit & 1}


def _decode_error(header: Header, data: bytes) -> ErrorMsg:
    error_type, code = _unpack(
        "!HH", data, HEADER_SIZE, header.length, "ERROR", ofp.OFPET_BAD_REQUEST
    )
    return ErrorMsg(header.xid, error_type, code, bytes(data[ofp.OFP_ERROR_MSG_SIZE :]))


def _decode_echo_request(header: Header, data: bytes) -> EchoRequest:
    return EchoRequest(header.xid, bytes(data[HEADER_SIZE:]))


def _decode_echo_reply(header: Header, data: bytes) -> EchoReply:
    return EchoReply(header.xid, bytes(data[HEADER_SIZE:]))


def _decode_experimenter(header: Header, data: bytes) -> Experimenter:
    experimenter, exp_type = _unpack(
        ofp.OFP_EXPERIMENTER_HEADER_PACK_STR,
        data,
        HEADER_SIZE,
        header.length,
        "EXPERIMENTER",
        ofp.OFPET_BAD_REQUEST,
    )
    body = bytes(data[ofp.OFP_EXPERIMENTER_HEADER_SIZE :])
    return Experimenter(header.xid, experimenter, exp_type, body)


def _decode_features_request(header: Header, data: bytes) -> FeaturesRequest:
    _expect_length(header, HEADER_SIZE)
    return FeaturesRequest(header.xid)


def _decode_get_config_request(header: Header, data: bytes) -> GetConfigRequest:
    _expect_length(header, HEADER_SIZE)
    return GetConfigRequest(header.xid)


def _decode_set_config(header: Header, data: bytes) -> SetConfig:
    _expect_length(header, ofp.OFP_SWITCH_CONFIG_SIZE)
    flags, miss_send_len = struct.unpack_from(ofp.OFP_SWITCH_CONFIG_PACK_STR, data, HEADER_SIZE)
    return SetConfig(header.xid, flags, miss_send_len)


def _decode_barrier_request(header: Header, data: bytes) -> BarrierRequest:
    _expect_length(header, HEADER_SIZE)
    return BarrierRequest(header.xid)


def _decode_role_request(header: Header, data: bytes) -> RoleRequest:
    _expect_length(header, ofp.OFP_ROLE_REQUEST_SIZE)
    role, generation_id = struct.unpack_from(ofp.OFP_ROLE_REQUEST_PACK_STR, data, HEADER_SIZE)
    if role > ofp.OFPCR_ROLE_SLAVE:
        raise OpenFlowError(
            ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_BAD_ROLE, f"role {role} does not exist"
        )
    return RoleRequest(header.xid, role, generation_id)


_FLOW_MOD = struct.Struct(ofp.OFP_FLOW_MOD_PACK_STR0)
_FLOW_MOD_MATCH_OFFSET = HEADER_SIZE + _FLOW_MOD.size


_FLOW_MOD_FIELDS = (
    "cookie", "cookie_mask", "table_id", "command", "idle_timeout", "hard_timeout",
    "priority", "buffer_id", "out_port", "out_group", "flags",
)  # fmt: skip


def _decode_flow_mod(header: Header, data: bytes) -> FlowMod:
    values = _unpack(
        ofp.OFP_FLOW_MOD_PACK_STR0, data, HEADER_SIZE, header.length, "FLOW_MOD",
        ofp.OFPET_BAD_REQUEST,
    )  # fmt: skip
    fields = dict(zip(_FLOW_MOD_FIELDS, values, strict=True))
    if fields["command"] > ofp.OFPFC_DELETE_STRICT:
        raise OpenFlowError(
            ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_COMMAND, f"command {fields['command']}"
        )
    if fields["flags"] & ~FLOW_MOD_FLAGS:
        raise OpenFlowError(
            ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_FLAGS, f"flags {fields['flags']:#x}"
        )
    match, position = decode_match(data, _FLOW_MOD_MATCH_OFFSET, header.length)
    instructions = decode_instructions(data, position, header.length)
    return FlowMod(header.xid, match=match, instructions=instructions, **fields)


_MULTIPART_BODY = ofp.OFP_MULTIPART_REQUEST_SIZE  # where a multipart request's body starts


def _decode_multipart_request(header: Header, data: bytes) -> ControllerMessage:
    mp_type, flags = _unpack(
        ofp.OFP_MULTIPART_REQUEST_PACK_STR,
        data,
        HEADER_SIZE,
        header.length,
        "MULTIPART_REQUEST",
        ofp.OFPET_BAD_REQUEST,
    )
    if flags & ofp.OFPMPF_REQ_MORE:
        raise OpenFlowError(
            ofp.OFPET_BAD_REQUEST,
            ofp.OFPBRC_MULTIPART_BUFFER_OVERFLOW,
            "multipart requests in several parts (REQ_MORE) are not buffered",
        )
    decoder = _MULTIPART_DECODERS.get(mp_type)
    if decoder is None:
        raise OpenFlowError(
            ofp.OFPET_BAD_REQUEST,
            ofp.OFPBRC_BAD_MULTIPART,
            f"multipart {constant_name('OFPMP_', mp_type)} is not supported "
            "(only DESC, FLOW, AGGREGATE, TABLE, TABLE_FEATURES, PORT_STATS, PORT_DESC)",
        )
    return decoder(header, data)


def _empty_body(kind: Callable[[int], ControllerMessage]) -> Callable[..., ControllerMessage]:
    def decode(header: Header, data: bytes) -> ControllerMessage:
        if header.length != _MULTIPART_BODY:
            raise _bad_len(f"multipart request with a body of {header.length - 16} bytes")
        return kind(header.xid)

    return decode


_FLOW_STATS_REQUEST = struct.Struct(ofp.OFP_FLOW_STATS_REQUEST_0_PACK_STR)


def _decode_flow_stats_request(header: Header, data: bytes) -> FlowStatsRequest:
    table_id, out_port, out_group, cookie, cookie_mask = _unpack(
        ofp.OFP_FLOW_STATS_REQUEST_0_PACK_STR,
        data,
        _MULTIPART_BODY,
        header.length,
        "flow stats request",
        ofp.OFPET_BAD_REQUEST,
    )
    offset = _MULTIPART_BODY + _FLOW_STATS_REQUEST.size
    match, end = decode_match(data, offset, header.length)
    if end != header.length:
        raise _bad_len(f"{header.length - end} bytes after the flow stats request's match")
    (mp_type,) = struct.unpack_from("!H", data, HEADER_SIZE)
    return FlowStatsRequest(
        header.xid,
        match,
        mp_type == ofp.OFPMP_AGGREGATE,
        table_id,
        out_port,
        out_group,
        cookie,
        cookie_mask,
    )


def _decode_table_features_request(header: Header, data: bytes) -> TableFeaturesRequest:
    if header.length != _MULTIPART_BODY:
        raise OpenFlowError(
            ofp.OFPET_TABLE_FEATURES_FAILED, ofp.OFPTFFC_EPERM,
            "setting table features is not supported: the one table is fixed",
        )  # fmt: skip
    return TableFeaturesRequest(header.xid)


def _decode_port_stats_request(header: Header, data: bytes) -> PortStatsRequest:
    if header.length != _MULTIPART_BODY + ofp.OFP_PORT_STATS_REQUEST_SIZE:
        raise _bad_len(f"port stats request of {header.length} bytes")
    (port_no,) = struct.unpack_from(ofp.OFP_PORT_STATS_REQUEST_PACK_STR, data, _MULTIPART_BODY)
    return PortStatsRequest(header.xid, port_no)


_MULTIPART_DECODERS: dict[int, Callable[[Header, bytes], ControllerMessage]] = {
    ofp.OFPMP_DESC: _empty_body(DescRequest),
    ofp.OFPMP_FLOW: _decode_flow_stats_request,
    ofp.OFPMP_AGGREGATE: _decode_flow_stats_request,
    ofp.OFPMP_TABLE: _empty_body(TableStatsRequest),
    ofp.OFPMP_PORT_STATS: _decode_port_stats_request,
    ofp.OFPMP_PORT_DESC: _empty_body(PortDescRequest),
    ofp.OFPMP_TABLE_FEATURES: _decode_table_features_request,
}

_DECODERS: dict[int, Callable[[Header, bytes], ControllerMessage]] = {
    ofp.OFPT_HELLO: _decode_hello,
    ofp.OFPT_ERROR: _decode_error,
    ofp.OFPT_ECHO_REQUEST: _decode_echo_request,
    ofp.OFPT_ECHO_REPLY: _decode_echo_reply,
    ofp.OFPT_EXPERIMENTER: _decode_experimenter,
    ofp.OFPT_FEATURES_REQUEST: _decode_features_request,
    ofp.OFPT_GET_CONFIG_REQUEST: _decode_get_config_request,
    ofp.OFPT_SET_CONFIG: _decode_set_config,
    ofp.OFPT_FLOW_MOD: _decode_flow_mod,
    ofp.OFPT_MULTIPART_REQUEST: _decode_multipart_request,
    ofp.OFPT_BARRIER_REQUEST: _decode_barrier_request,
    ofp.OFPT_ROLE_REQUEST: _decode_role_request,
}


# ---------------------------------------------------------------- what the switch describes


@dataclass(frozen=True)
class PortInfo:
    """One data interface of a forwarder, as OpenFlow describes it (ofp_port)."""

    port_no: int
    name: str
    hw_addr: str
    up: bool = True
    curr_speed_kbps: int = 0
    max_speed_kbps: int | None = None  # None = curr_speed_kbps

    def __post_init__(self) -> None:
        if not 1 <= self.port_no <= ofp.OFPP_MAX:
            raise ConfigError(f"port {self.name!r}: port_no {self.port_no} not in 1..0xffffff00")
        if not self.name or len(self.name.encode()) >= ofp.OFP_MAX_PORT_NAME_LEN:
            raise ConfigError(f"port name {self.name!r}: need 1 to 15 bytes")
        _mac_bytes(self.hw_addr)
        if self.curr_speed_kbps < 0 or (self.max_speed_kbps or 0) < 0:
            raise ConfigError(f"port {self.name!r}: negative speed")


def _mac_bytes(text: str) -> bytes:
    parts = text.split(":")
    try:
        if len(parts) == 6 and all(len(part) == 2 for part in parts):
            return bytes(int(part, 16) for part in parts)
    except ValueError:
        pass
    raise ConfigError(f"hardware address {text!r}: need six hex bytes like 02:00:00:00:00:01")


class PortCounters(NamedTuple):
    """A port's counters, as the forwarder counts them (cumulative)."""

    rx_packets: int = 0
    tx_packets: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_dropped: int = 0
    tx_dropped: int = 0
    rx_errors: int = 0
    tx_errors: int = 0


class PortStats(NamedTuple):
    port_no: int
    counters: PortCounters
    duration: float  # seconds since the port was added


@dataclass(frozen=True)
class SwitchDescription:
    """OFPMP_DESC: what ``ovs-ofctl dump-desc`` shows."""

    manufacturer: str = "DMSC testbed"
    hardware: str = "Python forwarder (AF_PACKET)"
    software: str = "dmsc OpenFlow agent"
    serial_number: str = "None"
    datapath: str = ""  # the node id, for a human


@dataclass(frozen=True)
class FlowStats:
    """One entry of a FLOW multipart reply."""

    match: Match
    instructions: tuple[Instruction, ...]
    priority: int
    cookie: int = 0
    duration: float = 0.0
    idle_timeout: int = 0
    hard_timeout: int = 0
    flags: int = 0
    packet_count: int = 0
    byte_count: int = 0
    table_id: int = 0


@dataclass(frozen=True)
class FlowRemoved:
    match: Match
    priority: int
    reason: int  # OFPRR_IDLE_TIMEOUT, OFPRR_HARD_TIMEOUT or OFPRR_DELETE
    cookie: int = 0
    duration: float = 0.0
    idle_timeout: int = 0
    hard_timeout: int = 0
    packet_count: int = 0
    byte_count: int = 0
    table_id: int = 0


# ---------------------------------------------------------------- switch → controller messages


def _message(msg_type: int, xid: int, body: bytes = b"") -> bytes:
    length = HEADER_SIZE + len(body)
    if length > MAX_MESSAGE_SIZE:
        raise ValueError(f"{constant_name('OFPT_', msg_type)} of {length} bytes is too long")
    return HEADER.pack(OFP_VERSION, msg_type, length, xid & 0xFFFFFFFF) + body


def _u64(value: int) -> int:
    return min(max(int(value), 0), U64_MAX)


def _duration(seconds: float) -> tuple[int, int]:
    seconds = max(seconds, 0.0) if math.isfinite(seconds) else 0.0
    whole = min(int(seconds), 0xFFFFFFFF)
    return whole, min(int((seconds - whole) * 1e9), 999_999_999)


def encode_hello(xid: int, versions: Iterable[int] = (OFP_VERSION,)) -> bytes:
    """HELLO with a version-bitmap element."""
    bitmap = sum(1 << version for version in versions)
    element = struct.pack("!HHI", ofp.OFPHET_VERSIONBITMAP, 8, bitmap)
    return _message(ofp.OFPT_HELLO, xid, element)


def encode_echo_request(xid: int, data: bytes = b"") -> bytes:
    return _message(ofp.OFPT_ECHO_REQUEST, xid, data)


def encode_echo_reply(xid: int, data: bytes = b"") -> bytes:
    return _message(ofp.OFPT_ECHO_REPLY, xid, data)


def encode_error(xid: int, error_type: int, error_code: int, data: bytes = b"") -> bytes:
    """ERROR; ``data`` (the offending request) is cut to what fits in one message."""
    room = MAX_MESSAGE_SIZE - ofp.OFP_ERROR_MSG_SIZE
    body = struct.pack(ofp.OFP_ERROR_MSG_PACK_STR, error_type, error_code) + bytes(data[:room])
    return _message(ofp.OFPT_ERROR, xid, body)


def error_reply(error: OpenFlowError) -> bytes:
    """The ERROR answering a refused message, carrying the message itself."""
    return encode_error(error.xid, error.error_type, error.error_code, error.request)


def encode_features_reply(
    xid: int,
    datapath_id: int,
    *,
    n_buffers: int = 0,
    n_tables: int = 1,
    capabilities: int = CAPABILITIES,
) -> bytes:
    body = struct.pack(
        ofp.OFP_SWITCH_FEATURES_PACK_STR, datapath_id, n_buffers, n_tables, 0, capabilities, 0
    )
    return _message(ofp.OFPT_FEATURES_REPLY, xid, body)


def encode_get_config_reply(xid: int, flags: int, miss_send_len: int) -> bytes:
    body = struct.pack(ofp.OFP_SWITCH_CONFIG_PACK_STR, flags, miss_send_len)
    return _message(ofp.OFPT_GET_CONFIG_REPLY, xid, body)


def encode_barrier_reply(xid: int) -> bytes:
    return _message(ofp.OFPT_BARRIER_REPLY, xid)


def encode_role_reply(xid: int, role: int, generation_id: int) -> bytes:
    body = struct.pack(ofp.OFP_ROLE_REQUEST_PACK_STR, role, generation_id)
    return _message(ofp.OFPT_ROLE_REPLY, xid, body)


def encode_experimenter(xid: int, experimenter: int, exp_type: int, data: bytes) -> bytes:
    body = struct.pack(ofp.OFP_EXPERIMENTER_HEADER_PACK_STR, experimenter, exp_type)
    return _message(ofp.OFPT_EXPERIMENTER, xid, body + bytes(data))


_SPEED_FEATURES = {  # kbps → ofp_port_features bit
    10_000: ofp.OFPPF_10MB_FD,
    100_000: ofp.OFPPF_100MB_FD,
    1_000_000: ofp.OFPPF_1GB_FD,
    10_000_000: ofp.OFPPF_10GB_FD,
    40_000_000: ofp.OFPPF_40GB_FD,
    100_000_000: ofp.OFPPF_100GB_FD,
    1_000_000_000: ofp.OFPPF_1TB_FD,
}


def encode_port(port: PortInfo) -> bytes:
    """PortInfo → ofp_port (64 bytes). A port that is not up has OFPPS_LINK_DOWN."""
    features = _SPEED_FEATURES.get(port.curr_speed_kbps, ofp.OFPPF_OTHER) | ofp.OFPPF_COPPER
    state = ofp.OFPPS_LIVE if port.up else ofp.OFPPS_LINK_DOWN
    max_speed = port.curr_speed_kbps if port.max_speed_kbps is None else port.max_speed_kbps
    return struct.pack(
        ofp.OFP_PORT_PACK_STR,
        port.port_no,
        _mac_bytes(port.hw_addr),
        port.name.encode(),
        0,
        state,
        features,
        features,
        features,
        0,
        port.curr_speed_kbps,
        max_speed,
    )


def encode_port_status(xid: int, reason: int, port: PortInfo) -> bytes:
    """PORT_STATUS: reason OFPPR_ADD, OFPPR_DELETE or OFPPR_MODIFY."""
    return _message(ofp.OFPT_PORT_STATUS, xid, struct.pack("!B7x", reason) + encode_port(port))


def encode_flow_removed(xid: int, removed: FlowRemoved) -> bytes:
    seconds, nanoseconds = _duration(removed.duration)
    body = struct.pack(
        ofp.OFP_FLOW_REMOVED_PACK_STR0,
        removed.cookie,
        removed.priority,
        removed.reason,
        removed.table_id,
        seconds,
        nanoseconds,
        removed.idle_timeout,
        removed.hard_timeout,
        _u64(removed.packet_count),
        _u64(removed.byte_count),
    )
    return _message(ofp.OFPT_FLOW_REMOVED, xid, body + encode_match(removed.match))


# ---------------------------------------------------------------- multipart replies


def _multipart_replies(xid: int, mp_type: int, bodies: Iterable[bytes]) -> list[bytes]:
    """Bodies packed into as few MULTIPART_REPLY messages as fit; all but the last REPLY_MORE."""
    room = MAX_MESSAGE_SIZE - ofp.OFP_MULTIPART_REPLY_SIZE
    chunks: list[bytes] = []
    current = bytearray()
    for body in bodies:
        if current and len(current) + len(body) > room:
            chunks.append(bytes(current))
            current = bytearray()
        current += body
    chunks.append(bytes(current))
    last = len(chunks) - 1
    return [
        _multipart_reply(xid, mp_type, ofp.OFPMPF_REPLY_MORE if i < last else 0, chunk)
        for i, chunk in enumerate(chunks)
    ]


def _multipart_reply(xid: int, mp_type: int, flags: int, body: bytes) -> bytes:
    head = struct.pack(ofp.OFP_MULTIPART_REPLY_PACK_STR, mp_type, flags)
    return _message(ofp.OFPT_MULTIPART_REPLY, xid, head + body)


def _fixed(text: str, size: int) -> bytes:
    """A NUL-terminated string field of ``size`` bytes (cut if too long)."""
    return text.encode()[: size - 1]


def encode_desc_reply(xid: int, desc: SwitchDescription) -> bytes:
    body = struct.pack(
        ofp.OFP_DESC_PACK_STR,
        _fixed(desc.manufacturer, ofp.DESC_STR_LEN),
        _fixed(desc.hardware, ofp.DESC_STR_LEN),
        _fixed(desc.software, ofp.DESC_STR_LEN),
        _fixed(desc.serial_number, ofp.SERIAL_NUM_LEN),
        _fixed(desc.datapath, ofp.DESC_STR_LEN),
    )
    return _multipart_replies(xid, ofp.OFPMP_DESC, [body])[0]


def encode_flow_stats(flow: FlowStats) -> bytes:
    """One ofp_flow_stats entry."""
    tail = encode_match(flow.match) + encode_instructions(flow.instructions)
    seconds, nanoseconds = _duration(flow.duration)
    head = struct.pack(
        ofp.OFP_FLOW_STATS_0_PACK_STR,
        ofp.OFP_FLOW_STATS_0_SIZE + len(tail),
        flow.table_id,
        seconds,
        nanoseconds,
        flow.priority,
        flow.idle_timeout,
        flow.hard_timeout,
        flow.flags,
        flow.cookie,
        _u64(flow.packet_count),
        _u64(flow.byte_count),
    )
    return head + tail


def encode_flow_stats_reply(xid: int, flows: Iterable[FlowStats]) -> list[bytes]:
    return _multipart_replies(xid, ofp.OFPMP_FLOW, (encode_flow_stats(f) for f in flows))


def encode_aggregate_reply(xid: int, packet_count: int, byte_count: int, flow_count: int) -> bytes:
    body = struct.pack(
        ofp.OFP_AGGREGATE_STATS_REPLY_PACK_STR, _u64(packet_count), _u64(byte_count), flow_count
    )
    return _multipart_replies(xid, ofp.OFPMP_AGGREGATE, [body])[0]


def encode_table_stats_reply(
    xid: int, active_count: int, lookup_count: int, matched_count: int
) -> bytes:
    body = struct.pack(
        ofp.OFP_TABLE_STATS_PACK_STR, 0, active_count, _u64(lookup_count), _u64(matched_count)
    )
    return _multipart_replies(xid, ofp.OFPMP_TABLE, [body])[0]


class _OxmId(NamedTuple):
    """An OXM id in a table-features property. os-ken's OFPOxmId writes oxm_length 0, and
    Open vSwitch then ignores the field; OpenFlow 1.3.3 makes the length the payload's, and
    Open vSwitch doubles it for a maskable field. This is what Open vSwitch writes."""

    field: int
    size: int
    hasmask: bool

    def serialize(self) -> bytes:  # the method os-ken's OFPTableFeaturePropOxm calls
        length = self.size * (2 if self.hasmask else 1)
        header = ofp.OFPXMC_OPENFLOW_BASIC << 16 | self.field << 9 | self.hasmask << 8 | length
        return struct.pack("!I", header)


def encode_table_features(name: str, max_entries: int) -> bytes:
    """ofp_table_features of the one table, built with os-ken's table-feature classes: the
    instructions, actions and match fields :func:`decode_message` accepts."""
    instruction_ids = [ofparser.OFPInstructionId(kind) for kind in _ACTION_INSTRUCTIONS]
    action_ids = [ofparser.OFPActionId(ofp.OFPAT_OUTPUT)]
    fields = _SUPPORTED_OXM.items()
    matchable = [_OxmId(field, size, maskable) for field, (_, size, maskable) in fields]
    wildcards = [_OxmId(field, size, False) for field, (_, size, _) in fields]
    props: list[object] = []
    for kind in (ofp.OFPTFPT_INSTRUCTIONS, ofp.OFPTFPT_INSTRUCTIONS_MISS):
        props.append(
            ofparser.OFPTableFeaturePropInstructions(kind, instruction_ids=instruction_ids)
        )
    for kind in (ofp.OFPTFPT_NEXT_TABLES, ofp.OFPTFPT_NEXT_TABLES_MISS):
        props.append(ofparser.OFPTableFeaturePropNextTables(kind, table_ids=[]))
    for kind in (ofp.OFPTFPT_WRITE_ACTIONS, ofp.OFPTFPT_WRITE_ACTIONS_MISS,
                 ofp.OFPTFPT_APPLY_ACTIONS, ofp.OFPTFPT_APPLY_ACTIONS_MISS):  # fmt: skip
        props.append(ofparser.OFPTableFeaturePropActions(kind, action_ids=action_ids))
    props.append(ofparser.OFPTableFeaturePropOxm(ofp.OFPTFPT_MATCH, oxm_ids=matchable))
    props.append(ofparser.OFPTableFeaturePropOxm(ofp.OFPTFPT_WILDCARDS, oxm_ids=wildcards))
    for kind in (ofp.OFPTFPT_WRITE_SETFIELD, ofp.OFPTFPT_WRITE_SETFIELD_MISS,
                 ofp.OFPTFPT_APPLY_SETFIELD, ofp.OFPTFPT_APPLY_SETFIELD_MISS):  # fmt: skip
        props.append(ofparser.OFPTableFeaturePropOxm(kind, oxm_ids=[]))
    features = ofparser.OFPTableFeaturesStats(
        table_id=0, name=_fixed(name, ofp.OFP_MAX_TABLE_NAME_LEN), metadata_match=0,
        metadata_write=0, config=0, max_entries=max_entries, properties=props,
    )  # fmt: skip
    return bytes(features.serialize())


def encode_table_features_reply(xid: int, name: str, max_entries: int) -> bytes:
    body = encode_table_features(name, max_entries)
    return _multipart_replies(xid, ofp.OFPMP_TABLE_FEATURES, [body])[0]


def encode_port_stats(stats: PortStats) -> bytes:
    c = stats.counters
    seconds, nanoseconds = _duration(stats.duration)
    values = (
        c.rx_packets, c.tx_packets, c.rx_bytes, c.tx_bytes, c.rx_dropped, c.tx_dropped,
        c.rx_errors, c.tx_errors, 0, 0, 0, 0,  # rx_frame_err, rx_over_err, rx_crc_err, collisions
    )  # fmt: skip
    return struct.pack(
        ofp.OFP_PORT_STATS_PACK_STR, stats.port_no, *(_u64(v) for v in values), seconds,
        nanoseconds,
    )  # fmt: skip


def encode_port_stats_reply(xid: int, stats: Iterable[PortStats]) -> list[bytes]:
    return _multipart_replies(xid, ofp.OFPMP_PORT_STATS, (encode_port_stats(s) for s in stats))


def encode_port_desc_reply(xid: int, ports: Iterable[PortInfo]) -> list[bytes]:
    return _multipart_replies(xid, ofp.OFPMP_PORT_DESC, (encode_port(p) for p in ports))


# ---------------------------------------------------------------- DMSC experimenter bodies


DmscBody = dmsc_pb2.Telemetry | dmsc_pb2.LsaCopy
_EXP_TYPES: dict[int, type[DmscBody]] = {
    EXP_TELEMETRY: dmsc_pb2.Telemetry,
    EXP_LSA_COPY: dmsc_pb2.LsaCopy,
}


def dmsc_exp_type(body: DmscBody) -> int:
    """EXP_TELEMETRY for a Telemetry, EXP_LSA_COPY for an LsaCopy."""
    for exp_type, message_type in _EXP_TYPES.items():
        if isinstance(body, message_type):
            return exp_type
    raise TypeError(f"no DMSC experimenter type for {type(body).__name__}")


def encode_dmsc_experimenter(xid: int, body: DmscBody) -> bytes:
    """EXPERIMENTER under DMSC_EXPERIMENTER_ID carrying a serialized Telemetry or LsaCopy."""
    return encode_experimenter(
        xid, DMSC_EXPERIMENTER_ID, dmsc_exp_type(body), body.SerializeToString()
    )


def decode_dmsc_experimenter(experimenter: int, exp_type: int, data: bytes) -> DmscBody:
    """The controller's side: an EXPERIMENTER's fields → checked Telemetry or LsaCopy."""
    if experimenter != DMSC_EXPERIMENTER_ID:
        raise DecodeError(f"experimenter id {experimenter:#010x} is not DMSC's")
    message_type = _EXP_TYPES.get(exp_type)
    if message_type is None:
        raise DecodeError(f"DMSC experimenter: unknown exp_type {exp_type}")
    body = parse_message(message_type, data, f"DMSC experimenter {exp_type}")
    if isinstance(body, dmsc_pb2.Telemetry):
        _check_telemetry(body)
    else:
        _check_lsa_copy(body)
    return body


def _check_telemetry(telemetry: dmsc_pb2.Telemetry) -> None:
    for sample in telemetry.samples:
        check_node_id(sample.sg_node_id, "telemetry sample")
        try:
            ServiceName.parse(sample.target)
        except InvalidName as error:
            raise DecodeError(f"telemetry from {sample.sg_node_id}: {error}") from None
        # NaN is "unknown" (proto3 doubles have no presence): no reply yet, no capacity
        known = (sample.delay_ms, sample.jitter_ms, sample.bandwidth_bps)
        if not _finite_and_positive(sample.timestamp) or not all(map(_unknown_or_positive, known)):
            raise DecodeError(
                f"telemetry from {sample.sg_node_id} for {sample.target}: value out of range"
            )
        if not 0 <= sample.loss <= 1:
            raise DecodeError(
                f"telemetry from {sample.sg_node_id} for {sample.target}: loss {sample.loss}"
            )
    for link in telemetry.links:
        what = f"link sample from {link.node_id or '?'} toward {link.neighbor or '?'}"
        check_node_id(link.node_id, what)
        check_node_id(link.neighbor, what)
        for name in ("timestamp", "capacity_bps", "tx_bps", "available_bps"):
            value = getattr(link, name)
            if not (_finite_and_positive(value) or (name == "available_bps" and math.isnan(value))):
                raise DecodeError(f"{what}: {name} {value} must be finite and >= 0")


def _finite_and_positive(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def _unknown_or_positive(value: float) -> bool:
    return math.isnan(value) or _finite_and_positive(value)


def _check_lsa_copy(copy: dmsc_pb2.LsaCopy) -> None:
    if not copy.HasField("lsa"):
        raise DecodeError("LSA copy without an LSA")
    check_lsa(copy.lsa, "LSA copy")
    for port in copy.ports:
        if not 1 <= port.port_no <= ofp.OFPP_MAX:
            raise DecodeError(f"LSA copy from {copy.lsa.originator}: port_no {port.port_no}")
        check_node_id(port.neighbor, f"LSA copy from {copy.lsa.originator}: port neighbor")
