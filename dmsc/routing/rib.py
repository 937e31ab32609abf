"""From SPF to forwarding: which prefixes are installable, the RIB, and the FIB it yields.

A prefix from an LSA is installed only if its SPA attestation verifies for that name and that
originator and has not expired. A service prefix announced by several SGs (anycast) is routed to
the nearest by path cost; equal-cost origins share the traffic (their first hops are merged).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from dmsc.errors import AuthenticationError, NameCollision
from dmsc.lpm import PrefixTable
from dmsc.names import NameRegistry, ServiceName, node_address
from dmsc.proto import dmsc_pb2
from dmsc.routing.spf import NextHop, SpfResult


class AttestationChecker(Protocol):
    """What the RIB needs of :class:`dmsc.spa.claims.AttestationVerifier`."""

    def verify(
        self, attestation: dmsc_pb2.Attestation, name: str, sg_node_id: str, now: float
    ) -> float: ...


@dataclass(frozen=True)
class RibEntry:
    """A route: ``label`` is the service name, or the node id for a node address."""

    prefix: ipaddress.IPv6Network
    label: str
    distance: int
    origins: tuple[str, ...]
    next_hops: frozenset[NextHop]
    local: bool  # delivered here (the computing node is one of the nearest origins)


@dataclass(frozen=True)
class Rejection:
    originator: str
    name: str
    reason: str


@dataclass
class RibBuild:
    routes: dict[ipaddress.IPv6Network, RibEntry]
    rejections: list[Rejection]
    valid_until: float | None  # the earliest attestation expiry among installed prefixes


class AttestationCache:
    """Remembers verdicts so SPF runs do not re-verify unchanged Ed25519 signatures."""

    def __init__(self, checker: AttestationChecker) -> None:
        self.checker = checker
        self._verdicts: dict[tuple[bytes, bytes, str, str], float | str] = {}

    def expiry_or_reason(
        self, attestation: dmsc_pb2.Attestation, name: str, originator: str, now: float
    ) -> float | str:
        key = (attestation.body, attestation.signature, name, originator)
        verdict = self._verdicts.get(key)
        if verdict is None:
            try:
                verdict = self.checker.verify(attestation, name, originator, now)
            except AuthenticationError as error:
                verdict = str(error)
            self._verdicts[key] = verdict
        if isinstance(verdict, float) and verdict <= now:
            return f"attestation for {name} expired at {verdict:.3f}"
        return verdict

    def forget_older_than(self, now: float) -> None:
        expired = [k for k, v in self._verdicts.items() if isinstance(v, float) and v <= now]
        for key in expired:
            del self._verdicts[key]


def _nearest(candidates: list[tuple[int, str]]) -> tuple[int, tuple[str, ...]]:
    best = min(distance for distance, _ in candidates)
    return best, tuple(sorted(o for d, o in candidates if d == best))


def _route(prefix, label, spf: SpfResult, self_id: str, candidates) -> RibEntry:
    distance, origins = _nearest(candidates)
    hops = frozenset().union(*(spf.first_hops[o] for o in origins if o != self_id))
    return RibEntry(prefix, label, distance, origins, hops, self_id in origins)


def build_rib(
    self_id: str,
    spf: SpfResult,
    announcements: Iterable[tuple[str, dmsc_pb2.AnnouncedPrefix]],
    cache: AttestationCache,
    now: float,
) -> RibBuild:
    """Routes to every reachable node address and every valid, reachable service prefix."""
    routes: dict[ipaddress.IPv6Network, RibEntry] = {}
    for node, distance in spf.distance.items():
        prefix = ipaddress.IPv6Network((node_address(node), 128))
        routes[prefix] = _route(prefix, node, spf, self_id, [(distance, node)])
    rejections: list[Rejection] = []
    candidates: dict[ServiceName, list[tuple[int, str]]] = {}
    valid_until: float | None = None
    for originator, announced in announcements:
        if originator not in spf.distance:
            continue
        verdict = cache.expiry_or_reason(announced.attestation, announced.name, originator, now)
        if isinstance(verdict, str):
            rejections.append(Rejection(originator, announced.name, verdict))
            continue
        valid_until = verdict if valid_until is None else min(valid_until, verdict)
        name = ServiceName.parse(announced.name)
        candidates.setdefault(name, []).append((spf.distance[originator], originator))
    registry = NameRegistry()
    for name in sorted(candidates):
        try:
            prefix = registry.register(name)
        except NameCollision as error:
            origins = ",".join(sorted(o for _, o in candidates[name]))
            rejections.append(Rejection(origins, str(name), str(error)))
            continue
        routes[prefix] = _route(prefix, str(name), spf, self_id, candidates[name])
    return RibBuild(routes, rejections, valid_until)


@dataclass(frozen=True)
class FibEntry:
    """What the forwarder needs per prefix; next hops sorted so ECMP hashing is stable."""

    prefix: ipaddress.IPv6Network
    label: str
    next_hops: tuple[NextHop, ...]
    local: bool


def build_fib(routes: dict[ipaddress.IPv6Network, RibEntry]) -> PrefixTable[FibEntry]:
    fib: PrefixTable[FibEntry] = PrefixTable()
    for prefix, route in routes.items():
        if route.local or route.next_hops:
            fib.insert(
                prefix, FibEntry(prefix, route.label, tuple(sorted(route.next_hops)), route.local)
            )
    return fib
