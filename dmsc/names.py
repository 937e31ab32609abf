"""Service prefixes (names such as ``/B/4``) and the IPv6 addresses that carry them.

A name is one to four components. Every prefix of a name maps to a nested IPv6 prefix inside the
DMSC block, one 16-bit group per component, so longest-prefix match on an address is
longest-prefix match on the name::

    bits   0 ........ 47 | 48 .. 63 | 64 .. 79 | 80 .. 95 | 96 .. 111 | 112 .. 127
           DMSC block /48 | comp. 1  | comp. 2  | comp. 3  | comp. 4   | host
    /B      -> fd64:6d73:63:c0de::/64         address fd64:6d73:63:c0de::1
    /B/4    -> fd64:6d73:63:c0de:4::/80       address fd64:6d73:63:c0de:4::1

A component's 16-bit field is its decimal value when it is an integer in 1..0x7fff (so instance
numbers read back directly), else a hash into 0x8000..0xfffe. Field 0 means "no component here"
and 0xffff in the first group is reserved for node (infrastructure) addresses. The service
(anycast) address of ``/B`` therefore lies outside every instance prefix ``/B/x``.
Hashing can make two names collide; :class:`NameRegistry` refuses the second one.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

from dmsc.errors import InvalidName, NameCollision

#: The unique-local /48 that carries DMSC names: ``fd`` + ``64:6d73:63`` ("dmsc" in ASCII).
DEFAULT_BLOCK = ipaddress.IPv6Network("fd64:6d73:63::/48")
MAX_DEPTH = 4
FIELD_BITS = 16
BLOCK_BITS = 48
LITERAL_MAX = 0x7FFF
HASH_BASE = 0x8000
HASH_SPAN = 0xFFFF - HASH_BASE  # hashes land in 0x8000..0xfffe
INFRA_FIELD = 0xFFFF
MAX_COMPONENT_LENGTH = 63

_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def _check_component(component: str, text: str) -> None:
    if not component:
        raise InvalidName(f"service prefix {text!r}: empty component (doubled or trailing '/')")
    if len(component) > MAX_COMPONENT_LENGTH:
        raise InvalidName(
            f"service prefix {text!r}: component {component[:16]!r}... is longer than "
            f"{MAX_COMPONENT_LENGTH} characters"
        )
    if not _COMPONENT.match(component):
        raise InvalidName(
            f"service prefix {text!r}: component {component!r} must start with a letter or "
            "digit and contain only ASCII letters, digits, '_', '.', '-'"
        )


@dataclass(frozen=True, order=True)
class ServiceName:
    """A validated service prefix: ``/B`` (a service), ``/B/4`` (an instance of it), ..."""

    components: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> ServiceName:
        if not isinstance(text, str):
            raise InvalidName(f"service prefix must be a string, not {type(text).__name__}")
        if not text.startswith("/"):
            raise InvalidName(f"service prefix {text!r} must start with '/'")
        components = tuple(text[1:].split("/"))
        if len(components) > MAX_DEPTH:
            raise InvalidName(
                f"service prefix {text!r} has {len(components)} components; at most {MAX_DEPTH}"
            )
        for component in components:
            _check_component(component, text)
        return cls(components)

    def __str__(self) -> str:
        return "/" + "/".join(self.components)

    @property
    def depth(self) -> int:
        return len(self.components)

    @property
    def parent(self) -> ServiceName | None:
        """The service an instance belongs to (``/B`` for ``/B/4``); None at the top."""
        return ServiceName(self.components[:-1]) if self.depth > 1 else None

    def is_within(self, other: ServiceName) -> bool:
        """True if ``other`` is this name or one of its ancestors."""
        return self.components[: other.depth] == other.components


def as_name(name: ServiceName | str) -> ServiceName:
    return name if isinstance(name, ServiceName) else ServiceName.parse(name)


def component_field(component: str) -> int:
    """The 16-bit field of one component: literal for 1..0x7fff, else a stable hash."""
    if component.isdecimal() and component.isascii():
        value = int(component)
        if 1 <= value <= LITERAL_MAX and str(value) == component:
            return value
    digest = hashlib.blake2b(component.encode("ascii"), digest_size=8).digest()
    return HASH_BASE + int.from_bytes(digest, "big") % HASH_SPAN


def _block_int(block: ipaddress.IPv6Network) -> int:
    if block.prefixlen != BLOCK_BITS:
        raise ValueError(f"DMSC block must be a /{BLOCK_BITS}, got {block}")
    return int(block.network_address)


def prefix_length(depth: int) -> int:
    return BLOCK_BITS + FIELD_BITS * depth


def name_prefix(name: ServiceName | str, block=DEFAULT_BLOCK) -> ipaddress.IPv6Network:
    """The IPv6 prefix that routes ``name``: /64 for ``/B``, /80 for ``/B/4``, ..."""
    name = as_name(name)
    value = _block_int(block)
    for level, component in enumerate(name.components):
        value |= component_field(component) << (128 - prefix_length(level + 1))
    return ipaddress.IPv6Network((value, prefix_length(name.depth)))


def name_address(name: ServiceName | str, block=DEFAULT_BLOCK) -> ipaddress.IPv6Address:
    """The address a client sends to: the prefix with host part 1."""
    return name_prefix(name, block).network_address + 1


def address_fields(
    address: ipaddress.IPv6Address | str, block=DEFAULT_BLOCK
) -> tuple[tuple[int, ...], int] | None:
    """The name fields and host part of ``address``; None when it carries no DMSC name."""
    value = int(ipaddress.IPv6Address(address))
    if value >> (128 - BLOCK_BITS) != _block_int(block) >> (128 - BLOCK_BITS):
        return None
    groups = [(value >> (128 - prefix_length(i + 1))) & 0xFFFF for i in range(MAX_DEPTH)]
    if groups[0] in (0, INFRA_FIELD):
        return None
    fields = []
    for group in groups:
        if group == 0:
            break
        fields.append(group)
    # The group right after the last field is the host part (the last group at full depth).
    host_mask = (1 << (128 - prefix_length(len(fields)))) - 1
    return tuple(fields), value & host_mask


def node_address(node_id: str, block=DEFAULT_BLOCK) -> ipaddress.IPv6Address:
    """A node's own (infrastructure) address: ``<block>:ffff:<64-bit hash of the node id>``."""
    digest = hashlib.blake2b(node_id.encode("utf-8"), digest_size=8).digest()
    value = _block_int(block) | INFRA_FIELD << 64 | int.from_bytes(digest, "big")
    return ipaddress.IPv6Address(value)


class NameRegistry:
    """Names known to a node or an SPA: refuses collisions and turns addresses back into names."""

    def __init__(self, block: ipaddress.IPv6Network = DEFAULT_BLOCK) -> None:
        self.block = block
        self._by_prefix: dict[ipaddress.IPv6Network, ServiceName] = {}

    def __contains__(self, name: ServiceName | str) -> bool:
        name = as_name(name)
        return self._by_prefix.get(name_prefix(name, self.block)) == name

    def __len__(self) -> int:
        return len(self._by_prefix)

    def owner_of(self, name: ServiceName | str) -> ServiceName | None:
        """The registered name that holds ``name``'s prefix (itself, or a colliding name)."""
        return self._by_prefix.get(name_prefix(as_name(name), self.block))

    def register(self, name: ServiceName | str) -> ipaddress.IPv6Network:
        """Add ``name`` (and its ancestors); raise NameCollision if any prefix is taken."""
        name = as_name(name)
        lineage = [ServiceName(name.components[: i + 1]) for i in range(name.depth)]
        for each in lineage:
            holder = self.owner_of(each)
            if holder is not None and holder != each:
                raise NameCollision(
                    f"{each} maps to {name_prefix(each, self.block)}, already held by {holder}"
                )
        for each in lineage:
            self._by_prefix[name_prefix(each, self.block)] = each
        return name_prefix(name, self.block)

    def display(self, address: ipaddress.IPv6Address | str) -> str:
        """``/B/4`` for a known name's address; unknown components shown as ``#c0de``."""
        decoded = address_fields(address, self.block)
        if decoded is None:
            return str(ipaddress.IPv6Address(address))
        fields, host = decoded
        parts: list[str] = []
        for depth in range(1, len(fields) + 1):
            value = _block_int(self.block)
            for level, field in enumerate(fields[:depth]):
                value |= field << (128 - prefix_length(level + 1))
            known = self._by_prefix.get(ipaddress.IPv6Network((value, prefix_length(depth))))
            field = fields[depth - 1]
            if known is not None:
                parts.append(known.components[-1])
            elif field <= LITERAL_MAX:
                parts.append(str(field))
            else:
                parts.append(f"#{field:04x}")
        text = "/" + "/".join(parts)
        return text if host == 1 else f"{text} (host {host:#x})"
