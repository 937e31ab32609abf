"""Longest-prefix match over IPv6 prefixes: one hash table per prefix length.

DMSC names use few prefix lengths (/64, /80, /96, /112, and /128 for node addresses), so a
lookup probes a handful of dicts, longest first: cheap enough for the forwarder's per-packet
path, which looks up the destination as an int (``int.from_bytes(packet[24:40], "big")``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Generic, TypeVar

V = TypeVar("V")


class PrefixTable(Generic[V]):
    """A map from IPv6 prefixes to values with longest-prefix-match lookup."""

    def __init__(self) -> None:
        self._tables: dict[int, dict[int, V]] = {}
        self._levels: list[tuple[int, dict[int, V]]] = []  # (shift, table), longest first

    def _reindex(self) -> None:
        lengths = sorted((n for n, t in self._tables.items() if t), reverse=True)
        self._levels = [(128 - n, self._tables[n]) for n in lengths]

    def insert(self, prefix: ipaddress.IPv6Network, value: V) -> None:
        table = self._tables.get(prefix.prefixlen)
        if table is None:
            table = self._tables[prefix.prefixlen] = {}
        was_empty = not table
        table[int(prefix.network_address) >> (128 - prefix.prefixlen)] = value
        if was_empty:
            self._reindex()

    def remove(self, prefix: ipaddress.IPv6Network) -> V:
        """Remove and return the value at exactly ``prefix``; KeyError if absent."""
        table = self._tables[prefix.prefixlen]
        value = table.pop(int(prefix.network_address) >> (128 - prefix.prefixlen))
        if not table:
            self._reindex()
        return value

    def get(self, prefix: ipaddress.IPv6Network) -> V | None:
        """Exact-match lookup."""
        table = self._tables.get(prefix.prefixlen, {})
        return table.get(int(prefix.network_address) >> (128 - prefix.prefixlen))

    def lookup_int(self, address: int) -> V | None:
        """Longest-prefix match of a 128-bit address given as an int (the hot path)."""
        for shift, table in self._levels:
            value = table.get(address >> shift)
            if value is not None:
                return value
        return None

    def lookup(self, address: ipaddress.IPv6Address | str) -> V | None:
        return self.lookup_int(int(ipaddress.IPv6Address(address)))

    def items(self) -> Iterator[tuple[ipaddress.IPv6Network, V]]:
        for length, table in sorted(self._tables.items()):
            for key, value in table.items():
                yield ipaddress.IPv6Network((key << (128 - length), length)), value

    def __len__(self) -> int:
        return sum(len(t) for t in self._tables.values())

    def __contains__(self, prefix: ipaddress.IPv6Network) -> bool:
        return self.get(prefix) is not None
