"""The SCSC's decision: topology + telemetry + thresholds + previous state -> wanted policies.

A pure function, :func:`decide`, with time passed in. The os-ken application around it feeds it
what it learned (LSA copies, QoS samples), diffs the wanted policies against what it installed
(:func:`diff`) and sends the FLOW_MODs. ``docs/scheduling.md`` explains the algorithm; briefly,
for each (source SG, service) in the demand:

- **Routing decides until it fails.** Without a previous choice, the instance routing alone
  reaches (the nearest by link cost) is kept, with no policy, as long as its telemetry crosses
  no threshold (the draft's "preset conditions"). When it crosses one, the SCSC takes the pair
  over and keeps it.
- **Score.** Instances are ranked by (no reply, number of thresholds crossed, delay, loss,
  jitter, -bandwidth, path weight, name): "crosses nothing" first, then lower delay.
- **Switch rule.** A candidate replaces the current instance if it crosses fewer thresholds,
  or as many and its delay is lower by the hysteresis margin (default 20 %).
- **Hold-down.** No change within ``hold_down_s`` of the last one, unless it is forced: the
  current instance is withdrawn or unreachable, or its path lost a link.
- **All bad.** When every instance crosses a threshold the least bad is kept, and the record
  says that all are bad.
- **Path.** Dijkstra over link weights ``cost + delay_weight * delay_ms`` (plus a large
  penalty when the link's own quality crosses the service's thresholds); a kept instance keeps
  its path unless the path broke or a new one weighs less by the hysteresis margin.
- **Policies.** On every node of the path except the last: traffic to the service's anycast
  address (/128) from each instance prefix the source SG advertises (its pods' source
  addresses) goes to the next node of the path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import ipaddress
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from itertools import pairwise
from types import MappingProxyType
from typing import Any

from dmsc.controllers.thresholds import (
    Crossing,
    Thresholds,
    ThresholdTable,
    crossings,
    describe,
)
from dmsc.errors import ConfigError, DecodeError, InvalidName
from dmsc.measurement.estimators import PathQuality
from dmsc.names import ServiceName, name_address, name_prefix
from dmsc.proto import dmsc_pb2
from dmsc.routing.spf import two_way_graph

#: (source SG, service name)
Pair = tuple[str, str]
Path = tuple[str, ...]

#: Above the FIB (which is not in the policy table at all) and leaving room on both sides.
POLICY_PRIORITY = 1000
#: Every DMSC cookie carries this tag in its top 16 bits, so the controller can find (and
#: delete, with ``COOKIE_TAG_MASK``) all flows it installed, whatever their pair.
COOKIE_TAG = 0xD5C0 << 48
COOKIE_TAG_MASK = 0xFFFF << 48


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SchedulerConfig:
    """How the SCSC decides; all checked on construction, refused with the field's name."""

    #: a candidate as bad as the current must have this much lower delay (0.2 = 20 % lower)
    hysteresis: float = 0.2
    #: ... and at least this much lower in absolute terms: on a LAN-like path of 1 ms, 20 %
    #: is 0.2 ms, which the noise of a 10-probe mean exceeds (it flapped every hold-down)
    hysteresis_floor_ms: float = 2.0
    #: seconds after a change during which only forced changes happen
    hold_down_s: float = 10.0
    #: link weight per ms of measured link delay, in cost units (Figure 2 links cost 10)
    delay_weight: float = 1.0
    #: added to the weight of a link whose own quality crosses the service's thresholds:
    #: large enough that any path without such a link is preferred, finite so that a path
    #: through one still exists when there is no other
    crossing_penalty: float = 1e6
    #: telemetry older than this is ignored (None: never); a frozen prober must not pin a pair
    telemetry_max_age_s: float | None = 10.0
    #: OpenFlow priority of the policies
    policy_priority: int = POLICY_PRIORITY

    def __post_init__(self) -> None:
        for each in fields(self):
            value = getattr(self, each.name)
            rule, check = _SCHEDULER_RULES[each.name]
            if value is None and each.name == "telemetry_max_age_s":
                continue
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if not numeric or math.isnan(value) or not check(value):
                raise ConfigError(f"scheduler {each.name}: must be {rule}, got {value!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "scheduler") -> SchedulerConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a mapping, got {type(data).__name__}")
        known = {each.name for each in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown}; known: {sorted(known)}")
        try:
            return cls(**data)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None


_SCHEDULER_RULES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "hysteresis": ("in [0, 1)", lambda v: 0 <= v < 1),
    "hysteresis_floor_ms": (">= 0", lambda v: 0 <= v < math.inf),
    "hold_down_s": (">= 0", lambda v: v >= 0),
    "delay_weight": (">= 0", lambda v: v >= 0),
    "crossing_penalty": ("> 0", lambda v: v > 0),
    "telemetry_max_age_s": ("> 0 or null", lambda v: v > 0),
    "policy_priority": ("an integer in 1..65535", lambda v: isinstance(v, int) and 0 < v < 1 << 16),
}


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class LinkQuality:
    """What is known of one link's quality; None = unknown. Keyed by (a, b) in the inputs and
    used for both directions unless (b, a) has its own entry."""

    delay_ms: float | None = None
    jitter_ms: float | None = None
    loss: float | None = None
    bandwidth_bps: float | None = None


@dataclass(frozen=True)
class Topology:
    """The router graph (two-way adjacencies only) and the names each node advertises."""

    graph: Mapping[str, Mapping[str, int]]
    names: Mapping[str, frozenset[str]]

    @classmethod
    def from_adjacencies(
        cls,
        advertised: Mapping[str, Iterable[tuple[str, int]]],
        names: Mapping[str, Iterable[str]],
    ) -> Topology:
        """From each node's (neighbor, cost) list, keeping only edges both ends list."""
        normal = {node: frozenset(map(_normal_name, found)) for node, found in names.items()}
        return cls(two_way_graph(advertised), normal)

    @classmethod
    def from_lsas(cls, lsas: Iterable[dmsc_pb2.LinkStateAdvertisement]) -> Topology:
        """From LSA copies (``LsaCopy.lsa``): the newest per originator, purges left out."""
        newest: dict[str, dmsc_pb2.LinkStateAdvertisement] = {}
        for lsa in lsas:
            known = newest.get(lsa.originator)
            if known is None or lsa.sequence > known.sequence:
                newest[lsa.originator] = lsa
        live = [lsa for lsa in newest.values() if lsa.lifetime_ms > 0]
        try:
            return cls.from_adjacencies(
                {lsa.originator: [(a.neighbor, a.cost) for a in lsa.adjacencies] for lsa in live},
                {lsa.originator: [p.name for p in lsa.prefixes] for lsa in live},
            )
        except InvalidName as error:
            raise DecodeError(f"LSA copy: {error}") from None

    @cached_property
    def instances(self) -> frozenset[str]:
        """Advertised names below a service that are no other advertised name's ancestor:
        ``/B/4`` is an instance, ``/B`` (the anycast name its pod also announces) is not."""
        advertised = {ServiceName.parse(n) for found in self.names.values() for n in found}
        ancestors = {ServiceName(n.components[:i]) for n in advertised for i in range(1, n.depth)}
        return frozenset(str(n) for n in advertised if n.depth > 1 and n not in ancestors)

    def hosts(self, name: str) -> tuple[str, ...]:
        """The nodes advertising ``name``."""
        return self._hosts_by_name.get(name, ())

    def instances_of(self, service: str) -> tuple[str, ...]:
        return self._instances_by_service.get(service, ())

    @cached_property
    def _hosts_by_name(self) -> dict[str, tuple[str, ...]]:
        hosts: dict[str, list[str]] = {}
        for node in sorted(self.names):
            for name in self.names[node]:
                hosts.setdefault(name, []).append(node)
        return {name: tuple(nodes) for name, nodes in hosts.items()}

    @cached_property
    def _instances_by_service(self) -> dict[str, tuple[str, ...]]:
        by_service: dict[str, list[str]] = {}
        for instance in sorted(self.instances):
            by_service.setdefault(str(ServiceName.parse(instance).parent), []).append(instance)
        return {service: tuple(instances) for service, instances in by_service.items()}

    def client_prefixes(self, node: str) -> tuple[ipaddress.IPv6Network, ...]:
        """The instance prefixes ``node`` advertises: where its pods' traffic comes from."""
        found = self.names.get(node, frozenset()) & self.instances
        return tuple(sorted(name_prefix(name) for name in found))


def demand_from_telemetry(telemetry: Iterable[Pair]) -> frozenset[Pair]:
    """(SG, service) pairs implied by telemetry keys: an SG probes the instances of the
    services its pods use, so a sample from sg2 about ``/B/4`` means sg2 uses ``/B``."""
    return frozenset(
        (source, str(parent))
        for source, target in telemetry
        if (parent := ServiceName.parse(target).parent) is not None
    )


def _normal_name(name: str) -> str:
    return str(ServiceName.parse(name))


@dataclass(frozen=True)
class Choice:
    """The instance and path chosen for a pair, since when, and why."""

    instance: str
    path: Path
    since: float
    reason: str
    all_bad: bool = False


@dataclass(frozen=True)
class DecisionInputs:
    topology: Topology
    #: latest quality per (source SG, instance name) the SG measured
    telemetry: Mapping[Pair, PathQuality]
    #: which source SGs use which services
    demand: frozenset[Pair]
    thresholds: ThresholdTable = field(default_factory=ThresholdTable)
    #: measured link quality per (node, node), when known
    links: Mapping[tuple[str, str], LinkQuality] = field(default_factory=dict)
    #: the choices of the previous decision (``Decision.choices``)
    previous: Mapping[Pair, Choice] = field(default_factory=dict)
    config: SchedulerConfig = field(default_factory=SchedulerConfig)

    def __post_init__(self) -> None:
        for source, service in self.demand:
            try:
                ServiceName.parse(service)
            except InvalidName as error:
                raise ConfigError(f"demand ({source}, {service}): {error}") from None


# ---------------------------------------------------------------- outputs


@dataclass(frozen=True, order=True)
class PolicyIntent:
    """One forwarding policy: at ``node``, traffic to ``match_dst`` (from ``match_src``) goes
    to the neighbor ``next_hop``. ``cookie`` names the (source, service) pair it serves."""

    node: str
    priority: int
    match_dst: ipaddress.IPv6Network
    match_src: ipaddress.IPv6Network | None
    next_hop: str
    cookie: int

    @property
    def match_key(self) -> tuple:
        """What OpenFlow identifies a flow entry by: table (node), priority, match."""
        return (self.node, self.priority, self.match_dst, self.match_src)

    def sort_key(self) -> tuple:
        return (self.node, self.cookie, str(self.match_dst), str(self.match_src), self.next_hop)


@dataclass(frozen=True)
class DecisionRecord:
    """One change of a pair's instance or path (or the news that all instances are bad)."""

    time: float
    source: str
    service: str
    trigger: str
    old_instance: str | None
    old_path: Path
    new_instance: str | None
    new_path: Path
    all_bad: bool = False

    def as_row(self) -> dict[str, Any]:
        """A flat row for the experiment's decisions table; paths as ``sg1>sr1>sg4``."""
        row = dataclasses.asdict(self)
        row["old_path"] = ">".join(self.old_path)
        row["new_path"] = ">".join(self.new_path)
        return row


@dataclass(frozen=True)
class Decision:
    choices: Mapping[Pair, Choice]
    intents: frozenset[PolicyIntent]
    records: tuple[DecisionRecord, ...]
    #: why each pair in the demand is as it is (also when nothing changed)
    notes: Mapping[Pair, str]

    def install_order(self, intents: Iterable[PolicyIntent]) -> list[PolicyIntent]:
        """``intents`` with the nodes nearest the end of their path first. Installing in this
        order (and removing old policies in the reverse order of the old decision) means a
        packet steered by an upstream policy never meets a node not yet told where to send it
        (where the FIB might send it back: a transient loop)."""
        rank: dict[tuple[int, str], int] = {}
        for (source, service), choice in self.choices.items():
            cookie = policy_cookie(source, service)
            for index, node in enumerate(choice.path):
                rank[(cookie, node)] = len(choice.path) - 1 - index
        return sorted(intents, key=lambda i: (rank.get((i.cookie, i.node), 0), i.sort_key()))


# ---------------------------------------------------------------- policies


def policy_cookie(source: str, service: str) -> int:
    """A 64-bit OpenFlow cookie fixed by (source SG, service): the tag, then 48 hash bits."""
    digest = hashlib.blake2b(f"{source}\0{service}".encode(), digest_size=6).digest()
    return COOKIE_TAG | int.from_bytes(digest, "big")


def policy_intents(
    topology: Topology, source: str, service: str, path: Path, priority: int = POLICY_PRIORITY
) -> frozenset[PolicyIntent]:
    """The policies steering ``source``'s clients of ``service`` along ``path``.

    One per (node of the path but the last, client prefix of the source): the last node
    delivers the anycast address to its own pod by its FIB. Matching the source prefix keeps
    other SGs' traffic to the same service on their own choices.
    """
    anycast = ipaddress.IPv6Network(name_address(service))
    cookie = policy_cookie(source, service)
    return frozenset(
        PolicyIntent(node, priority, anycast, prefix, next_hop, cookie)
        for node, next_hop in pairwise(path)
        for prefix in topology.client_prefixes(source)
    )


def diff(
    wanted: set[PolicyIntent] | frozenset[PolicyIntent],
    installed: set[PolicyIntent] | frozenset[PolicyIntent],
) -> tuple[tuple[PolicyIntent, ...], tuple[PolicyIntent, ...]]:
    """(to_add, to_remove), each sorted. An installed intent whose match is re-added with
    another action or cookie is *not* in to_remove: an OpenFlow ADD with the same match and
    priority overwrites it (OpenFlow 1.3 §6.4), and a DELETE sent after it would delete the
    new flow."""
    to_add = set(wanted) - set(installed)
    replaced = {intent.match_key for intent in to_add}
    to_remove = {i for i in set(installed) - set(wanted) if i.match_key not in replaced}
    return (
        tuple(sorted(to_add, key=PolicyIntent.sort_key)),
        tuple(sorted(to_remove, key=PolicyIntent.sort_key)),
    )


# ---------------------------------------------------------------- paths


def link_weight(
    cost: float, quality: LinkQuality | None, limits: Thresholds, config: SchedulerConfig
) -> float:
    """``cost + delay_weight * delay_ms``, plus ``crossing_penalty`` if the link by itself
    crosses one of the service's thresholds; just ``cost`` when nothing is measured."""
    if quality is None:
        return float(cost)
    weight = cost + config.delay_weight * (quality.delay_ms or 0.0)
    if crossings(quality, limits):
        weight += config.crossing_penalty
    return weight


def weighted_graph(
    graph: Mapping[str, Mapping[str, int]],
    links: Mapping[tuple[str, str], LinkQuality],
    limits: Thresholds,
    config: SchedulerConfig,
) -> dict[str, dict[str, float]]:
    return {
        u: {
            v: link_weight(cost, links.get((u, v), links.get((v, u))), limits, config)
            for v, cost in neighbors.items()
        }
        for u, neighbors in graph.items()
    }


def shortest_routes(
    graph: Mapping[str, Mapping[str, float]], source: str
) -> dict[str, tuple[float, Path]]:
    """Dijkstra from ``source``: node -> (distance, path). Among paths of equal weight the
    smallest node sequence wins, so every run (and every test) picks the same one."""
    routes: dict[str, tuple[float, Path]] = {}
    heap: list[tuple[float, Path]] = [(0.0, (source,))]
    while heap:
        distance, path = heapq.heappop(heap)
        if path[-1] in routes:
            continue
        routes[path[-1]] = (distance, path)
        for neighbor, weight in graph.get(path[-1], {}).items():
            if neighbor not in routes:
                heapq.heappush(heap, (distance + weight, (*path, neighbor)))
    return routes


def _nearest(
    routes: Mapping[str, tuple[float, Path]], targets: Iterable[str]
) -> tuple[float, Path] | None:
    reached = [routes[target] for target in targets if target in routes]
    return min(reached) if reached else None


def _path_weight(graph: Mapping[str, Mapping[str, float]], path: Path) -> float | None:
    """The weight of ``path``; None if one of its links is gone."""
    total = 0.0
    for u, v in pairwise(path):
        weight = graph.get(u, {}).get(v)
        if weight is None:
            return None
        total += weight
    return total


def _broken_link(graph: Mapping[str, Mapping[str, int]], path: Path) -> str:
    for u, v in pairwise(path):
        if v not in graph.get(u, {}):
            return f"link {u}-{v} down"
    return "path ends elsewhere"


# ---------------------------------------------------------------- candidates


@dataclass(frozen=True)
class _Candidate:
    instance: str
    path: Path
    weight: float
    quality: PathQuality | None
    crossed: tuple[Crossing, ...]

    @property
    def badness(self) -> tuple[bool, int]:
        return (any(c.metric == "reply" for c in self.crossed), len(self.crossed))

    @property
    def delay(self) -> float:
        known = self.quality.delay_ms if self.quality else None
        return math.inf if known is None else known

    def score(self) -> tuple:
        quality = self.quality
        assert quality is not None
        jitter = math.inf if quality.jitter_ms is None else quality.jitter_ms
        bandwidth = quality.bandwidth_bps or 0.0
        return (
            *self.badness,
            self.delay,
            quality.loss,
            jitter,
            -bandwidth,
            self.weight,
            self.instance,
        )


def _better(challenger: _Candidate, current: _Candidate, config: SchedulerConfig) -> bool:
    """The switch rule: fewer thresholds crossed, or as many and delay lower by the margin
    (relative and absolute)."""
    if challenger.badness != current.badness:
        return challenger.badness < current.badness
    return (
        challenger.delay < current.delay * (1.0 - config.hysteresis)
        and current.delay - challenger.delay >= config.hysteresis_floor_ms
    )


@dataclass(frozen=True)
class _Context:
    """Everything one pair's decision looks at."""

    inputs: DecisionInputs
    now: float
    source: str
    service: str
    weights: dict[str, dict[str, float]]
    candidates: dict[str, _Candidate]
    cache: _RoundCache

    @property
    def config(self) -> SchedulerConfig:
        return self.inputs.config

    @property
    def measured(self) -> list[_Candidate]:
        return [c for c in self.candidates.values() if c.quality is not None]

    @property
    def all_bad(self) -> bool:
        return bool(self.measured) and all(c.crossed for c in self.measured)

    def record(
        self, trigger: str, old: tuple[str | None, Path], new: Choice | None
    ) -> DecisionRecord:
        new_instance, new_path = (new.instance, new.path) if new else (None, ())
        all_bad = new.all_bad if new else False
        return DecisionRecord(
            self.now, self.source, self.service, trigger, *old, new_instance, new_path, all_bad
        )


class _RoundCache:
    """Within one decide(): the weighted graph depends on the service's thresholds only, and
    Dijkstra on that and the source; pairs share them (2 to 10 times faster on large topologies)."""

    def __init__(self, inputs: DecisionInputs) -> None:
        self.inputs = inputs
        self._weights: dict[Thresholds, dict[str, dict[str, float]]] = {}
        self._routes: dict[tuple[str, Thresholds | None], dict[str, tuple[float, Path]]] = {}

    def weights(self, limits: Thresholds) -> dict[str, dict[str, float]]:
        if limits not in self._weights:
            inputs = self.inputs
            self._weights[limits] = weighted_graph(
                inputs.topology.graph, inputs.links, limits, inputs.config
            )
        return self._weights[limits]

    def routes(self, source: str, limits: Thresholds | None) -> dict[str, tuple[float, Path]]:
        """Dijkstra from ``source`` on the QoS-weighted graph, or on plain costs (None)."""
        key = (source, limits)
        if key not in self._routes:
            graph = self.inputs.topology.graph if limits is None else self.weights(limits)
            self._routes[key] = shortest_routes(graph, source)
        return self._routes[key]


def _context(inputs: DecisionInputs, pair: Pair, now: float, cache: _RoundCache) -> _Context:
    source, service = pair
    limits = inputs.thresholds.for_service(service)
    weights = cache.weights(limits)
    routes = cache.routes(source, limits)
    candidates = {}
    for instance in inputs.topology.instances_of(service):
        route = _nearest(routes, inputs.topology.hosts(instance))
        if route is None:
            continue
        weight, path = route
        candidates[instance] = _candidate(inputs, source, instance, path, weight, limits, now)
    return _Context(inputs, now, source, service, weights, candidates, cache)


def _candidate(
    inputs: DecisionInputs,
    source: str,
    instance: str,
    path: Path,
    weight: float,
    limits: Thresholds,
    now: float,
) -> _Candidate:
    """``instance`` reached over ``path``: what the source SG measured of it (with the path's
    bandwidth) and which limits that crosses."""
    quality = _with_path_bandwidth(_fresh(inputs, (source, instance), now), inputs.links, path)
    crossed = crossings(quality, limits) if quality else ()
    return _Candidate(instance, path, weight, quality, crossed)


def path_bandwidth(links: Mapping[tuple[str, str], LinkQuality], path: Path) -> float | None:
    """The least available bandwidth measured along ``path`` (None: nothing measured)."""
    known = []
    for u, v in pairwise(path):
        quality = links.get((u, v), links.get((v, u)))
        if quality is not None and quality.bandwidth_bps is not None:
            known.append(quality.bandwidth_bps)
    return min(known, default=None)


def _with_path_bandwidth(
    quality: PathQuality | None, links: Mapping[tuple[str, str], LinkQuality], path: Path
) -> PathQuality | None:
    """An SG measures delay, jitter and loss end to end, but bandwidth is a property of links,
    reported by the node at each end: the path's is its narrowest link's."""
    if quality is None or quality.bandwidth_bps is not None:
        return quality
    bandwidth = path_bandwidth(links, path)
    return quality if bandwidth is None else replace(quality, bandwidth_bps=bandwidth)


def _fresh(inputs: DecisionInputs, key: Pair, now: float) -> PathQuality | None:
    quality = inputs.telemetry.get(key)
    max_age = inputs.config.telemetry_max_age_s
    if quality is None or (max_age is not None and now - quality.last_update > max_age):
        return None
    return quality


# ---------------------------------------------------------------- the decision


@dataclass(frozen=True)
class _Outcome:
    choice: Choice | None
    note: str
    records: tuple[DecisionRecord, ...] = ()


def decide(inputs: DecisionInputs, now: float) -> Decision:
    """The wanted choices, policies and change records for every pair of the demand."""
    choices: dict[Pair, Choice] = {}
    notes: dict[Pair, str] = {}
    records: list[DecisionRecord] = []
    cache = _RoundCache(inputs)
    for pair in sorted(inputs.demand):
        outcome = _decide_pair(_context(inputs, pair, now, cache), inputs.previous.get(pair))
        notes[pair] = outcome.note
        records.extend(outcome.records)
        if outcome.choice is not None:
            choices[pair] = outcome.choice
    priority = inputs.config.policy_priority
    intents = frozenset().union(
        *(
            policy_intents(inputs.topology, source, service, choice.path, priority)
            for (source, service), choice in choices.items()
        )
    )
    return Decision(MappingProxyType(choices), intents, tuple(records), MappingProxyType(notes))


def _decide_pair(ctx: _Context, previous: Choice | None) -> _Outcome:
    if ctx.source not in ctx.inputs.topology.graph:
        return _drop(ctx, previous, f"source {ctx.source} is not in the topology")
    if previous is None:
        return _first_choice(ctx)
    current = ctx.candidates.get(previous.instance)
    if current is None:
        return _move(ctx, previous, _gone(ctx, previous.instance))
    if current.quality is None:
        return _keep(ctx, previous, current, f"no fresh telemetry for {current.instance}: kept")
    return _review(ctx, previous, current)


def _gone(ctx: _Context, instance: str) -> str:
    if not ctx.inputs.topology.hosts(instance):
        return f"{instance} withdrawn (no SG advertises it)"
    return f"{instance} unreachable from {ctx.source}"


def _drop(ctx: _Context, previous: Choice | None, why: str) -> _Outcome:
    """No choice any more: policies removed, routing decides."""
    if previous is None:
        return _Outcome(None, f"{why}; routing decides")
    trigger = f"{why}; policies removed, routing decides"
    return _Outcome(None, trigger, (ctx.record(trigger, (previous.instance, previous.path), None),))


def _first_choice(ctx: _Context) -> _Outcome:
    """Take a pair over from routing only when routing's own instance crosses a threshold."""
    default, plain_path = _routing_choice(ctx)
    if default is None:
        return _Outcome(None, f"no reachable instance of {ctx.service}; routing decides")
    default = _as_routed(ctx, default, plain_path)
    if default.quality is None:
        return _Outcome(None, f"no telemetry for {default.instance} yet; routing decides")
    if not default.crossed:
        return _Outcome(None, f"routing's choice {default.instance} meets the thresholds")
    chosen = _challenger(ctx, default)
    trigger = _with_all_bad(
        ctx, f"{default.instance} (routing's choice): {describe(default.crossed)}", chosen
    )
    choice = Choice(chosen.instance, chosen.path, ctx.now, trigger, ctx.all_bad)
    return _Outcome(choice, trigger, (ctx.record(trigger, (default.instance, plain_path), choice),))


def _routing_choice(ctx: _Context) -> tuple[_Candidate | None, Path]:
    """The instance routing reaches on its own: the nearest by link cost (anycast), and the
    path it takes. Equal-cost instances share traffic in the FIB; we take the first by name."""
    plain = ctx.cache.routes(ctx.source, None)
    reached = []
    for candidate in ctx.candidates.values():
        route = _nearest(plain, ctx.inputs.topology.hosts(candidate.instance))
        if route is not None:
            reached.append((route[0], candidate.instance, route[1]))
    if not reached:
        return None, ()
    _, instance, path = min(reached)
    return ctx.candidates[instance], path


def _as_routed(ctx: _Context, candidate: _Candidate, plain_path: Path) -> _Candidate:
    """``candidate`` on the path routing gives it: what its traffic meets without a policy
    (a narrow link there counts even if the QoS-weighted path avoids it)."""
    if plain_path == candidate.path:
        return candidate
    limits = ctx.inputs.thresholds.for_service(ctx.service)
    weight = _path_weight(ctx.weights, plain_path)
    weight = math.inf if weight is None else weight
    return _candidate(ctx.inputs, ctx.source, candidate.instance, plain_path, weight, limits,
                      ctx.now)  # fmt: skip


def _challenger(ctx: _Context, current: _Candidate) -> _Candidate:
    """The best-scored measured instance if the switch rule prefers it, else ``current``."""
    best = min(ctx.measured, key=_Candidate.score)
    if best is not current and _better(best, current, ctx.config):
        return best
    return current


def _with_all_bad(ctx: _Context, trigger: str, chosen: _Candidate) -> str:
    if not ctx.all_bad:
        return trigger
    if chosen is min(ctx.measured, key=_Candidate.score):
        why = "the least bad"
    else:
        why = f"none is better by the {ctx.config.hysteresis:.0%} margin"
    return f"{trigger}; all instances cross thresholds, {chosen.instance} chosen as {why}"


def _move(ctx: _Context, previous: Choice, why: str) -> _Outcome:
    """Forced: the current instance is gone. Hold-down does not apply."""
    if not ctx.measured:
        return _drop(ctx, previous, f"{why}; no other instance measured")
    best = min(ctx.measured, key=_Candidate.score)
    trigger = _with_all_bad(ctx, why, best)
    choice = Choice(best.instance, best.path, ctx.now, trigger, ctx.all_bad)
    old = (previous.instance, previous.path)
    return _Outcome(choice, trigger, (ctx.record(trigger, old, choice),))


def _review(ctx: _Context, previous: Choice, current: _Candidate) -> _Outcome:
    """A managed pair with fresh telemetry: switch, or keep (and maybe re-path)."""
    challenger = _challenger(ctx, current)
    if challenger is current:
        return _keep(ctx, previous, current, f"{current.instance} kept")
    until = previous.since + ctx.config.hold_down_s
    if ctx.now < until:
        note = f"held down until {until:g}: {challenger.instance} would replace it"
        return _keep(ctx, previous, current, note)
    if current.crossed:
        trigger = f"{current.instance}: {describe(current.crossed)}"
    else:
        trigger = (
            f"{challenger.instance} delay {challenger.delay:.1f} ms beats {current.instance}'s "
            f"{current.delay:.1f} ms by more than {ctx.config.hysteresis:.0%}"
        )
    trigger = _with_all_bad(ctx, trigger, challenger)
    choice = Choice(challenger.instance, challenger.path, ctx.now, trigger, ctx.all_bad)
    old = (previous.instance, previous.path)
    return _Outcome(choice, trigger, (ctx.record(trigger, old, choice),))


def _keep(ctx: _Context, previous: Choice, current: _Candidate, note: str) -> _Outcome:
    """Same instance: follow a broken or much worse path, and record news of all being bad."""
    path, why = _review_path(ctx, previous, current)
    all_bad = ctx.all_bad and bool(current.crossed)
    changed = path != previous.path
    choice = dataclasses.replace(
        previous,
        path=path,
        all_bad=all_bad,
        since=ctx.now if changed else previous.since,
        reason=why if changed else previous.reason,
    )
    records = []
    if changed:
        records.append(ctx.record(why, (previous.instance, previous.path), choice))
    if all_bad and not previous.all_bad:
        text = "; ".join(f"{c.instance}: {describe(c.crossed)}" for c in ctx.measured)
        trigger = f"all instances cross thresholds ({text}); keeping {current.instance}"
        records.append(ctx.record(trigger, (previous.instance, path), choice))
    return _Outcome(choice, why if changed else note, tuple(records))


def _review_path(ctx: _Context, previous: Choice, current: _Candidate) -> tuple[Path, str]:
    """The path to keep for an unchanged instance, and why it changed if it did."""
    old, new = previous.path, current.path
    if old == new:
        return old, ""
    old_weight = _path_weight(ctx.weights, old)
    hosts = ctx.inputs.topology.hosts(current.instance)
    if old_weight is None or old[0] != ctx.source or old[-1] not in hosts:
        return (
            new,
            f"{current.instance}: path {'>'.join(old)} broken "
            f"({_broken_link(ctx.inputs.topology.graph, old)})",
        )
    if ctx.now < previous.since + ctx.config.hold_down_s:
        return old, ""
    if current.weight < old_weight * (1.0 - ctx.config.hysteresis):
        return new, (
            f"{current.instance}: path {'>'.join(new)} (weight {current.weight:g}) beats "
            f"{'>'.join(old)} ({old_weight:g}) by more than {ctx.config.hysteresis:.0%}"
        )
    return old, ""
