"""The OpenFlow 1.3 agent of an SG or SR, sans-I/O: a flow table and a switch-side session.

Each forwarder is an OpenFlow datapath of the Scheduling Center (DESIGN.md §4). This core holds
the policy table the SCSC programs and speaks the switch side of the protocol; it never touches
a socket, a clock or a thread (STYLE.md §1, §2). The node program is the thin shell around it::

    agent = OpenFlowAgent(datapath_id, ports, now, port_stats_provider=forwarder.port_counters)
    agent.connection_made(now)            # TCP connected to the SCSC (port 6653)
    agent.receive(data, now)              # bytes arrived
    sock.sendall(agent.data_to_send())    # after each call above
    agent.handle_timer(now)               # when agent.get_timer() is due
    while (event := agent.next_event()):  # ControllerLost: close the socket, reconnect later
        ...
    if agent.table_version != loaded:     # the SCSC changed the policy table
        forwarder.load_policies(agent.entries())
    agent.update_counters({entry.entry_id: FlowCounters(packets, octets, last_used)})

Counters: the forwarder counts per ``entry_id`` (cumulative since it first saw that id) and
copies them in with ``update_counters``; an ``entry_id`` is never reused. A counter reset
(OFPFF_RESET_COUNTS) gives the entry a fresh ``entry_id``, so the forwarder needs no reset call.

Besides the SCSC connection, ``open_session()`` serves other OpenFlow peers on the same table
(a passive listener for ``ovs-ofctl``, so a human can look at a node's table).

Fail-static: when the controller is lost the table stays and keeps forwarding; entries still
age by their own timeouts. The SCSC resynchronises on reconnection by reading the table back
(FLOW multipart), exactly as it reads any switch. See docs/openflow.md.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from os_ken.ofproto import ofproto_v1_3 as ofp

from dmsc.errors import ConfigError, DecodeError
from dmsc.proto import dmsc_pb2
from dmsc.proto.openflow import (
    DMSC_EXPERIMENTER_ID,
    OFP_VERSION,
    BarrierRequest,
    ControllerMessage,
    DescRequest,
    EchoReply,
    EchoRequest,
    ErrorMsg,
    Experimenter,
    FeaturesRequest,
    FlowMod,
    FlowRemoved,
    FlowStats,
    FlowStatsRequest,
    GetConfigRequest,
    Hello,
    Instruction,
    Match,
    MessageSplitter,
    OpenFlowError,
    PortCounters,
    PortDescRequest,
    PortInfo,
    PortStats,
    PortStatsRequest,
    RoleRequest,
    SetConfig,
    SwitchDescription,
    TableFeaturesRequest,
    TableStatsRequest,
    decode_message,
    dmsc_exp_type,
    encode_aggregate_reply,
    encode_barrier_reply,
    encode_desc_reply,
    encode_echo_reply,
    encode_echo_request,
    encode_error,
    encode_experimenter,
    encode_features_reply,
    encode_flow_removed,
    encode_flow_stats_reply,
    encode_get_config_reply,
    encode_hello,
    encode_port_desc_reply,
    encode_port_stats_reply,
    encode_port_status,
    encode_role_reply,
    encode_table_features_reply,
    encode_table_stats_reply,
    output_ports,
)

__all__ = [
    "AgentEvent",
    "AgentState",
    "AgentStats",
    "AgentTimers",
    "ControllerConnected",
    "ControllerErrorReceived",
    "ControllerLost",
    "FlowCounters",
    "FlowEntry",
    "FlowTable",
    "OpenFlowAgent",
    "OpenFlowSession",
    "PortCounters",
    "PortInfo",
    "RequestRefused",
    "SwitchDescription",
]

DEFAULT_MISS_SEND_LEN = 128


# ---------------------------------------------------------------- the flow table


class FlowCounters(NamedTuple):
    """What the forwarder counted for one entry: cumulative, and when it last matched."""

    packets: int
    bytes: int
    last_used: float | None = None  # None: never matched


class Expiry(NamedTuple):
    deadline: float
    reason: int  # OFPRR_IDLE_TIMEOUT or OFPRR_HARD_TIMEOUT


@dataclass(frozen=True)
class FlowEntry:
    """One policy entry. Timeouts in seconds (0 = none); times on the caller's clock."""

    entry_id: int
    match: Match
    priority: int
    instructions: tuple[Instruction, ...]
    cookie: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0
    flags: int = 0
    installed_at: float = 0.0
    last_used: float = 0.0
    packets: int = 0
    bytes: int = 0

    @property
    def outputs(self) -> tuple[int, ...]:
        """The ports a matching packet is sent out of; () = drop."""
        return output_ports(self.instructions)

    @property
    def drop(self) -> bool:
        return not self.outputs

    def expiry(self) -> Expiry | None:
        """The earliest timeout of this entry, if it has one."""
        candidates = []
        if self.hard_timeout:
            candidates.append(Expiry(self.installed_at + self.hard_timeout, ofp.OFPRR_HARD_TIMEOUT))
        if self.idle_timeout:
            candidates.append(Expiry(self.last_used + self.idle_timeout, ofp.OFPRR_IDLE_TIMEOUT))
        return min(candidates, default=None)

    def stats(self, now: float) -> FlowStats:
        return FlowStats(
            match=self.match, instructions=self.instructions, priority=self.priority,
            cookie=self.cookie, duration=now - self.installed_at, idle_timeout=self.idle_timeout,
            hard_timeout=self.hard_timeout, flags=self.flags, packet_count=self.packets,
            byte_count=self.bytes,
        )  # fmt: skip

    def removed(self, reason: int, now: float) -> FlowRemoved:
        return FlowRemoved(
            match=self.match, priority=self.priority, reason=reason, cookie=self.cookie,
            duration=now - self.installed_at, idle_timeout=self.idle_timeout,
            hard_timeout=self.hard_timeout, packet_count=self.packets, byte_count=self.bytes,
        )  # fmt: skip


def _flow_mod_error(code: int, reason: str) -> OpenFlowError:
    return OpenFlowError(ofp.OFPET_FLOW_MOD_FAILED, code, reason)


class FlowTable:
    """The one table (table 0) of a DMSC forwarder, with OpenFlow 1.3 flow-mod semantics.

    - ADD replaces an entry with the same match and priority: new instructions, cookie,
      timeouts and flags, duration restarted; its counters carry over unless the ADD has
      OFPFF_RESET_COUNTS (OpenFlow 1.3 §6.4; Open vSwitch does the same).
    - MODIFY / MODIFY_STRICT change only the instructions of the entries selected (counters,
      cookie, timeouts and flags stay; OFPFF_RESET_COUNTS resets the counters). When nothing
      is selected nothing happens (1.3; Open vSwitch would add the flow instead).
    - DELETE / DELETE_STRICT remove the entries selected; ``out_port`` / ``out_group`` filter
      unless OFPP_ANY / OFPG_ANY. There are no groups, so any other out_group selects nothing.
    - Selection: non-strict = the request's match covers the entry's (priority ignored);
      strict = same match and priority. Both filter on ``cookie & cookie_mask``.
    - OFPFF_CHECK_OVERLAP refuses an ADD overlapping an entry of the same priority.
    - OFPFF_NO_PKT_COUNTS / OFPFF_NO_BYT_COUNTS are accepted and the counts kept anyway.
    """

    def __init__(self, max_entries: int = 65536) -> None:
        self.max_entries = max_entries
        self._entries: dict[int, FlowEntry] = {}
        self._last_id = 0
        self.version = 0  # bumped on every change of entries, not of counters

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[FlowEntry]:
        """In lookup order: priority high to low, then oldest first."""
        return sorted(self._entries.values(), key=lambda e: (-e.priority, e.entry_id))

    def get(self, entry_id: int) -> FlowEntry | None:
        return self._entries.get(entry_id)

    def apply(self, mod: FlowMod, now: float) -> list[FlowRemoved]:
        """Carry out a FLOW_MOD; return FLOW_REMOVED records owed; OpenFlowError if refused."""
        _check_flow_mod(mod)
        if mod.command == ofp.OFPFC_ADD:
            self._add(mod, now)
            return []
        strict = mod.command in (ofp.OFPFC_MODIFY_STRICT, ofp.OFPFC_DELETE_STRICT)
        if mod.command in (ofp.OFPFC_MODIFY, ofp.OFPFC_MODIFY_STRICT):
            self._modify(mod, strict)
            return []
        return self._delete(mod, strict, now)

    def select(
        self,
        match: Match,
        *,
        strict: bool = False,
        priority: int | None = None,
        cookie: int = 0,
        cookie_mask: int = 0,
        out_port: int = ofp.OFPP_ANY,
        out_group: int = ofp.OFPG_ANY,
    ) -> list[FlowEntry]:
        """The entries a flow-mod or a stats request with these fields designates."""
        return [
            entry
            for entry in self.entries()
            if (entry.match == match and entry.priority == priority if strict
                else match.covers(entry.match))
            and entry.cookie & cookie_mask == cookie & cookie_mask
            and (out_port == ofp.OFPP_ANY or out_port in entry.outputs)
            and out_group == ofp.OFPG_ANY
        ]  # fmt: skip

    def expire(self, now: float) -> list[FlowRemoved]:
        """Remove the entries whose timeout has come; FLOW_REMOVED records for flagged ones."""
        removed = []
        for entry in self.entries():
            expiry = entry.expiry()
            if expiry is not None and expiry.deadline <= now:
                del self._entries[entry.entry_id]
                self.version += 1
                if entry.flags & ofp.OFPFF_SEND_FLOW_REM:
                    removed.append(entry.removed(expiry.reason, now))
        return removed

    def next_expiry(self) -> float | None:
        deadlines = [e.deadline for e in map(FlowEntry.expiry, self._entries.values()) if e]
        return min(deadlines, default=None)

    def update_counters(self, counters: Mapping[int, FlowCounters]) -> None:
        """Copy the forwarder's counters in; ids no longer in the table are ignored."""
        for entry_id, counted in counters.items():
            entry = self._entries.get(entry_id)
            if entry is None:
                continue
            last_used = entry.last_used
            if counted.last_used is not None:
                last_used = max(last_used, counted.last_used)
            self._entries[entry_id] = replace(
                entry, packets=counted.packets, bytes=counted.bytes, last_used=last_used
            )

    def _new_id(self) -> int:
        self._last_id += 1
        return self._last_id

    def _add(self, mod: FlowMod, now: float) -> None:
        same = [
            e for e in self._entries.values() if (e.match, e.priority) == (mod.match, mod.priority)
        ]
        if mod.flags & ofp.OFPFF_CHECK_OVERLAP and any(
            e.priority == mod.priority and e.match.overlaps(mod.match)
            for e in self._entries.values()
        ):
            raise _flow_mod_error(
                ofp.OFPFMFC_OVERLAP, f"overlaps an entry at priority {mod.priority}"
            )
        old = same[0] if same else None
        if old is None and len(self._entries) >= self.max_entries:
            raise _flow_mod_error(ofp.OFPFMFC_TABLE_FULL, f"table full ({self.max_entries})")
        keep = old is not None and not mod.flags & ofp.OFPFF_RESET_COUNTS
        entry = FlowEntry(
            entry_id=old.entry_id if keep else self._new_id(), match=mod.match,
            priority=mod.priority, instructions=mod.instructions, cookie=mod.cookie,
            idle_timeout=mod.idle_timeout, hard_timeout=mod.hard_timeout, flags=mod.flags,
            installed_at=now, last_used=now, packets=old.packets if keep else 0,
            bytes=old.bytes if keep else 0,
        )  # fmt: skip
        if old is not None:
            del self._entries[old.entry_id]
        self._entries[entry.entry_id] = entry
        self.version += 1

    def _modify(self, mod: FlowMod, strict: bool) -> None:
        selected = self.select(
            mod.match, strict=strict, priority=mod.priority, cookie=mod.cookie,
            cookie_mask=mod.cookie_mask,
        )  # fmt: skip
        for entry in selected:
            changed = replace(entry, instructions=mod.instructions)
            if mod.flags & ofp.OFPFF_RESET_COUNTS:
                changed = replace(changed, entry_id=self._new_id(), packets=0, bytes=0)
            del self._entries[entry.entry_id]
            self._entries[changed.entry_id] = changed
        if selected:
            self.version += 1

    def _delete(self, mod: FlowMod, strict: bool, now: float) -> list[FlowRemoved]:
        selected = self.select(
            mod.match, strict=strict, priority=mod.priority, cookie=mod.cookie,
            cookie_mask=mod.cookie_mask, out_port=mod.out_port, out_group=mod.out_group,
        )  # fmt: skip
        for entry in selected:
            del self._entries[entry.entry_id]
        if selected:
            self.version += 1
        return [
            entry.removed(ofp.OFPRR_DELETE, now)
            for entry in selected
            if entry.flags & ofp.OFPFF_SEND_FLOW_REM
        ]


def _check_flow_mod(mod: FlowMod) -> None:
    deleting = mod.command in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT)
    if mod.table_id != 0 and not (deleting and mod.table_id == ofp.OFPTT_ALL):
        raise _flow_mod_error(ofp.OFPFMFC_BAD_TABLE_ID, f"table {mod.table_id}: only table 0")
    if not deleting and mod.buffer_id != ofp.OFP_NO_BUFFER:
        raise OpenFlowError(
            ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BUFFER_UNKNOWN,
            f"buffer {mod.buffer_id}: this switch buffers no packets",
        )  # fmt: skip


# ---------------------------------------------------------------- sessions


class AgentState(enum.Enum):
    DISCONNECTED = "disconnected"
    HANDSHAKE = "handshake"  # our HELLO sent, the peer's not yet received
    CONNECTED = "connected"


@dataclass(frozen=True)
class AgentTimers:
    """Keepalive: an ECHO_REQUEST after ``echo_interval`` s without a message from the peer;
    the peer is lost after ``dead_interval`` s of silence (or of an unfinished handshake)."""

    echo_interval: float = 5.0
    dead_interval: float = 15.0

    def __post_init__(self) -> None:
        if not 0 < self.echo_interval < self.dead_interval:
            raise ConfigError(
                f"OpenFlow timers: need 0 < echo_interval ({self.echo_interval}) "
                f"< dead_interval ({self.dead_interval})"
            )


@dataclass(frozen=True)
class ControllerConnected:
    now: float
    version: int


@dataclass(frozen=True)
class ControllerLost:
    """The session gave up: flush data_to_send(), close the socket, call connection_lost()."""

    now: float
    reason: str


@dataclass(frozen=True)
class ControllerErrorReceived:
    now: float
    error: ErrorMsg


@dataclass(frozen=True)
class RequestRefused:
    """A request answered with an OFPT_ERROR (counted; for the node's log)."""

    now: float
    error: OpenFlowError


AgentEvent = ControllerConnected | ControllerLost | ControllerErrorReceived | RequestRefused


@dataclass
class AgentStats:
    messages_received: int = 0
    messages_sent: int = 0
    errors_sent: int = 0  # requests refused, each answered with an OFPT_ERROR
    errors_received: int = 0
    echo_requests_sent: int = 0
    async_dropped: int = 0  # FLOW_REMOVED / PORT_STATUS / EXPERIMENTER with no controller
    connections: int = 0


class OpenFlowSession:
    """One OpenFlow connection over an agent's table, sans-I/O (the shell owns the socket).

    Handles the handshake, keepalive and framing, and hands every request to the agent.
    """

    def __init__(self, agent: OpenFlowAgent, now: float) -> None:
        self.agent = agent
        self._state = AgentState.DISCONNECTED
        self._splitter = MessageSplitter()
        self._outbound = bytearray()
        self._events: deque[AgentEvent] = deque()
        self._last_received = self._last_echo = now

    @property
    def state(self) -> AgentState:
        return self._state

    @property
    def connected(self) -> bool:
        """Handshake done: the peer may program and read the table."""
        return self._state is AgentState.CONNECTED

    def connection_made(self, now: float) -> None:
        """The TCP connection is up: start the handshake (send HELLO)."""
        self._state = AgentState.HANDSHAKE
        self._splitter = MessageSplitter()
        self._outbound.clear()
        self._last_received = self._last_echo = now
        self.agent.stats.connections += 1
        self.send(encode_hello(self.agent.next_xid()))

    def connection_lost(self, now: float) -> None:
        """The socket is closed. The table is not touched (fail-static)."""
        self._state = AgentState.DISCONNECTED
        self._outbound.clear()
        self._splitter = MessageSplitter()
        self.agent.session_closed(self)

    def receive(self, data: bytes, now: float) -> None:
        """Bytes from the peer; the replies accumulate in data_to_send()."""
        if self._state is AgentState.DISCONNECTED:
            return
        self._last_received = now
        self._splitter.feed(data)
        try:
            for message in self._splitter.messages():
                self._handle(message, now)
                if self._state is AgentState.DISCONNECTED:
                    return
        except DecodeError as error:  # only the splitter raises here: the stream is lost
            self._close(now, f"cannot frame the byte stream: {error}")

    def data_to_send(self) -> bytes:
        data = bytes(self._outbound)
        self._outbound.clear()
        return data

    def next_event(self) -> AgentEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When this session's handle_timer() is next due, or None."""
        if self._state is AgentState.DISCONNECTED:
            return None
        dead = self._last_received + self.agent.timers.dead_interval
        return min(dead, self._echo_due()) if self.connected else dead

    def handle_timer(self, now: float) -> None:
        """Send an ECHO_REQUEST when the peer has been quiet; give up after dead_interval."""
        if self._state is AgentState.DISCONNECTED:
            return
        silence = now - self._last_received
        if silence >= self.agent.timers.dead_interval:
            self._close(now, f"no message from the peer for {silence:.1f} s")
        elif self.connected and now >= self._echo_due():
            self._last_echo = now
            self.agent.stats.echo_requests_sent += 1
            self.send(encode_echo_request(self.agent.next_xid()))

    def send(self, data: bytes) -> None:
        self._outbound += data
        self.agent.stats.messages_sent += 1

    def _echo_due(self) -> float:
        return max(self._last_received, self._last_echo) + self.agent.timers.echo_interval

    def _close(self, now: float, reason: str) -> None:
        """Give up; data_to_send() keeps what is owed (e.g. an ERROR) for a last flush."""
        self._state = AgentState.DISCONNECTED
        self._splitter = MessageSplitter()
        self._events.append(ControllerLost(now, reason))

    def _handle(self, data: bytes, now: float) -> None:
        self.agent.stats.messages_received += 1
        try:
            message = decode_message(data)
        except OpenFlowError as error:
            self._refuse(error, now)
            return
        try:
            self._dispatch(message, now)
        except OpenFlowError as error:
            error.xid, error.request = message.xid, data
            self._refuse(error, now)

    def _dispatch(self, message: ControllerMessage, now: float) -> None:
        if isinstance(message, Hello):
            self._on_hello(message, now)
        elif self._state is AgentState.HANDSHAKE:
            raise _hello_failed(f"{type(message).__name__} before HELLO")
        elif isinstance(message, EchoRequest):
            self.send(encode_echo_reply(message.xid, message.data))
        elif isinstance(message, ErrorMsg):
            self.agent.stats.errors_received += 1
            self._events.append(ControllerErrorReceived(now, message))
        elif not isinstance(message, EchoReply):  # an echo reply only proves the peer lives
            for reply in self.agent.serve(message, now):
                self.send(reply)

    def _on_hello(self, message: Hello, now: float) -> None:
        if self._state is not AgentState.HANDSHAKE:
            return
        version = message.negotiate()
        if version is None:
            offered = sorted(message.versions or {message.version})
            raise _hello_failed(f"peer offers OpenFlow versions {offered}; we speak {OFP_VERSION}")
        self._state = AgentState.CONNECTED
        self._events.append(ControllerConnected(now, version))

    def _refuse(self, error: OpenFlowError, now: float) -> None:
        """Answer with an OFPT_ERROR; a failed handshake also ends the session."""
        self.agent.stats.errors_sent += 1
        data = error.request
        if error.error_type == ofp.OFPET_HELLO_FAILED:
            data = error.reason.encode()  # OpenFlow 1.3 §7.4.4: an explanation in ASCII
        self.send(encode_error(error.xid, error.error_type, error.error_code, data))
        self._events.append(RequestRefused(now, error))
        if self._state is AgentState.HANDSHAKE:
            self._close(now, f"handshake failed: {error}")


def _hello_failed(reason: str) -> OpenFlowError:
    return OpenFlowError(ofp.OFPET_HELLO_FAILED, ofp.OFPHFC_INCOMPATIBLE, reason)


# ---------------------------------------------------------------- the agent


PortStatsProvider = Callable[[], Mapping[int, PortCounters]]
DEFAULT_MAX_ENTRIES = 65536
TABLE_NAME = "dmsc-policy"


class OpenFlowAgent:
    """A forwarder's OpenFlow datapath: the policy table, the ports, and its sessions.

    ``controller`` is the session with the SCSC (the agent connects out to it); the
    ``connection_made``/``receive``/``data_to_send``/``connection_lost``/``next_event``
    methods are that session's. ``open_session()`` adds service sessions — e.g. a passive
    listener for ``ovs-ofctl`` — that read and write the same table; they get replies only,
    and asynchronous messages (FLOW_REMOVED, PORT_STATUS, EXPERIMENTER) go to the controller.
    """

    def __init__(
        self,
        datapath_id: int,
        ports: Iterable[PortInfo],
        now: float,
        *,
        port_stats_provider: PortStatsProvider | None = None,
        timers: AgentTimers | None = None,
        description: SwitchDescription | None = None,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        if not 0 <= datapath_id < 1 << 64:
            raise ConfigError(f"datapath id {datapath_id}: need a 64-bit unsigned integer")
        self.datapath_id = datapath_id
        self.table = FlowTable(max_entries)
        self.timers = timers or AgentTimers()
        self.description = description or SwitchDescription()
        self.stats = AgentStats()
        self.lookup_count = 0
        self.matched_count = 0
        self._port_stats_provider = port_stats_provider or dict
        self._ports: dict[int, PortInfo] = {}
        self._port_added: dict[int, float] = {}
        for port in ports:
            if port.port_no in self._ports:
                raise ConfigError(f"port number {port.port_no} given twice")
            self._ports[port.port_no], self._port_added[port.port_no] = port, now
        self._last_xid = 0
        self._config_flags = 0
        self._miss_send_len = DEFAULT_MISS_SEND_LEN
        self.controller = OpenFlowSession(self, now)
        self._services: list[OpenFlowSession] = []

    # ------------------------------------------------------------ the controller session

    @property
    def state(self) -> AgentState:
        return self.controller.state

    @property
    def connected(self) -> bool:
        return self.controller.connected

    def connection_made(self, now: float) -> None:
        """Connected to the SCSC: start the handshake."""
        self.controller.connection_made(now)

    def connection_lost(self, now: float) -> None:
        """The SCSC connection closed. Fail-static: the table stays and keeps aging."""
        self.controller.connection_lost(now)

    def receive(self, data: bytes, now: float) -> None:
        self.controller.receive(data, now)

    def data_to_send(self) -> bytes:
        return self.controller.data_to_send()

    def next_event(self) -> AgentEvent | None:
        return self.controller.next_event()

    # ------------------------------------------------------------ all sessions, timers

    def open_session(self, now: float) -> OpenFlowSession:
        """A service session (e.g. ovs-ofctl on a passive listener); call its
        connection_made(now), then drive it like the controller's."""
        session = OpenFlowSession(self, now)
        self._services.append(session)
        return session

    def session_closed(self, session: OpenFlowSession) -> None:
        if session in self._services:
            self._services.remove(session)

    def get_timer(self) -> float | None:
        """When handle_timer() is next due (same clock as ``now``), or None."""
        sessions = [self.controller, *self._services]
        deadlines = [self.table.next_expiry(), *(s.get_timer() for s in sessions)]
        return min((d for d in deadlines if d is not None), default=None)

    def handle_timer(self, now: float) -> None:
        """Expire entries (FLOW_REMOVED where flagged) and keep every session alive."""
        for removed in self.table.expire(now):
            self._send_async(encode_flow_removed(0, removed))
        for session in [self.controller, *self._services]:
            session.handle_timer(now)

    # ------------------------------------------------------------ what the node tells us

    def port_changed(self, port: PortInfo, now: float) -> None:
        """A port appeared or changed (carrier, speed…): PORT_STATUS ADD or MODIFY."""
        old = self._ports.get(port.port_no)
        if old == port:
            return
        self._ports[port.port_no] = port
        if old is None:
            self._port_added[port.port_no] = now
        reason = ofp.OFPPR_ADD if old is None else ofp.OFPPR_MODIFY
        self._send_async(encode_port_status(0, reason, port))

    def port_removed(self, port_no: int, now: float) -> None:
        """A port went away: PORT_STATUS DELETE."""
        port = self._ports.pop(port_no, None)
        if port is not None:
            del self._port_added[port_no]
            self._send_async(encode_port_status(0, ofp.OFPPR_DELETE, port))

    def ports(self) -> list[PortInfo]:
        return [self._ports[n] for n in sorted(self._ports)]

    def send_experimenter(self, exp_type: int, body: bytes, now: float) -> bool:
        """EXPERIMENTER under DMSC_EXPERIMENTER_ID to the SCSC; False (dropped) when not
        connected. ValueError if ``body`` does not fit one message (65,519 bytes)."""
        message = encode_experimenter(self.next_xid(), DMSC_EXPERIMENTER_ID, exp_type, body)
        return self._send_async(message)

    def send_dmsc(self, body: dmsc_pb2.Telemetry | dmsc_pb2.LsaCopy, now: float) -> bool:
        """A Telemetry (EXP_TELEMETRY) or an LsaCopy (EXP_LSA_COPY) to the SCSC."""
        return self.send_experimenter(dmsc_exp_type(body), body.SerializeToString(), now)

    @property
    def table_version(self) -> int:
        """Changes whenever the policy entries change: the node then reloads entries()."""
        return self.table.version

    def entries(self) -> list[FlowEntry]:
        """The policy entries in lookup order (priority high to low, then oldest first)."""
        return self.table.entries()

    def update_counters(
        self,
        counters: Mapping[int, FlowCounters],
        *,
        lookups: int | None = None,
        matched: int | None = None,
    ) -> None:
        """The forwarder's per-entry counters (by entry_id) and its table lookups/matches."""
        self.table.update_counters(counters)
        if lookups is not None:
            self.lookup_count = lookups
        if matched is not None:
            self.matched_count = matched

    # ------------------------------------------------------------ serving requests

    def next_xid(self) -> int:
        self._last_xid = self._last_xid % 0xFFFFFFFF + 1
        return self._last_xid

    def serve(self, message: ControllerMessage, now: float) -> list[bytes]:
        """The replies to one request (in order), or OpenFlowError to refuse it."""
        handler = _HANDLERS.get(type(message))
        if handler is None:  # HELLO, ECHO and ERROR belong to the session
            raise OpenFlowError(
                ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TYPE, f"{type(message).__name__} here"
            )
        return handler(self, message, now)

    def _send_async(self, data: bytes) -> bool:
        """A switch-initiated message: only an established controller session gets it."""
        if not self.controller.connected:
            self.stats.async_dropped += 1
            return False
        self.controller.send(data)
        return True

    def _on_experimenter(self, message: Experimenter, now: float) -> list[bytes]:
        if message.experimenter != DMSC_EXPERIMENTER_ID:
            raise OpenFlowError(
                ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_EXPERIMENTER,
                f"experimenter {message.experimenter:#010x} (DMSC's is {DMSC_EXPERIMENTER_ID:#x})",
            )  # fmt: skip
        raise OpenFlowError(
            ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_EXP_TYPE,
            f"DMSC experimenter type {message.exp_type}: none goes controller → switch",
        )  # fmt: skip

    def _on_features_request(self, message: FeaturesRequest, now: float) -> list[bytes]:
        return [encode_features_reply(message.xid, self.datapath_id)]

    def _on_get_config_request(self, message: GetConfigRequest, now: float) -> list[bytes]:
        return [encode_get_config_reply(message.xid, self._config_flags, self._miss_send_len)]

    def _on_set_config(self, message: SetConfig, now: float) -> list[bytes]:
        if message.flags & ~ofp.OFPC_FRAG_MASK:
            raise OpenFlowError(
                ofp.OFPET_SWITCH_CONFIG_FAILED, ofp.OFPSCFC_BAD_FLAGS,
                f"switch config flags {message.flags:#x}",
            )  # fmt: skip
        self._config_flags, self._miss_send_len = message.flags, message.miss_send_len
        return []

    def _on_flow_mod(self, message: FlowMod, now: float) -> list[bytes]:
        for removed in self.table.apply(message, now):
            self._send_async(encode_flow_removed(0, removed))
        return []

    def _on_barrier_request(self, message: BarrierRequest, now: float) -> list[bytes]:
        """Every earlier request is already carried out and answered: reply at once."""
        return [encode_barrier_reply(message.xid)]

    def _on_role_request(self, message: RoleRequest, now: float) -> list[bytes]:
        """No roles here: every controller is EQUAL (full access), whatever it asks for."""
        return [encode_role_reply(message.xid, ofp.OFPCR_ROLE_EQUAL, message.generation_id)]

    def _on_desc_request(self, message: DescRequest, now: float) -> list[bytes]:
        return [encode_desc_reply(message.xid, self.description)]

    def _on_flow_stats_request(self, message: FlowStatsRequest, now: float) -> list[bytes]:
        if message.table_id not in (0, ofp.OFPTT_ALL):
            raise OpenFlowError(
                ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TABLE_ID,
                f"table {message.table_id}: only table 0",
            )  # fmt: skip
        selected = self.table.select(
            message.match, cookie=message.cookie, cookie_mask=message.cookie_mask,
            out_port=message.out_port, out_group=message.out_group,
        )  # fmt: skip
        if not message.aggregate:
            return encode_flow_stats_reply(message.xid, [e.stats(now) for e in selected])
        packets = sum(e.packets for e in selected)
        octets = sum(e.bytes for e in selected)
        return [encode_aggregate_reply(message.xid, packets, octets, len(selected))]

    def _on_port_stats_request(self, message: PortStatsRequest, now: float) -> list[bytes]:
        if message.port_no == ofp.OFPP_ANY:
            numbers = sorted(self._ports)
        elif message.port_no in self._ports:
            numbers = [message.port_no]
        else:
            raise OpenFlowError(
                ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_PORT, f"no port {message.port_no}"
            )
        counters = self._port_stats_provider()
        stats = [
            PortStats(n, counters.get(n, PortCounters()), now - self._port_added[n])
            for n in numbers
        ]
        return encode_port_stats_reply(message.xid, stats)

    def _on_port_desc_request(self, message: PortDescRequest, now: float) -> list[bytes]:
        return encode_port_desc_reply(message.xid, self.ports())

    def _on_table_stats_request(self, message: TableStatsRequest, now: float) -> list[bytes]:
        active = len(self.table)
        return [
            encode_table_stats_reply(message.xid, active, self.lookup_count, self.matched_count)
        ]

    def _on_table_features_request(self, message: TableFeaturesRequest, now: float) -> list[bytes]:
        return [encode_table_features_reply(message.xid, TABLE_NAME, self.table.max_entries)]


_HANDLERS: dict[type, Callable[[OpenFlowAgent, Any, float], list[bytes]]] = {
    Experimenter: OpenFlowAgent._on_experimenter,
    FeaturesRequest: OpenFlowAgent._on_features_request,
    GetConfigRequest: OpenFlowAgent._on_get_config_request,
    SetConfig: OpenFlowAgent._on_set_config,
    FlowMod: OpenFlowAgent._on_flow_mod,
    BarrierRequest: OpenFlowAgent._on_barrier_request,
    RoleRequest: OpenFlowAgent._on_role_request,
    DescRequest: OpenFlowAgent._on_desc_request,
    FlowStatsRequest: OpenFlowAgent._on_flow_stats_request,
    PortStatsRequest: OpenFlowAgent._on_port_stats_request,
    PortDescRequest: OpenFlowAgent._on_port_desc_request,
    TableStatsRequest: OpenFlowAgent._on_table_stats_request,
    TableFeaturesRequest: OpenFlowAgent._on_table_features_request,
}
