"""The Scheduling Center (SCSC) as an os-ken application: OpenFlow 1.3 to every SG and SR.

Two layers (STYLE.md §1):

- :class:`~dmsc.controllers.center.SchedulingCenter` (``center.py``), sans-I/O: what the SCSC
  knows and one decision round, giving the FLOW_MODs to send as data. Time is passed in.
- :class:`ScscApp`, here, the os-ken shell: turns OpenFlow events into calls on the center, sends
  what a round returns, runs rounds (periodically, and soon after news; one at a time), writes
  the decisions and telemetry logs, and answers the admin queries (``admin_handlers``).

Resync: when a switch connects (first time, or after either side restarted) its DMSC flows are
read back (FLOW multipart, filtered by the DMSC cookie tag) before anything is sent to it, and
the choices those flows carry out are taken over (``center.read_back_choices``). A restarted SCSC
therefore sends nothing for what is already in place. Nothing is flushed on reconnection.

``docs/scheduling.md`` explains the decision; ``docs/openflow.md`` the switch side.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
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

from dmsc.controllers.center import (
    FlowChange,
    InstalledFlow,
    SchedulingCenter,
    TelemetryReport,
    decode_experimenter,
    telemetry_row,
    thresholds_mapping,
)
from dmsc.controllers.decision import COOKIE_TAG, COOKIE_TAG_MASK, PolicyIntent
from dmsc.controllers.thresholds import ThresholdTable
from dmsc.errors import ConfigError, DecodeError, DmscError
from dmsc.proto import dmsc_pb2
from dmsc.proto.codec import DMSC_EXPERIMENTER_ID, EXP_LSA_COPY, EXP_TELEMETRY
from dmsc.proto.openflow import ETH_TYPE_IPV6, MaskedAddress, error_name

if TYPE_CHECKING:
    from dmsc.controllers.launcher import ScscConfig

log = logging.getLogger(__name__)

NEWS_COALESCE_S = 0.05  # the least time between the starts of two rounds


# ---------------------------------------------------------------- os-ken types


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
