"""From SPF to forwarding: which prefixes are installable, the RIB, and the FIB it yields.

A prefix from an LSA is installed only if its SPA attestation verifies for that name and that
originator and has not expired. A service prefix announced by several SGs (anycast) is routed to
the nearest by path cost; equal-cost origins share the traffic (their first hops are merged).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from dmsc.errors import AuthenticationError, DecodeError, NameCollision
from dmsc.lpm import PrefixTable
from dmsc.names import NameRegistry, ServiceName, node_address
from dmsc.proto import dmsc_pb2
from dmsc.proto.codec import parse_message
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
    #: when the RIB must be computed again although no LSA changed: the earliest expiry of an
    #: installed attestation, or the time a refused one becomes valid
    recheck_at: float | None


@dataclass(frozen=True)
class Refused:
    """Why a prefix is not installed; ``retry_at`` when time alone may change the verdict."""

    reason: str
    retry_at: float | None = None


def _issued_at(attestation: dmsc_pb2.Attestation) -> float | None:
    try:
        return parse_message(dmsc_pb2.AttestationBody, attestation.body, "attestation").issued_at
    except DecodeError:
        return None


class AttestationCache:
    """Remembers verdicts so SPF runs do not re-verify unchanged Ed25519 signatures.

    A valid attestation is remembered until it expires. A refusal is remembered only when time
    cannot change it: an attestation that is not valid yet is checked again, and its
    ``retry_at`` makes the RIB be recomputed when it becomes valid.
    """

    def __init__(self, checker: AttestationChecker) -> None:
        self.checker = checker
        self._verdicts: dict[tuple[bytes, bytes, str, str], float | Refused] = {}

    def expiry_or_refusal(
        self, attestation: dmsc_pb2.Attestation, name: str, originator: str, now: float
    ) -> float | Refused:
        key = (attestation.body, attestation.signature, name, originator)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._verify(key, attestation, name, originator, now)
        if isinstance(verdict, float) and verdict <= now:
            return Refused(f"attestation for {name} expired at {verdict:.3f}")
        return verdict

    def _verify(self, key, attestation, name: str, originator: str, now: float) -> float | Refused:
        try:
            verdict: float | Refused = self.checker.verify(attestation, name, originator, now)
        except AuthenticationError as error:
            issued_at = _issued_at(attestation)
            if issued_at is not None and issued_at > now:
                return Refused(str(error), retry_at=issued_at)  # not cached: time will tell
            verdict = Refused(str(error))
        self._verdicts[key] = verdict
        return verdict

    def forget_older_than(self, now: float) -> None:
        expired = [k for k, v in self._verdicts.items() if isinstance(v, float) and v <= now]
        for key in expired:
            del self._verdicts[key]


@functools.lru_cache(maxsize=65536)
def node_route_prefix(node: str) -> ipaddress.IPv6Network:
    """The /128 route to a node's address (cached: SPF asks for every node on every run)."""
    return ipaddress.IPv6Network((int(node_address(node)), 128))


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
        prefix = node_route_prefix(node)
        routes[prefix] = _route(prefix, node, spf, self_id, [(distance, node)])
    rejections: list[Rejection] = []
    candidates: dict[ServiceName, list[tuple[int, str]]] = {}
    recheck: list[float] = []
    for originator, announced in announcements:
        if originator not in spf.distance:
            continue
        verdict = cache.expiry_or_refusal(announced.attestation, announced.name, originator, now)
        if isinstance(verdict, Refused):
            rejections.append(Rejection(originator, announced.name, verdict.reason))
            if verdict.retry_at is not None:
                recheck.append(verdict.retry_at)
            continue
        recheck.append(verdict)
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
    return RibBuild(routes, rejections, min(recheck, default=None))


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
