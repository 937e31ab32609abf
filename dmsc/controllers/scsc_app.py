"""The Scheduling Center (SCSC) as an os-ken application: OpenFlow 1.3 to every SG and SR.

Two layers (STYLE.md §1):

- :class:`SchedulingCenter`, sans-I/O: what the SCSC knows — switches, the node each one is
  (from its LSA copies), the topology, the latest telemetry, the flows installed on each switch,
  the current choices — and one decision round: :func:`decide`, then :func:`diff` per switch,
  giving the FLOW_MODs to send as data (:class:`FlowChange`). Time is passed in.
- :class:`ScscApp`, the os-ken shell: turns OpenFlow events into calls on the center, sends
  what a round returns, runs rounds (periodically, and soon after news; one at a time), writes
  the decisions and telemetry logs, and answers the admin queries (``admin_handlers``).

Resync: when a switch connects (first time, or after either side restarted) its DMSC flows are
read back (FLOW multipart, filtered by the DMSC cookie tag) before anything is sent to it, and
the choices those flows carry out are taken over (:func:`read_back_choices`). A restarted SCSC
therefore sends nothing for what is already in place. Nothing is flushed on reconnection.

``docs/scheduling.md`` explains the decision; ``docs/openflow.md`` the switch side.
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
import itertools
import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (
    CONFIG_DISPATCHER,
    DEAD_DISPATCHER,
    HANDSHAKE_DISPATCHER,
    MAIN_DISPATCHER,
    set_ev_cls,
)
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofparser

from dmsc.controllers.decision import (
    COOKIE_TAG,
    COOKIE_TAG_MASK,
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
from dmsc.errors import ConfigError, DecodeError, DmscError
from dmsc.measurement.estimators import PathQuality, telemetry_entries
from dmsc.names import ServiceName
from dmsc.proto import dmsc_pb2
from dmsc.proto.codec import (
    DMSC_EXPERIMENTER_ID,
    EXP_LSA_COPY,
    EXP_TELEMETRY,
)
from dmsc.proto.openflow import ETH_TYPE_IPV6, MaskedAddress, decode_dmsc_experimenter, error_name

if TYPE_CHECKING:
    from dmsc.controllers.launcher import ScscConfig

log = logging.getLogger(__name__)

#: What a switch's flow table holds for one (priority, dst, src): the SCSC's policies are
#: identified by these, as OpenFlow identifies flow entries (OpenFlow 1.3 §6.4).
FlowKey = tuple[int, ipaddress.IPv6Network, ipaddress.IPv6Network | None]
#: (source SG, instance) -> latest quality
TelemetryTable = dict[Pair, PathQuality]
KEPT_DECISIONS = 10_000  # decision records kept in memory for the admin query
NEWS_COALESCE_S = 0.05  # the least time between the starts of two rounds


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


def _body_kind(experimenter: int, exp_type: int) -> str:
    if experimenter != DMSC_EXPERIMENTER_ID:
        return "experimenter"
    return {EXP_TELEMETRY: "telemetry", EXP_LSA_COPY: "lsa_copy"}.get(exp_type, "experimenter")


def _network(value: Any) -> ipaddress.IPv6Network | None:
    """An os-ken OXM value ("addr" or ("addr", "mask")) as a prefix; None if the mask is not a
    prefix (no policy of ours looks like that)."""
    masked = MaskedAddress.parse(value if isinstance(value, str) else "/".join(value))
    length = masked.prefix_length
    if length is None:
        return None
    return ipaddress.IPv6Network((masked.value, length))


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


def flow_from_stats(stats: Any) -> InstalledFlow | None:
    """A DMSC flow from an os-ken ``OFPFlowStats``; None for one the SCSC would never install
    (no IPv6 destination, a mask that is not a prefix, not exactly one output)."""
    dst_value, src_value = stats.match.get("ipv6_dst"), stats.match.get("ipv6_src")
    ports = [
        action.port
        for instruction in stats.instructions
        if isinstance(instruction, ofparser.OFPInstructionActions)
        for action in instruction.actions
        if isinstance(action, ofparser.OFPActionOutput)
    ]
    if dst_value is None or len(ports) != 1:
        return None
    dst = _network(dst_value)
    src = _network(src_value) if src_value is not None else None
    if dst is None or (src_value is not None and src is None):
        return None
    return InstalledFlow(stats.priority, dst, src, ports[0], stats.cookie)


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


# ---------------------------------------------------------------- the center (sans-I/O)


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


# ---------------------------------------------------------------- OpenFlow messages


def flow_match(intent: PolicyIntent) -> ofparser.OFPMatch:
    fields: dict[str, Any] = {
        "eth_type": ETH_TYPE_IPV6,
        "ipv6_dst": (str(intent.match_dst.network_address), str(intent.match_dst.netmask)),
    }
    if intent.match_src is not None:
        src = intent.match_src
        fields["ipv6_src"] = (str(src.network_address), str(src.netmask))
    return ofparser.OFPMatch(**fields)


def flow_mod(datapath: Any, change: FlowChange) -> ofparser.OFPFlowMod:
    intent = change.intent
    if change.port is not None:
        actions = [ofparser.OFPActionOutput(change.port)]
        return ofparser.OFPFlowMod(
            datapath, cookie=intent.cookie, table_id=0, command=ofp.OFPFC_ADD,
            priority=intent.priority, match=flow_match(intent),
            instructions=[ofparser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)],
        )  # fmt: skip
    # os-ken defaults out_port/out_group to 0, which selects nothing: ANY selects by match.
    return ofparser.OFPFlowMod(
        datapath, cookie=intent.cookie, cookie_mask=COOKIE_TAG_MASK, table_id=0,
        command=ofp.OFPFC_DELETE_STRICT, priority=intent.priority, out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY, match=flow_match(intent),
    )  # fmt: skip


def table_request(datapath: Any) -> ofparser.OFPFlowStatsRequest:
    """Every DMSC flow of the switch (the cookie tag selects them)."""
    return ofparser.OFPFlowStatsRequest(
        datapath, table_id=ofp.OFPTT_ALL, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
        cookie=COOKIE_TAG, cookie_mask=COOKIE_TAG_MASK, match=ofparser.OFPMatch(),
    )  # fmt: skip


# ---------------------------------------------------------------- the os-ken application


class JsonLines:
    """An append-only JSON-lines file, flushed per line so a crash loses nothing."""

    def __init__(self, path: str, what: str) -> None:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] | None = open(path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as error:
            raise DmscError(f"{what} {path}: cannot open ({error.strerror})") from None

    def write(self, row: Mapping[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class ScscApp(app_manager.OSKenApp):
    """The SCSC on os-ken. Its state lives in a :class:`SchedulingCenter` guarded by one
    lock: os-ken's event thread, the round thread and the admin threads all take it."""

    OFP_VERSIONS: ClassVar[list[int]] = [ofp.OFP_VERSION]

    def __init__(self, *args: Any, scsc_config: ScscConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config = scsc_config
        self.center = SchedulingCenter(
            scsc_config.threshold_table(), scsc_config.scheduler_config()
        )
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._keys: dict[Any, int] = {}  # os-ken Datapath -> connection serial
        self._datapaths: dict[int, Any] = {}
        self._serial = itertools.count(1)
        self._reading: dict[int, list[Any]] = {}  # multipart flow-stats parts so far
        self._sent: dict[tuple[int, int], str] = {}  # (connection, xid) -> FLOW_MOD described
        self._started = time.time()
        self._settle_until = self._started + scsc_config.startup_settle_s
        self._round_failures = 0
        self._decisions = JsonLines(scsc_config.decisions_log, "decisions_log")
        self._telemetry = JsonLines(scsc_config.telemetry_log, "telemetry_log")
        self._round_thread: Any = None

    def start(self) -> None:
        super().start()
        self._round_thread = hub.spawn(self._round_loop)

    def shutdown(self) -> None:
        """Stop deciding, flush and close the logs; safe to call twice."""
        self._stopping.set()
        self._wake.set()
        if self._round_thread is not None:
            hub.joinall([self._round_thread])
            self._round_thread = None
        with self._lock:
            self._decisions.close()
            self._telemetry.close()

    # ------------------------------------------------------------ connections

    def _key_of(self, datapath: Any) -> int:
        """The connection's serial, made on first sight (an LSA copy may precede FEATURES)."""
        key = self._keys.get(datapath)
        if key is None:
            key = next(self._serial)
            self._keys[datapath], self._datapaths[key] = key, datapath
            host, port = datapath.address[:2]
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            self.center.switch_connected(key, address, time.time())
        return key

    def _who(self, key: int | None) -> str:
        switch = self.center.switches.get(key) if key is not None else None
        if switch is None:
            return "a switch"
        return switch.node or (f"dpid {switch.dpid:#x}" if switch.dpid else switch.address)

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev: Any) -> None:
        with self._lock:
            if ev.state == MAIN_DISPATCHER:
                key = self._key_of(ev.datapath)
                self.center.switch_ready(key, ev.datapath.id)
                self.logger.info("switch dpid %#x connected from %s", ev.datapath.id,
                                 self.center.switches[key].address)  # fmt: skip
                self._read_table(key)
            elif (key := self._keys.pop(ev.datapath, None)) is not None:
                self.logger.info("%s disconnected", self._who(key))
                del self._datapaths[key]
                self._reading.pop(key, None)
                self.center.switch_lost(key)

    def _read_table(self, key: int) -> None:
        self.center.table_reading(key)
        self._reading.pop(key, None)
        self._datapaths[key].send_msg(table_request(self._datapaths[key]))

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def _flow_stats(self, ev: Any) -> None:
        msg = ev.msg
        with self._lock:
            key = self._keys.get(msg.datapath)
            if key is None:
                return
            self._reading.setdefault(key, []).extend(msg.body)
            if msg.flags & ofp.OFPMPF_REPLY_MORE:
                return
            stats = self._reading.pop(key)
            flows = [flow for flow in map(flow_from_stats, stats) if flow is not None]
            if len(flows) < len(stats):
                self.center.counters["unrecognized_flows"] += len(stats) - len(flows)
                self.logger.warning("%s: %d DMSC-tagged flows not understood, left alone",
                                    self._who(key), len(stats) - len(flows))  # fmt: skip
            self.center.table_read(key, flows)
            self.logger.info("%s: %d DMSC flows read back", self._who(key), len(flows))
        self._wake.set()

    @set_ev_cls(
        ofp_event.EventOFPErrorMsg, [HANDSHAKE_DISPATCHER, CONFIG_DISPATCHER, MAIN_DISPATCHER]
    )
    def _error(self, ev: Any) -> None:
        msg = ev.msg
        with self._lock:
            key = self._keys.get(msg.datapath)
            self.center.counters["errors_received"] += 1
            what = self._sent.pop((key, msg.xid), None) if key is not None else None
            self.logger.warning("%s refused %s: %s", self._who(key), what or f"xid {msg.xid}",
                                error_name(msg.type, msg.code))  # fmt: skip
            if what is not None and msg.datapath.state == MAIN_DISPATCHER:
                self._read_table(key)  # what it holds is no longer what we think: read again

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def _barrier(self, ev: Any) -> None:
        with self._lock:
            key = self._keys.get(ev.msg.datapath)
            self.center.counters["barrier_replies"] += 1
            for sent in [s for s in self._sent if s[0] == key and s[1] <= ev.msg.xid]:
                del self._sent[sent]  # answered by now, without an error

    # ------------------------------------------------------------ DMSC experimenter messages

    @set_ev_cls(
        ofp_event.EventOFPExperimenter, [HANDSHAKE_DISPATCHER, CONFIG_DISPATCHER, MAIN_DISPATCHER]
    )
    def _experimenter(self, ev: Any) -> None:
        msg = ev.msg
        with self._lock:
            key = self._key_of(msg.datapath)
            try:
                body = decode_experimenter(msg.experimenter, msg.exp_type, bytes(msg.data))
                self._take(key, body)
            except DecodeError as error:
                self.center.counters[f"bad_{_body_kind(msg.experimenter, msg.exp_type)}"] += 1
                self.logger.warning("%s: message refused: %s", self._who(key), error)
                return
        self._wake.set()  # news: decide soon

    def _take(self, key: int, body: dmsc_pb2.LsaCopy | TelemetryReport) -> None:
        if isinstance(body, dmsc_pb2.LsaCopy):
            known = self.center.switches[key].node
            self.center.lsa_copy(key, body)
            if known != body.lsa.originator:
                self.logger.info("%s is node %s", self.center.switches[key].address,
                                 body.lsa.originator)  # fmt: skip
            return
        for pair, quality in self.center.take_telemetry(body):
            self._telemetry.write(telemetry_row(pair, quality))

    # ------------------------------------------------------------ decision rounds

    def _round_loop(self) -> None:
        """Rounds every ``decision_interval_s``, and soon after news (telemetry, an LSA copy, a
        table read back, new thresholds). One thread, so never two rounds at a time; news
        arriving together, or during a round, makes one more round, no sooner than
        NEWS_COALESCE_S after the last one began (every SG and SR reports several times a
        second: a round per message would be wasted work on a large topology)."""
        started = 0.0
        while not self._stopping.is_set():
            self._wake.wait(self.config.decision_interval_s)
            self._stopping.wait(started + NEWS_COALESCE_S - time.monotonic())
            self._wake.clear()
            if self._stopping.is_set():
                return
            started = time.monotonic()
            try:
                self._round()
            except Exception:  # a bug in one round must not end all of them
                self._round_failures += 1
                self.logger.exception("decision round failed")

    def _topology_settled_at(self) -> float:
        """No decision while routing reconverges: probes lost to a convergence (a start, a
        link failure) are not a quality of the path. Resumes once the topology has been
        still for topology_settle_s, by when the SGs' windows hold fresh probes."""
        return self.center.topology_changed_at + self.config.topology_settle_s

    def _round(self) -> None:
        now = time.time()
        with self._lock:
            if now < self._settle_until or now < self._topology_settled_at():
                return
            result = self.center.run_round(now)
            for pair in result.read_back:
                choice = self.center.choices[pair]
                self.logger.info("%s %s: %s via %s read back from the flow tables", *pair,
                                 choice.instance, ">".join(choice.path))  # fmt: skip
            for record in result.records:
                self._decisions.write({**record.as_row(), "round": result.number})
                self.logger.info(
                    "decision %s %s: %s -> %s: %s", record.source, record.service,
                    record.old_instance, record.new_instance, record.trigger,
                )  # fmt: skip
            self._send(result.changes)

    def _send(self, changes: Iterable[FlowChange]) -> None:
        touched: dict[int, Any] = {}
        for change in changes:
            datapath = self._datapaths.get(change.switch)
            if datapath is None:
                continue
            message = flow_mod(datapath, change)
            datapath.send_msg(message)
            self._sent[(change.switch, message.xid)] = change.describe()
            self.center.counters["flow_adds" if change.is_add else "flow_deletes"] += 1
            self.logger.info("%s", change.describe())
            touched[change.switch] = datapath
        for datapath in touched.values():
            datapath.send_msg(ofparser.OFPBarrierRequest(datapath))
            self.center.counters["barriers_sent"] += 1

    # ------------------------------------------------------------ admin queries

    def admin_handlers(self) -> dict[str, Any]:
        handlers = {
            "status": self._status,
            "telemetry": lambda request: self.center.telemetry_view(time.time()),
            "links": lambda request: self.center.links_view(time.time()),
            "decisions": self._decisions_query,
            "choices": lambda request: self.center.choices_view(),
            "policies": lambda request: self.center.policies_view(request.get("node")),
            "thresholds": lambda request: thresholds_mapping(self.center.thresholds),
            "set_thresholds": self._set_thresholds,
            "reset": self._reset,
        }
        return {name: self._locked(handler) for name, handler in handlers.items()}

    def _locked(self, handler: Any) -> Any:
        def run(request: dict) -> Any:
            with self._lock:
                return handler(request)

        return run

    def _status(self, request: dict) -> dict[str, Any]:
        now = time.time()
        center = self.center
        return {
            "node_id": self.config.node_id,
            "listen": {"host": self.config.listen_host, "port": self.config.listen_port},
            "admin_socket": self.config.admin_socket,
            "started_at": self._started,
            "settling": now < max(self._settle_until, self._topology_settled_at()),
            "switches": center.switches_view(),
            "nodes": sorted(center.topology.graph),
            "instances": sorted(center.topology.instances),
            "rounds": center.rounds,
            "last_round": center.last_round,
            "round_failures": self._round_failures,
            "pending": center.pending_view(),
            "demand": center.demand_view(),
            "decide": center.timing.as_dict(),
            "counters": dict(sorted(center.counters.items())),
        }

    def _decisions_query(self, request: dict) -> list[dict[str, Any]]:
        limit = request.get("limit")
        rows = list(self.center.records)
        if limit is None:
            return rows
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ConfigError(f"limit: expected an integer >= 0, got {limit!r}")
        return rows[len(rows) - limit :] if limit else []

    def _set_thresholds(self, request: dict) -> dict[str, Any]:
        if "thresholds" not in request:
            raise ConfigError("argument 'thresholds' is missing")
        table = ThresholdTable.from_mapping(request["thresholds"], "thresholds")
        self.center.thresholds = table
        self.logger.info("thresholds set: %s", json.dumps(thresholds_mapping(table)))
        self._wake.set()
        return thresholds_mapping(table)

    def _reset(self, request: dict) -> dict[str, Any]:
        """Remove every policy, forget choices and telemetry, and settle as at start."""
        now = time.time()
        result = self.center.reset(now)
        self._send(result.changes)
        self._settle_until = now + self.config.startup_settle_s
        self.logger.info("reset: choices and telemetry forgotten, %d policies removed",
                         len(result.changes))  # fmt: skip
        return {"removed": len(result.changes), "pending": self.center.pending_view()}
