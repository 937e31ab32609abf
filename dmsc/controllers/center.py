"""What the Scheduling Center knows and decides, sans-I/O: no socket, no os-ken, no lock.

:class:`SchedulingCenter` holds the switches, the node each one is (from its LSA copies), the
topology, the latest telemetry, the flows installed on each switch and the current choices;
one decision round is :func:`decide`, then :func:`diff` per switch, giving the FLOW_MODs to
send as data (:class:`FlowChange`). Time is passed in. ``dmsc/controllers/scsc_app.py`` is the
os-ken shell around it.

Resync: when a switch connects, its DMSC flows are read back before anything is sent to it, and
the choices those flows carry out are taken over (:func:`read_back_choices`). A restarted SCSC
therefore sends nothing for what is already in place.
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
import itertools
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dmsc.controllers.decision import (
    Choice,
    Decision,
    DecisionInputs,
    DecisionRecord,
    LinkQuality,
    Pair,
    PolicyIntent,
    SchedulerConfig,
    Topology,
    decide,
    demand_from_telemetry,
    diff,
    policy_cookie,
)
from dmsc.controllers.thresholds import ThresholdTable
from dmsc.errors import ConfigError
from dmsc.measurement.estimators import PathQuality, telemetry_entries
from dmsc.names import ServiceName
from dmsc.proto import dmsc_pb2
from dmsc.proto.openflow import decode_dmsc_experimenter

#: What a switch's flow table holds for one (priority, dst, src): the SCSC's policies are
#: identified by these, as OpenFlow identifies flow entries (OpenFlow 1.3 §6.4).
FlowKey = tuple[int, ipaddress.IPv6Network, ipaddress.IPv6Network | None]
#: (source SG, instance) -> latest quality
TelemetryTable = dict[Pair, PathQuality]
KEPT_DECISIONS = 10_000  # decision records kept in memory for the admin query


# ---------------------------------------------------------------- decoding


@dataclass(frozen=True)
class LinkReading:
    """A node's report on one of its router links (``LinkSample``): what is left of the
    link's capacity toward ``neighbor``; None when the capacity is not configured."""

    node: str
    neighbor: str
    available_bps: float | None
    capacity_bps: float
    tx_bps: float
    time: float

    @classmethod
    def from_sample(cls, sample: dmsc_pb2.LinkSample) -> LinkReading:
        """From a sample ``decode_dmsc_experimenter`` has checked."""
        available = None if math.isnan(sample.available_bps) else sample.available_bps
        return cls(
            sample.node_id, sample.neighbor, available, sample.capacity_bps, sample.tx_bps,
            sample.timestamp,
        )  # fmt: skip


@dataclass(frozen=True)
class TelemetryReport:
    """One Telemetry message: the newest QoS per (SG, instance) in it, and link readings."""

    samples: Mapping[Pair, PathQuality]
    links: tuple[LinkReading, ...] = ()


def decode_experimenter(
    experimenter: int, exp_type: int, data: bytes
) -> dmsc_pb2.LsaCopy | TelemetryReport:
    """An EXPERIMENTER's body: an LsaCopy, or the telemetry it carries (QoS samples as
    :class:`PathQuality`, NaN meaning unknown). DecodeError naming the problem otherwise."""
    body = decode_dmsc_experimenter(experimenter, exp_type, data)
    if isinstance(body, dmsc_pb2.Telemetry):
        links = tuple(map(LinkReading.from_sample, body.links))
        return TelemetryReport(telemetry_entries(body.samples), links)
    return body


# ---------------------------------------------------------------- switches


@dataclass(frozen=True)
class InstalledFlow:
    """One DMSC flow in a switch's table, as the SCSC knows it (read back or sent since)."""

    priority: int
    match_dst: ipaddress.IPv6Network
    match_src: ipaddress.IPv6Network | None
    port: int
    cookie: int

    @property
    def key(self) -> FlowKey:
        return (self.priority, self.match_dst, self.match_src)


@dataclass
class SwitchState:
    """One OpenFlow connection: which node it is and what its flow table holds."""

    key: int  # the connection's serial number
    address: str
    connected_at: float
    dpid: int | None = None
    node: str | None = None  # from its LSA copies
    ports: dict[str, int] = field(default_factory=dict)  # neighbor -> port_no
    table: dict[FlowKey, InstalledFlow] | None = None  # None: not read back yet

    def neighbor_on(self, port: int) -> str:
        """The neighbor a port leads to; a placeholder no decision ever names if unknown (a
        flow to it is then re-sent or deleted)."""
        for neighbor, number in self.ports.items():
            if number == port:
                return neighbor
        return f"(port {port})"

    def intents(self) -> set[PolicyIntent]:
        """The installed flows as the decision describes policies."""
        if self.table is None or self.node is None:
            return set()
        return {
            PolicyIntent(
                self.node, f.priority, f.match_dst, f.match_src, self.neighbor_on(f.port), f.cookie
            )
            for f in self.table.values()
        }

    def record(self, change: FlowChange) -> None:
        """What the table holds once ``change`` is carried out."""
        assert self.table is not None
        intent = change.intent
        key = (intent.priority, intent.match_dst, intent.match_src)
        if change.port is None:
            self.table.pop(key, None)
        else:
            flow = InstalledFlow(*key, change.port, intent.cookie)
            self.table[key] = flow


@dataclass(frozen=True)
class FlowChange:
    """A FLOW_MOD to send: ADD ``intent`` out of ``port``, or DELETE_STRICT it (port None)."""

    switch: int
    intent: PolicyIntent
    port: int | None

    @property
    def is_add(self) -> bool:
        return self.port is not None

    def describe(self) -> str:
        intent = self.intent
        match = f"dst {intent.match_dst}" + (f" src {intent.match_src}" if intent.match_src else "")
        if self.is_add:
            return f"{intent.node}: add {match} -> {intent.next_hop} (port {self.port})"
        return f"{intent.node}: delete {match} (was -> {intent.next_hop})"


@dataclass(frozen=True)
class Pending:
    """A wanted policy not sent this round, and why; retried every round."""

    intent: PolicyIntent
    reason: str


@dataclass(frozen=True)
class RoundResult:
    number: int
    time: float
    records: tuple[DecisionRecord, ...]
    changes: tuple[FlowChange, ...]  # in sending order: adds, then deletes
    read_back: tuple[Pair, ...] = ()  # choices taken over from the switches' tables


@dataclass
class DecideTiming:
    """Time spent in decide(), in seconds."""

    last: float = 0.0
    max: float = 0.0
    count: int = 0
    total: float = 0.0

    def add(self, seconds: float) -> None:
        self.last, self.max = seconds, max(self.max, seconds)
        self.count += 1
        self.total += seconds

    def as_dict(self) -> dict[str, float]:
        mean = self.total / self.count if self.count else 0.0
        return {
            "last_ms": 1e3 * self.last,
            "max_ms": 1e3 * self.max,
            "mean_ms": 1e3 * mean,
            "count": self.count,
        }


# ---------------------------------------------------------------- resync


def read_back_choices(
    topology: Topology, installed: Mapping[str, Iterable[PolicyIntent]], now: float
) -> dict[Pair, Choice]:
    """The choices that the flows found in the switches carry out.

    A pair's flows share its cookie (``policy_cookie``): follow them from the source SG, hop by
    hop, to an SG advertising an instance of the service. What cannot be followed so far (a
    switch not read yet, a stale flow left behind) yields no choice: the decision then ignores
    those flows and the diff removes them.
    """
    hops: dict[int, dict[str, str]] = collections.defaultdict(dict)
    for node, intents in installed.items():
        for intent in intents:
            hops[intent.cookie].setdefault(node, intent.next_hop)
    services = {str(ServiceName.parse(name).parent) for name in topology.instances}
    found: dict[Pair, Choice] = {}
    for source, service in itertools.product(sorted(topology.graph), sorted(services)):
        steps = hops.get(policy_cookie(source, service))
        if not steps or source not in steps:
            continue
        path = _follow(source, steps)
        instance = next(
            (i for i in topology.instances_of(service) if path[-1] in topology.hosts(i)), None
        )
        if instance is not None and len(path) > 1:
            reason = "read back from the switches' flow tables"
            found[(source, service)] = Choice(instance, path, now, reason)
    return found


def _follow(source: str, steps: Mapping[str, str]) -> tuple[str, ...]:
    path = [source]
    while path[-1] in steps and steps[path[-1]] not in path:
        path.append(steps[path[-1]])
    return tuple(path)


# ---------------------------------------------------------------- the center


class SchedulingCenter:
    """What the SCSC knows and decides; no socket, no os-ken, no lock. Time is passed in
    (only the cost of decide() is measured, with perf_counter)."""

    def __init__(self, thresholds: ThresholdTable, scheduler: SchedulerConfig) -> None:
        self.thresholds = thresholds
        self.scheduler = scheduler
        self.switches: dict[int, SwitchState] = {}
        self.topology = Topology({}, {})
        self.topology_changed_at = 0.0  # when an LSA copy last changed the graph or the names
        self.telemetry: TelemetryTable = {}
        self.links: dict[tuple[str, str], LinkReading] = {}  # (node, neighbor) -> latest
        self.choices: dict[Pair, Choice] = {}
        self.notes: dict[Pair, str] = {}
        self.pending: list[Pending] = []
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=KEPT_DECISIONS)
        self.rounds = 0
        self.last_round: float | None = None
        self.timing = DecideTiming()
        self.counters: collections.Counter[str] = collections.Counter()
        self._node_switch: dict[str, int] = {}
        self._lsas: dict[str, dmsc_pb2.LinkStateAdvertisement] = {}
        self._last_decision: Decision | None = None
        self._tables_changed = False

    # ------------------------------------------------------------ switches

    def switch_connected(self, key: int, address: str, now: float) -> SwitchState:
        switch = SwitchState(key, address, now)
        self.switches[key] = switch
        return switch

    def switch_ready(self, key: int, dpid: int) -> None:
        self.switches[key].dpid = dpid

    def switch_lost(self, key: int) -> SwitchState | None:
        """The connection is gone: forget its table (read again on reconnection). The node's
        LSA stays in the topology: a switch without the SCSC still forwards (fail-static)."""
        switch = self.switches.pop(key, None)
        if switch is not None and switch.node and self._node_switch.get(switch.node) == key:
            del self._node_switch[switch.node]
        return switch

    def table_reading(self, key: int) -> None:
        """A read-back is under way: nothing is sent to the switch until it completes."""
        self.switches[key].table = None

    def table_read(self, key: int, flows: Iterable[InstalledFlow]) -> None:
        self.switches[key].table = {flow.key: flow for flow in flows}
        self._tables_changed = True
        self.counters["tables_read"] += 1

    def switch_of(self, node: str) -> SwitchState | None:
        key = self._node_switch.get(node)
        return self.switches.get(key) if key is not None else None

    # ------------------------------------------------------------ what switches report

    def lsa_copy(self, key: int, copy: dmsc_pb2.LsaCopy) -> None:
        """A node's own LSA and its ports. The latest copy from the node replaces the one
        before (a restarted node may begin its sequence numbers again). DecodeError if the
        topology cannot take it; nothing changes then."""
        lsa = copy.lsa
        lsas = {**self._lsas, lsa.originator: lsa}
        topology = Topology.from_lsas(lsas.values())
        switch = self.switches[key]
        older = self._node_switch.get(lsa.originator)
        if older is not None and older != key and older in self.switches:
            self.switches[older].node = None  # the newer connection of that node takes over
        if switch.node is not None and switch.node != lsa.originator:
            self._node_switch.pop(switch.node, None)
        switch.node = lsa.originator
        self._node_switch[lsa.originator] = key
        switch.ports = {}
        for port in sorted(copy.ports, key=lambda p: p.port_no):
            switch.ports.setdefault(port.neighbor, port.port_no)
        if (topology.graph, topology.names) != (self.topology.graph, self.topology.names):
            self.topology_changed_at = time.time()
        self._lsas, self.topology = lsas, topology
        self._tables_changed = True  # flows read back may now map to neighbors

    def take_telemetry(self, report: TelemetryReport) -> list[tuple[Pair, PathQuality]]:
        """Keep the newest quality per (SG, instance) and per link; return the QoS samples
        accepted (an older one than known is not)."""
        for reading in report.links:
            known_link = self.links.get((reading.node, reading.neighbor))
            if known_link is None or reading.time >= known_link.time:
                self.links[(reading.node, reading.neighbor)] = reading
        accepted = []
        for pair, quality in report.samples.items():
            known = self.telemetry.get(pair)
            if known is not None and quality.last_update < known.last_update:
                self.counters["telemetry_out_of_order"] += 1
                continue
            self.telemetry[pair] = quality
            accepted.append((pair, quality))
        self.counters["telemetry_samples"] += len(accepted)
        return accepted

    # ------------------------------------------------------------ a round

    def run_round(self, now: float) -> RoundResult:
        """Decide, and plan the FLOW_MODs that bring every known table to the decision."""
        read_back = self._take_over_read_back(now)
        # Pairs chosen earlier stay in the demand: their flows are removed by a decision,
        # never because the telemetry that started them is missing (e.g. after a restart).
        demand = demand_from_telemetry(self.telemetry) | frozenset(self.choices)
        inputs = DecisionInputs(
            self.topology, self.telemetry, demand, self.thresholds, self._link_qualities(now),
            self.choices, self.scheduler,
        )  # fmt: skip
        started = time.perf_counter()
        decision = decide(inputs, now)
        self.timing.add(time.perf_counter() - started)
        changes = self._plan(decision)
        self._last_decision = decision
        self.choices, self.notes = dict(decision.choices), dict(decision.notes)
        self.rounds += 1
        self.last_round = now
        for record in decision.records:
            self.records.append({**record.as_row(), "round": self.rounds})
        return RoundResult(self.rounds, now, decision.records, changes, read_back)

    def reset(self, now: float) -> RoundResult:
        """Forget every choice, note and measurement, and plan the removal of every DMSC policy
        in the tables known: as just started, but with the switches connected. Between two
        repetitions on a network that is kept (the experiment runner's ``reuse_network``)."""
        self.telemetry.clear()
        self.links.clear()
        self.choices, self.notes = {}, {}
        self._tables_changed = False  # what the tables hold goes, it is not taken over
        self.counters["resets"] += 1
        return self.run_round(now)

    def _link_qualities(self, now: float) -> dict[tuple[str, str], LinkQuality]:
        """Available bandwidth per (node, neighbor), as fresh as the QoS telemetry must be."""
        max_age = self.scheduler.telemetry_max_age_s
        return {
            key: LinkQuality(bandwidth_bps=reading.available_bps)
            for key, reading in self.links.items()
            if reading.available_bps is not None
            and (max_age is None or now - reading.time <= max_age)
        }

    def _take_over_read_back(self, now: float) -> tuple[Pair, ...]:
        if not self._tables_changed:
            return ()
        self._tables_changed = False
        installed = {
            switch.node: switch.intents()
            for switch in self.switches.values()
            if switch.node is not None and self._node_switch.get(switch.node) == switch.key
        }
        found = read_back_choices(self.topology, installed, now)
        taken = tuple(sorted(pair for pair in found if pair not in self.choices))
        for pair in taken:
            self.choices[pair] = found[pair]
        return taken

    def _plan(self, decision: Decision) -> tuple[FlowChange, ...]:
        wanted: dict[str, set[PolicyIntent]] = collections.defaultdict(set)
        for intent in decision.intents:
            wanted[intent.node].add(intent)
        known = {s.node for s in self.switches.values() if s.node and s.table is not None}
        adds: list[FlowChange] = []
        removes: list[FlowChange] = []
        pending: list[Pending] = []
        for node in sorted(set(wanted) | known):
            self._plan_node(node, wanted.get(node, set()), adds, removes, pending)
        self.pending = pending
        order = {i: n for n, i in enumerate(decision.install_order(c.intent for c in adds))}
        old = self._last_decision or decision
        stale = old.install_order(c.intent for c in removes)
        unorder = {i: n for n, i in enumerate(reversed(stale))}
        adds.sort(key=lambda change: order[change.intent])
        removes.sort(key=lambda change: unorder[change.intent])
        return (*adds, *removes)

    def _plan_node(
        self,
        node: str,
        wanted: set[PolicyIntent],
        adds: list[FlowChange],
        removes: list[FlowChange],
        pending: list[Pending],
    ) -> None:
        switch = self.switch_of(node)
        if switch is None or switch.table is None:
            why = (
                f"no switch of {node} connected"
                if switch is None
                else f"{node}'s flow table is being read back"
            )
            pending.extend(Pending(i, why) for i in sorted(wanted, key=PolicyIntent.sort_key))
            return
        to_add, to_remove = diff(wanted, switch.intents())
        for intent in to_add:
            port = switch.ports.get(intent.next_hop)
            if port is None:
                why = f"{node} reports no port to {intent.next_hop} in its LSA copy"
                pending.append(Pending(intent, why))
                continue
            adds.append(FlowChange(switch.key, intent, port))
            switch.record(adds[-1])
        for intent in to_remove:
            removes.append(FlowChange(switch.key, intent, None))
            switch.record(removes[-1])

    # ------------------------------------------------------------ views (admin queries)

    def switches_view(self) -> list[dict[str, Any]]:
        return [
            {
                "dpid": None if s.dpid is None else f"{s.dpid:#018x}",
                "node": s.node,
                "address": s.address,
                "connected_at": s.connected_at,
                "table": "read" if s.table is not None else "being read",
                "flows": None if s.table is None else len(s.table),
                "ports": dict(sorted(s.ports.items())),
            }
            for s in sorted(self.switches.values(), key=lambda s: (s.node or "", s.key))
        ]

    def pending_view(self) -> list[dict[str, Any]]:
        return [{**_intent_view(p.intent), "reason": p.reason} for p in self.pending]

    def telemetry_view(self, now: float) -> list[dict[str, Any]]:
        return [
            {**telemetry_row(pair, quality), "age_s": now - quality.last_update}
            for pair, quality in sorted(self.telemetry.items())
        ]

    def links_view(self, now: float) -> list[dict[str, Any]]:
        return [
            {**dataclasses.asdict(reading), "age_s": now - reading.time}
            for _, reading in sorted(self.links.items())
        ]

    def choices_view(self) -> list[dict[str, Any]]:
        return [
            {
                "source": source,
                "service": service,
                "instance": choice.instance,
                "path": list(choice.path),
                "since": choice.since,
                "reason": choice.reason,
                "all_bad": choice.all_bad,
                "note": self.notes.get((source, service), ""),
            }
            for (source, service), choice in sorted(self.choices.items())
        ]

    def demand_view(self) -> list[dict[str, str]]:
        """Why each pair is as it is, also the ones routing decides."""
        return [
            {"source": source, "service": service, "note": note}
            for (source, service), note in sorted(self.notes.items())
        ]

    def policies_view(self, node: str | None = None) -> dict[str, list[dict[str, Any]]]:
        tables = {
            s.node: s
            for s in self.switches.values()
            if s.node and s.table is not None and self._node_switch.get(s.node) == s.key
        }
        if node is not None and node not in tables:
            raise ConfigError(f"no flow table known for node {node!r}; known: {sorted(tables)}")
        return {
            name: [
                {**_intent_view(i), "port": tables[name].ports.get(i.next_hop)}
                for i in sorted(tables[name].intents(), key=PolicyIntent.sort_key)
            ]
            for name in sorted(tables)
            if node is None or name == node
        }


def _intent_view(intent: PolicyIntent) -> dict[str, Any]:
    return {
        "node": intent.node,
        "dst": str(intent.match_dst),
        "src": None if intent.match_src is None else str(intent.match_src),
        "next_hop": intent.next_hop,
        "priority": intent.priority,
        "cookie": f"{intent.cookie:#018x}",
    }


def telemetry_row(pair: Pair, quality: PathQuality) -> dict[str, Any]:
    """One line of the telemetry log; ``time`` is when the SG measured it."""
    sg, target = pair
    return {
        "sg": sg,
        "target": target,
        "delay_ms": quality.delay_ms,
        "jitter_ms": quality.jitter_ms,
        "loss": quality.loss,
        "bandwidth_bps": quality.bandwidth_bps,
        "time": quality.last_update,
    }


def thresholds_mapping(table: ThresholdTable) -> dict[str, Any]:
    """The table in its configuration shape, ``ThresholdTable.from_mapping`` reads it back. A
    service lists only what differs from the default, as written in a configuration: a later
    change of the default still applies to the rest."""
    default = dataclasses.asdict(table.default)
    return {
        "default": default,
        "services": {
            name: {k: v for k, v in dataclasses.asdict(limits).items() if v != default[k]}
            for name, limits in sorted(table.services.items())
        },
    }
