"""The SG/SR program's OpenFlow side: its agent, the SCSC connection, a listener for ovs-ofctl.

A thin asyncio shell around the sans-I/O :class:`dmsc.nodes.ofagent.OpenFlowAgent`
(docs/openflow.md). The node connects out to the SCSC over the management network and keeps
reconnecting while it is away (fail-static: the policy table stays and keeps forwarding, entries
age by their own timeouts). Whenever the SCSC changes the table, the forwarder gets the entries
as :class:`Policy` rows; the forwarder's per-policy and per-port counters go back into the agent
for statistics and idle timeouts. The node's own LSA, with which port leads to which neighbor,
is copied to the SCSC (EXPERIMENTER) after each handshake and whenever it changes.

OpenFlow port numbers are the forwarder's port indices + 1 (router links first, then pod links).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import ipaddress
import logging
import math
from collections.abc import Callable

from dmsc.dataplane.tables import Masked, NextHop, Policy
from dmsc.nodes.config import host_port
from dmsc.nodes.linkio import is_up
from dmsc.nodes.ofagent import (
    AgentState,
    ControllerConnected,
    ControllerLost,
    FlowCounters,
    FlowEntry,
    OpenFlowAgent,
    OpenFlowSession,
    PortCounters,
    PortInfo,
    RequestRefused,
    SwitchDescription,
)
from dmsc.proto import dmsc_pb2
from dmsc.proto.openflow import MaskedAddress

log = logging.getLogger(__name__)
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.1, 1.0  # the SCSC is back in service within a second
HOUSEKEEPING_S = 0.25  # counters into the agent, LSA copy check, agent timers
KEPT_POLICY_CHANGES = 10_000  # the policy-change log kept for the admin query


def datapath_id(node_id: str) -> int:
    """A stable 48-bit datapath id from the node id (OpenFlow shows it as 16 hex digits)."""
    return int.from_bytes(hashlib.blake2b(node_id.encode(), digest_size=6).digest(), "big")


def port_number(index: int) -> int:
    return index + 1


def policy_from_entry(entry: FlowEntry, hop_of_port: Callable[[int], NextHop | None]):
    """The forwarder's row for one flow entry; None when its output port has no next hop yet
    (a link down, a pod gone): the FIB then decides, which is what the SCSC would fall back to.
    """
    match = entry.match
    dst = Masked(match.ipv6_dst.value, match.ipv6_dst.mask) if match.ipv6_dst else None
    src = Masked(match.ipv6_src.value, match.ipv6_src.mask) if match.ipv6_src else None
    if entry.drop:
        return Policy(entry.priority, entry.cookie, dst, src, None)
    hop = hop_of_port(entry.outputs[0])
    if hop is None:
        return None
    return Policy(entry.priority, entry.cookie, dst, src, hop)


class OpenFlowLink:
    """An extension of :class:`RouterNode`, after :class:`Forwarding` (whose tables it feeds)."""

    def __init__(self, node, forwarding, clock: Callable[[], float]) -> None:
        self.node = node
        self.forwarding = forwarding
        self.clock = clock
        config = node.config
        self.controller = host_port(config.controller, "controller")
        self.capacity = {i.name: i.capacity_bps for i in config.interfaces}
        self.agent = OpenFlowAgent(
            datapath_id(config.node_id),
            self._port_infos(),
            clock(),
            port_stats_provider=self._port_counters,
            description=SwitchDescription(
                hardware=f"{config.role.upper()} Python forwarder (AF_PACKET)",
                serial_number=config.node_id,
                datapath=f"{config.role} {config.node_id}",
            ),
        )
        self.counters = {"connects": 0, "disconnects": 0, "lsa_copies": 0, "policy_loads": 0}
        self.last_lost_reason = ""
        self._writer: asyncio.StreamWriter | None = None
        self._peers: dict[OpenFlowSession, asyncio.StreamWriter] = {}
        self._table_loaded = -1
        self._lsa_sent: bytes | None = None
        self._raw_counts: dict[tuple, tuple[int, int]] = {}  # policy key -> last count seen
        self._entry_counts: dict[int, list] = {}  # entry_id -> [packets, bytes, last_used]
        self._table_rows: dict[tuple, dict] = {}  # what the policy table held when last loaded
        self.policy_changes: collections.deque[dict] = collections.deque(maxlen=KEPT_POLICY_CHANGES)
        self._tx_readings: dict[str, tuple[int, float]] = {}  # port -> (tx bytes, when)
        self._tasks: list[asyncio.Task] = []
        self._server: asyncio.AbstractServer | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.node.config.openflow_listen:
            host, port = host_port(self.node.config.openflow_listen, "openflow_listen")
            self._server = await asyncio.start_server(self._serve_peer, host, port)
        self._tasks = [
            asyncio.create_task(self._controller_loop(), name="openflow-controller"),
            asyncio.create_task(self._housekeeping(), name="openflow-housekeeping"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
        for writer in list(self._peers.values()):
            writer.close()

    def fib_changed(self) -> None:
        self._maybe_send_lsa_copy()
        self._flush_controller()
        self._load_policies()  # a next hop's MAC may have appeared or gone

    # ------------------------------------------------------------------ the SCSC session

    async def _controller_loop(self) -> None:
        host, port = self.controller
        backoff = RECONNECT_MIN_S
        while True:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_S)
                continue
            backoff = RECONNECT_MIN_S
            self._writer = writer
            self.counters["connects"] += 1
            try:
                await self._run_session(reader, writer)
            finally:
                self._writer = None
                if self.agent.state is not AgentState.DISCONNECTED:
                    self.agent.connection_lost(self.clock())
                writer.close()
                self.counters["disconnects"] += 1
                self._lsa_sent = None  # a new session starts with a fresh copy
            await asyncio.sleep(RECONNECT_MIN_S)

    async def _run_session(self, reader: asyncio.StreamReader, writer) -> None:
        self.agent.connection_made(self.clock())
        if not self._flush_controller():
            return
        while True:
            try:
                data = await reader.read(65536)
            except ConnectionError:
                return
            if not data:
                self.last_lost_reason = "the SCSC closed the connection"
                return
            self._sync_counters()
            self.agent.receive(data, self.clock())
            if not self._after_input():
                return

    def _after_input(self) -> bool:
        """Send what the agent produced, act on its events, reload policies if they changed.
        False when the session is over."""
        alive = self._flush_controller()
        self._load_policies()
        return alive

    def _flush_controller(self) -> bool:
        """Act on the agent's events, then write what it queued. False when the session is
        over (the caller closes the socket)."""
        alive = True
        while (event := self.agent.next_event()) is not None:
            if isinstance(event, ControllerConnected):
                log.info("%s: SCSC connected", self.node.config.node_id)
                self._maybe_send_lsa_copy()
            elif isinstance(event, ControllerLost):
                log.warning("%s: SCSC lost: %s", self.node.config.node_id, event.reason)
                self.last_lost_reason = event.reason
                alive = False
            elif isinstance(event, RequestRefused):
                log.warning("%s: refused an SCSC request: %s", self.node.config.node_id, event)
        data = self.agent.data_to_send()
        if data and self._writer is not None:
            self._writer.write(data)
        if not alive and self._writer is not None:
            self._writer.close()  # a silent SCSC (dead interval): the pending read ends too
        return alive

    # ------------------------------------------------------------------ ovs-ofctl peers

    async def _serve_peer(self, reader: asyncio.StreamReader, writer) -> None:
        session = self.agent.open_session(self.clock())
        self._peers[session] = writer
        session.connection_made(self.clock())
        try:
            writer.write(session.data_to_send())
            while data := await reader.read(65536):
                self._sync_counters()
                session.receive(data, self.clock())
                writer.write(session.data_to_send())
                self._load_policies()  # ovs-ofctl add-flow / del-flows
                if any(isinstance(e, ControllerLost) for e in iter(session.next_event, None)):
                    break
        except ConnectionError:
            pass
        finally:
            self.agent.session_closed(session)
            del self._peers[session]
            writer.close()

    # ------------------------------------------------------------------ periodic work

    async def _housekeeping(self) -> None:
        telemetry_interval = self.node.config.telemetry_interval_ms / 1000
        next_telemetry = self.clock()
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                if self.clock() >= next_telemetry:
                    next_telemetry = self.clock() + telemetry_interval
                    self._send_link_telemetry(self.clock())
                self._sync_counters()
                self.agent.handle_timer(self.clock())  # idle/hard timeouts, echo keepalives
                self._flush_controller()
                for session, writer in self._peers.items():
                    writer.write(session.data_to_send())
                self._load_policies()
                self._maybe_send_lsa_copy()
                self._update_ports()
                self._flush_controller()
            except Exception:  # the node must outlive any bug here: log it and carry on
                log.exception("%s: OpenFlow housekeeping failed", self.node.config.node_id)

    def link_samples(self, now: float) -> list[dmsc_pb2.LinkSample]:
        """Each router link with a FULL neighbor: capacity, what we sent over it since the
        last reading, and what is left. The first reading of a port only sets the baseline."""
        forwarder = self.forwarding.forwarder
        if forwarder is None:
            return []
        samples = []
        for port in self.forwarding.ports:
            neighbor = self.forwarding.router_neighbor(port.name)
            tx_bytes = forwarder.counters.ports[port.index].tx_bytes
            last = self._tx_readings.get(port.name)
            self._tx_readings[port.name] = (tx_bytes, now)
            if neighbor is None or last is None or now <= last[1] or tx_bytes < last[0]:
                continue
            tx_bps = 8 * (tx_bytes - last[0]) / (now - last[1])
            capacity = float(self.capacity.get(port.name, 0))
            samples.append(dmsc_pb2.LinkSample(
                node_id=self.node.config.node_id, neighbor=neighbor, interface=port.name,
                timestamp=now, capacity_bps=capacity, tx_bps=tx_bps,
                available_bps=max(0.0, capacity - tx_bps) if capacity else math.nan,
            ))  # fmt: skip
        return samples

    def _send_link_telemetry(self, now: float) -> None:
        samples = self.link_samples(now)
        if samples:
            self.agent.send_dmsc(dmsc_pb2.Telemetry(links=samples), now)

    def send_telemetry(self, telemetry: dmsc_pb2.Telemetry) -> bool:
        """For the prober: False (and counted by the agent) when the SCSC is not connected."""
        sent = self.agent.send_dmsc(telemetry, self.clock())
        self._flush_controller()
        return sent

    # ------------------------------------------------------------------ policies and counters

    def _load_policies(self) -> None:
        version = (self.agent.table_version, self.node.router.fib_version)
        if version == self._table_loaded:
            return
        self._table_loaded = version
        policies = []
        for entry in self.agent.entries():
            policy = policy_from_entry(entry, self._hop_of_port)
            if policy is not None:
                policies.append(policy)
        self.counters["policy_loads"] += 1
        self.forwarding.set_policies(tuple(policies))
        rows = table_rows(self.agent.entries())
        self.policy_changes.extend(table_changes(self._table_rows, rows, self.clock()))
        self._table_rows = rows

    def _hop_of_port(self, port_no: int) -> NextHop | None:
        index = port_no - 1
        if not 0 <= index < len(self.forwarding.ports):
            return None
        mac = self.forwarding.neighbor_mac(self.forwarding.ports[index].name)
        return NextHop(index, mac) if mac is not None else None

    def _sync_counters(self) -> None:
        """The forwarder counts per policy key; the agent wants cumulative counts per entry."""
        forwarder = self.forwarding.forwarder
        if forwarder is None:
            return
        now = self.clock()
        counts = forwarder.counters.policies
        updates = {}
        for entry in self.agent.entries():
            key = _policy_key(entry)
            raw = tuple(counts.get(key, (0, 0)))
            last = self._raw_counts.get(key, (0, 0))
            if raw[0] < last[0]:  # the forwarder restarted this policy's count
                last = (0, 0)
            self._raw_counts[key] = raw
            mine = self._entry_counts.setdefault(entry.entry_id, [0, 0, None])
            if raw[0] > last[0]:
                mine[0] += raw[0] - last[0]
                mine[1] += raw[1] - last[1]
                mine[2] = now
            updates[entry.entry_id] = FlowCounters(mine[0], mine[1], mine[2])
        live = {e.entry_id for e in self.agent.entries()}
        self._entry_counts = {k: v for k, v in self._entry_counts.items() if k in live}
        self.agent.update_counters(updates)

    def _port_counters(self) -> dict[int, PortCounters]:
        forwarder = self.forwarding.forwarder
        if forwarder is None:
            return {}
        return {
            port_number(i): PortCounters(
                c.rx_packets, c.tx_packets, c.rx_bytes, c.tx_bytes, sum(c.drops)
            )
            for i, c in enumerate(forwarder.counters.ports)
        }

    # ------------------------------------------------------------------ ports and LSA copies

    def _port_infos(self) -> list[PortInfo]:
        return [
            PortInfo(
                port_number(port.index),
                port.name,
                port.mac.hex(":"),
                is_up(port.name),
                self.capacity.get(port.name, 0) // 1000,
            )
            for port in self.forwarding.ports
        ]

    def _update_ports(self) -> None:
        now = self.clock()
        for info in self._port_infos():
            self.agent.port_changed(info, now)  # PORT_STATUS only when something changed

    def lsa_copy(self) -> dmsc_pb2.LsaCopy | None:
        stored = self.node.router.lsdb.get(self.node.config.node_id)
        if stored is None:
            return None
        lsa = dmsc_pb2.LinkStateAdvertisement()
        lsa.CopyFrom(stored.lsa)  # as originated: the SCSC needs no remaining lifetime
        copy = dmsc_pb2.LsaCopy(lsa=lsa)
        for interface, neighbors in sorted(self.node.router.neighbors.items()):
            index = self.forwarding.port_of.get(interface)
            for neighbor in neighbors.values():
                if index is not None and neighbor.state.value == "full":
                    copy.ports.add(
                        port_no=port_number(index), interface=interface, neighbor=neighbor.node_id
                    )
        return copy

    def _maybe_send_lsa_copy(self) -> None:
        if not self.agent.connected:
            return
        copy = self.lsa_copy()
        if copy is None:
            return
        identity = copy.SerializeToString(deterministic=True)
        if identity == self._lsa_sent:
            return
        if self.agent.send_dmsc(copy, self.clock()):  # queued: the caller flushes
            self._lsa_sent = identity
            self.counters["lsa_copies"] += 1

    # ------------------------------------------------------------------ introspection

    def admin_handlers(self) -> dict:
        def openflow(_request) -> dict:
            stats = self.agent.stats
            return {
                "datapath_id": f"{self.agent.datapath_id:016x}",
                "controller": "{}:{}".format(*self.controller),
                "state": self.agent.state.name.lower(),
                "last_lost_reason": self.last_lost_reason,
                "peers": len(self._peers),
                **self.counters,
                "agent": {k: v for k, v in vars(stats).items()},
            }

        def policies(_request) -> list[dict]:
            now = self.clock()
            return [_entry_row(entry, now) for entry in self.agent.entries()]

        def policy_changes(_request) -> list[dict]:
            return list(self.policy_changes)

        return {"openflow": openflow, "policies": policies, "policy_changes": policy_changes}


def table_rows(entries) -> dict[tuple, dict]:
    """A policy table as the change log describes it, by OpenFlow's identity of an entry
    (priority and match)."""
    rows = {}
    for entry in entries:
        row = {
            "cookie": f"{entry.cookie:#018x}",
            "priority": entry.priority,
            "ipv6_dst": _masked_text(entry.match.ipv6_dst),
            "ipv6_src": _masked_text(entry.match.ipv6_src),
            "outputs": list(entry.outputs),
        }
        rows[(row["priority"], row["ipv6_dst"], row["ipv6_src"])] = row
    return rows


def table_changes(before: dict[tuple, dict], after: dict[tuple, dict], now: float) -> list[dict]:
    """What changed in the policy table, one row per entry: ``add``, ``modify`` (the same
    priority and match, other actions or cookie) or ``delete`` (the row as it was)."""
    changes = []
    for key in sorted(before.keys() | after.keys(), key=repr):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        change = "add" if old is None else "delete" if new is None else "modify"
        changes.append({"time": now, "change": change, **(new or old)})
    return changes


def _policy_key(entry: FlowEntry) -> tuple:
    match = entry.match
    dst = (match.ipv6_dst.value, match.ipv6_dst.mask) if match.ipv6_dst else (0, 0)
    src = (match.ipv6_src.value, match.ipv6_src.mask) if match.ipv6_src else (0, 0)
    return (entry.priority, *dst, *src)


def _masked_text(field: MaskedAddress | None) -> str | None:
    if field is None:
        return None
    length = field.prefix_length
    mask = length if length is not None else ipaddress.IPv6Address(field.mask)
    return f"{ipaddress.IPv6Address(field.value)}/{mask}"


def _entry_row(entry: FlowEntry, now: float) -> dict:
    return {
        "cookie": f"{entry.cookie:#018x}",
        "priority": entry.priority,
        "ipv6_dst": _masked_text(entry.match.ipv6_dst),
        "ipv6_src": _masked_text(entry.match.ipv6_src),
        "outputs": list(entry.outputs),
        "packets": entry.packets,
        "bytes": entry.bytes,
        "age_s": round(now - entry.installed_at, 3),
        "idle_timeout": entry.idle_timeout,
        "hard_timeout": entry.hard_timeout,
    }
