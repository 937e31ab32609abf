"""The forwarder's tables, as the node program builds them, and their per-packet (compiled) form.

The node program builds a :class:`Tables` (plain frozen dataclasses, validated on construction)
from the FIB, its pods and the SCSC's policies, and hands it to ``Forwarder.set_tables``. That
compiles it into a :class:`CompiledTables` (precomputed Ethernet headers, action tuples holding
their counter lists) and swaps one reference: the loop reads it once per packet batch, so a swap
is atomic and never blocks forwarding.

Counters (:class:`Counters`) survive swaps: a route keeps its counts while its prefix stays in
the table, a policy while its (priority, match) stays, as an OpenFlow flow entry does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum

from dmsc.errors import ConfigError
from dmsc.lpm import PrefixTable

ALL_ONES = (1 << 128) - 1


def parse_mac(text: str | bytes) -> bytes:
    """``"02:00:00:00:00:01"`` (or 6 raw bytes) -> 6 bytes; ConfigError otherwise."""
    if isinstance(text, bytes):
        if len(text) != 6:
            raise ConfigError(f"MAC address must be 6 bytes, got {len(text)}")
        return text
    parts = text.split(":")
    try:
        value = bytes(int(part, 16) for part in parts)
    except ValueError:
        raise ConfigError(f"bad MAC address {text!r}") from None
    if len(parts) != 6 or any(len(part) not in (1, 2) for part in parts):
        raise ConfigError(f"bad MAC address {text!r}: want six ':'-separated hex bytes")
    return value


def format_mac(mac: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in mac)


def _check_mac(mac: object, what: str) -> None:
    if not isinstance(mac, bytes) or len(mac) != 6:
        raise ConfigError(f"{what}: MAC must be 6 bytes, got {mac!r}")


@dataclass(frozen=True)
class Port:
    """A data interface: its index in the forwarder (0..n-1), its name and its MAC."""

    index: int
    name: str
    mac: bytes

    def __post_init__(self) -> None:
        _check_mac(self.mac, f"port {self.name}")


@dataclass(frozen=True)
class NextHop:
    """Where a packet goes: out of port ``port`` to the neighbor (or pod) with MAC ``mac``."""

    port: int
    mac: bytes

    def __post_init__(self) -> None:
        _check_mac(self.mac, f"next hop on port {self.port}")


@dataclass(frozen=True)
class Route:
    """A FIB entry. ``local``: delivered to pods on this SG (next hops = pod-facing port + pod MAC).

    Several next hops share the traffic (ECMP); a flow always takes the same one.
    """

    prefix: ipaddress.IPv6Network
    label: str
    next_hops: tuple[NextHop, ...]
    local: bool = False

    def __post_init__(self) -> None:
        if not self.next_hops:
            raise ConfigError(f"route {self.prefix} ({self.label}): no next hop")


@dataclass(frozen=True)
class Masked:
    """A 128-bit value and mask (OpenFlow's ``ipv6_dst``/``ipv6_src`` with a mask)."""

    value: int
    mask: int = ALL_ONES

    def __post_init__(self) -> None:
        if not (0 <= self.mask <= ALL_ONES and 0 <= self.value <= ALL_ONES):
            raise ConfigError(f"IPv6 match {self.value:#x}/{self.mask:#x} is not 128-bit")
        if self.value & ~self.mask:
            raise ConfigError(f"IPv6 match value {self.value:#x} has bits outside its mask")

    @classmethod
    def prefix(cls, prefix: ipaddress.IPv6Network | str) -> Masked:
        network = ipaddress.IPv6Network(prefix)
        return cls(int(network.network_address), int(network.netmask))

    def matches(self, address: int) -> bool:
        return address & self.mask == self.value


#: The action of a policy that drops what it matches.
DROP = None


@dataclass(frozen=True)
class Policy:
    """An SCSC policy: consulted before the FIB, highest ``priority`` first.

    ``dst``/``src`` None match anything; ``action`` is a :class:`NextHop` (output there) or
    :data:`DROP`. ``cookie`` is the controller's opaque id (OpenFlow flow cookie).
    """

    priority: int
    cookie: int
    dst: Masked | None
    src: Masked | None
    action: NextHop | None

    @property
    def key(self) -> tuple[int, int, int, int, int]:
        """What identifies the entry (OpenFlow: priority + match): its counters follow it."""
        dst = self.dst or Masked(0, 0)
        src = self.src or Masked(0, 0)
        return (self.priority, dst.value, dst.mask, src.value, src.mask)


def _as_address_set(addresses: Iterable[ipaddress.IPv6Address | str]) -> frozenset[int]:
    return frozenset(int(ipaddress.IPv6Address(a)) for a in addresses)


@dataclass(frozen=True)
class Tables:
    """Everything the forwarder decides with. Built by the node program, validated here.

    ``own_addresses``: packets to them are left to the kernel (so are link-local, multicast
    and non-IPv6 frames). ``icmp_source``: the source of ICMPv6 errors (the node's address);
    None -> the smallest own address; no own address at all -> no ICMPv6 errors are sent.
    """

    ports: tuple[Port, ...]
    routes: PrefixTable[Route] = field(default_factory=PrefixTable)
    policies: tuple[Policy, ...] = ()
    own_addresses: frozenset[ipaddress.IPv6Address] = frozenset()
    icmp_source: ipaddress.IPv6Address | None = None

    def __post_init__(self) -> None:
        for position, port in enumerate(self.ports):
            if port.index != position:
                raise ConfigError(f"port {port.name}: index {port.index}, expected {position}")
        for _, route in self.routes.items():
            for hop in route.next_hops:
                self._check_port(hop.port, f"route {route.prefix} ({route.label})")
        for policy in self.policies:
            if policy.action is not None:
                self._check_port(policy.action.port, f"policy cookie {policy.cookie:#x}")

    def _check_port(self, index: int, what: str) -> None:
        if not 0 <= index < len(self.ports):
            raise ConfigError(f"{what}: no port {index} (have {len(self.ports)})")

    @property
    def source_address(self) -> ipaddress.IPv6Address | None:
        if self.icmp_source is not None:
            return ipaddress.IPv6Address(self.icmp_source)
        own = sorted(ipaddress.IPv6Address(a) for a in self.own_addresses)
        return own[0] if own else None


class DropReason(IntEnum):
    """Why a frame was not forwarded (per-port drop counters are indexed by this)."""

    MALFORMED = 0  # too short, not version 6, truncated payload
    NO_ROUTE = 1
    POLICY = 2  # a drop policy matched
    HOP_LIMIT = 3  # hop limit exhausted (time exceeded)
    SCOPE = 4  # link-local or multicast source, not forwardable
    TX_ERROR = 5  # the output socket refused it (ring or buffer full)
    ICMP_RATE = 6  # an ICMPv6 error suppressed by the rate limit (the packet is counted too)


@dataclass
class PortCounters:
    """Plain ints updated by the loop; read them from another thread as a snapshot."""

    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    to_kernel: int = 0  # frames left to the kernel's own stack (ND, hellos, ...)
    drops: list[int] = field(default_factory=lambda: [0] * len(DropReason))

    def drop_counts(self) -> dict[str, int]:
        return {reason.name.lower(): self.drops[reason] for reason in DropReason}


class Counters:
    """Counters of routes (by prefix), policies (by :attr:`Policy.key`) and ports (by index).

    Route and policy counters are 2-element lists ``[packets, bytes]`` shared with the compiled
    tables, so the loop updates them with two list stores and no lookup.
    """

    def __init__(self) -> None:
        self.routes: dict[ipaddress.IPv6Network, list[int]] = {}
        self.policies: dict[tuple[int, int, int, int, int], list[int]] = {}
        self.ports: list[PortCounters] = []

    def route(self, prefix: ipaddress.IPv6Network | str) -> tuple[int, int]:
        packets, size = self.routes.get(ipaddress.IPv6Network(prefix), (0, 0))
        return packets, size

    def policy(self, policy: Policy) -> tuple[int, int]:
        packets, size = self.policies.get(policy.key, (0, 0))
        return packets, size

    def adopt(self, tables: Tables) -> None:
        """Keep the counters of entries still present, start new ones at zero, drop the rest."""
        self.routes = {p: self.routes.get(p) or [0, 0] for p, _ in tables.routes.items()}
        self.policies = {x.key: self.policies.get(x.key) or [0, 0] for x in tables.policies}
        while len(self.ports) < len(tables.ports):
            self.ports.append(PortCounters())


# The compiled, per-packet form. Actions are tuples so the loop unpacks them without attribute
# lookups; each is built once per table swap, so deciding allocates nothing for them.
FORWARD, TO_KERNEL, DROP_ACTION, ICMP_ERROR = 0, 1, 2, 3
#: (FORWARD, out port, 12-byte Ethernet dst+src, [packets, bytes] of the route or policy)
ForwardAction = tuple[int, int, bytes, list[int]]


@dataclass(frozen=True)
class CompiledRoute:
    label: str
    hops: tuple[ForwardAction, ...]


@dataclass(frozen=True)
class CompiledPolicy:
    dst_value: int
    dst_mask: int
    src_value: int
    src_mask: int
    action: tuple  # a ForwardAction, or (DROP_ACTION, DropReason.POLICY, counters)


@dataclass(frozen=True)
class CompiledTables:
    """What :func:`dmsc.dataplane.decide.decide` reads (see the module docstring)."""

    tables: Tables
    port_macs: tuple[bytes, ...]
    routes: PrefixTable[CompiledRoute]
    policies: tuple[CompiledPolicy, ...]
    own: frozenset[int]
    source: bytes | None  # 16 bytes, or None: send no ICMPv6 errors


def _forward(hop: NextHop, port_macs: tuple[bytes, ...], stats: list[int]) -> ForwardAction:
    return (FORWARD, hop.port, hop.mac + port_macs[hop.port], stats)


def compile_tables(tables: Tables, counters: Counters) -> CompiledTables:
    """The per-packet form of ``tables``, counting into ``counters`` (adopted first)."""
    counters.adopt(tables)
    macs = tuple(port.mac for port in tables.ports)
    routes: PrefixTable[CompiledRoute] = PrefixTable()
    for prefix, route in tables.routes.items():
        stats = counters.routes[prefix]
        hops = tuple(_forward(hop, macs, stats) for hop in route.next_hops)
        routes.insert(prefix, CompiledRoute(route.label, hops))
    policies = []
    for policy in sorted(tables.policies, key=lambda p: -p.priority):
        stats = counters.policies[policy.key]
        action = (
            (DROP_ACTION, DropReason.POLICY, stats)
            if policy.action is None
            else _forward(policy.action, macs, stats)
        )
        dst, src = policy.dst or Masked(0, 0), policy.src or Masked(0, 0)
        policies.append(CompiledPolicy(dst.value, dst.mask, src.value, src.mask, action))
    source = tables.source_address
    return CompiledTables(
        tables=tables,
        port_macs=macs,
        routes=routes,
        policies=tuple(policies),
        own=_as_address_set(tables.own_addresses),
        source=source.packed if source is not None else None,
    )
