"""The OpenFlow agent core, driven by os-ken's controller-side codec on a fake clock.

Two protocol cores joined in memory (STYLE.md §5): os-ken serializes what a controller sends,
the agent answers, os-ken parses the answers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofparser

from dmsc.errors import ConfigError
from dmsc.nodes.ofagent import (
    AgentState,
    AgentTimers,
    ControllerConnected,
    ControllerErrorReceived,
    ControllerLost,
    FlowCounters,
    OpenFlowAgent,
    OpenFlowSession,
    PortCounters,
    PortInfo,
    RequestRefused,
)
from dmsc.proto import dmsc_pb2
from dmsc.proto import openflow as of
from tests.unit.test_openflow_codec import DP, IPV6, os_ken_parse, serialized, split_stream

DATAPATH_ID = 0x00D5C0DE00000001
PORTS = [
    PortInfo(1, "eth0", "02:00:00:00:00:01", True, 1_000_000),
    PortInfo(2, "eth1", "02:00:00:00:00:02", True, 10_000_000),
    PortInfo(3, "eth2", "02:00:00:00:00:03", False, 100_000),
]
B = "fd64:6d73:63:92eb::"  # a service prefix's address (illustrative)


@dataclass
class Clock:
    now: float = 1000.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class Controller:
    """os-ken's codec in the controller's seat of one session."""

    def __init__(self, session: OpenFlowSession | OpenFlowAgent, clock: Clock) -> None:
        self.session = session
        self.clock = clock
        self.xid = 100

    def send(self, *messages) -> list:
        """Serialize each with a fresh xid, deliver in one chunk, parse what comes back."""
        data = b""
        for message in messages:
            self.xid += 1
            data += serialized(message, xid=self.xid)
        return self.send_raw(data)

    def send_raw(self, data: bytes) -> list:
        self.session.receive(data, self.clock.now)
        return self.replies()

    def replies(self) -> list:
        return [os_ken_parse(m) for m in split_stream(self.session.data_to_send())]

    def handshake(self) -> None:
        self.session.connection_made(self.clock.now)
        (hello,) = self.replies()
        assert isinstance(hello, ofparser.OFPHello)
        assert self.send(ofparser.OFPHello(DP)) == []
        assert self.session.connected

    def flows(self, **fields) -> list:
        replies = self.send(ofparser.OFPFlowStatsRequest(DP, **fields))
        return [stats for reply in replies for stats in reply.body]

    def events(self) -> list:
        events = []
        while (event := self.session.next_event()) is not None:
            events.append(event)
        return events


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def port_counters() -> dict[int, PortCounters]:
    return {1: PortCounters(rx_packets=10, tx_packets=20, rx_bytes=1000, tx_bytes=2000)}


@pytest.fixture
def agent(clock: Clock, port_counters) -> OpenFlowAgent:
    return OpenFlowAgent(
        DATAPATH_ID, PORTS, clock.now, port_stats_provider=lambda: port_counters,
        timers=AgentTimers(echo_interval=5, dead_interval=15),
        description=of.SwitchDescription(datapath="sr1"),
    )  # fmt: skip


@pytest.fixture
def scsc(agent: OpenFlowAgent, clock: Clock) -> Controller:
    controller = Controller(agent, clock)
    controller.handshake()
    return controller


def match(dst: str = B + "1", length: int = 128, **fields) -> ofparser.OFPMatch:
    mask = str(of.MaskedAddress.parse(f"::/{length}").mask.to_bytes(16, "big").hex(":", 2))
    return ofparser.OFPMatch(eth_type=IPV6, ipv6_dst=(dst, mask), **fields)


def output(*ports: int) -> list:
    actions = [ofparser.OFPActionOutput(p) for p in ports]
    return [ofparser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]


def add(priority: int = 100, ports: tuple = (2,), **fields) -> ofparser.OFPFlowMod:
    fields.setdefault("match", match())
    return ofparser.OFPFlowMod(DP, priority=priority, instructions=output(*ports), **fields)


def delete(strict: bool = False, **fields) -> ofparser.OFPFlowMod:
    command = ofp.OFPFC_DELETE_STRICT if strict else ofp.OFPFC_DELETE
    fields = {"out_port": ofp.OFPP_ANY, "out_group": ofp.OFPG_ANY, "match": match(), **fields}
    return ofparser.OFPFlowMod(DP, command=command, **fields)


def modify(ports: tuple, strict: bool = False, **fields) -> ofparser.OFPFlowMod:
    command = ofp.OFPFC_MODIFY_STRICT if strict else ofp.OFPFC_MODIFY
    fields.setdefault("match", match())
    return ofparser.OFPFlowMod(DP, command=command, instructions=output(*ports), **fields)


# ---------------------------------------------------------------- handshake


def test_handshake_features_and_port_description(agent, scsc):
    assert agent.state is AgentState.CONNECTED
    assert [type(e) for e in scsc.events()] == [ControllerConnected]
    (features,) = scsc.send(ofparser.OFPFeaturesRequest(DP))
    assert (features.datapath_id, features.n_tables, features.n_buffers) == (DATAPATH_ID, 1, 0)
    (ports,) = scsc.send(ofparser.OFPPortDescStatsRequest(DP, 0))
    assert [(p.port_no, p.name, p.state) for p in ports.body] == [
        (1, b"eth0", ofp.OFPPS_LIVE),
        (2, b"eth1", ofp.OFPPS_LIVE),
        (3, b"eth2", ofp.OFPPS_LINK_DOWN),
    ]
    (desc,) = scsc.send(ofparser.OFPDescStatsRequest(DP, 0))
    assert desc.body.dp_desc == b"sr1"


def test_os_ken_style_hello_of_a_higher_version_negotiates_1_3(agent, clock):
    controller = Controller(agent, clock)
    agent.connection_made(clock.now)
    controller.replies()
    assert controller.send_raw(struct.pack("!BBHI", 6, ofp.OFPT_HELLO, 8, 1)) == []
    assert controller.events() == [ControllerConnected(clock.now, 4)]


def test_incompatible_version_fails_the_handshake(agent, clock):
    controller = Controller(agent, clock)
    agent.connection_made(clock.now)
    controller.replies()
    bitmap = struct.pack("!HHI", ofp.OFPHET_VERSIONBITMAP, 8, 1 << 1)  # OpenFlow 1.0 only
    (error,) = controller.send_raw(struct.pack("!BBHI", 1, ofp.OFPT_HELLO, 16, 9) + bitmap)
    assert (error.type, error.code) == (ofp.OFPET_HELLO_FAILED, ofp.OFPHFC_INCOMPATIBLE)
    assert b"we speak 4" in error.data
    assert agent.state is AgentState.DISCONNECTED
    assert isinstance(controller.events()[-1], ControllerLost)


def test_a_request_before_hello_fails_the_handshake(agent, clock):
    controller = Controller(agent, clock)
    agent.connection_made(clock.now)
    controller.replies()
    (error,) = controller.send(ofparser.OFPFeaturesRequest(DP))
    assert error.type == ofp.OFPET_HELLO_FAILED
    assert agent.state is AgentState.DISCONNECTED


def test_nothing_happens_without_a_connection(agent, clock):
    agent.receive(serialized(ofparser.OFPFeaturesRequest(DP)), clock.now)
    assert agent.data_to_send() == b""
    assert agent.get_timer() is None


def test_bad_configuration_is_refused(clock):
    with pytest.raises(ConfigError, match="given twice"):
        OpenFlowAgent(1, [PORTS[0], PORTS[0]], clock.now)
    with pytest.raises(ConfigError, match="64-bit"):
        OpenFlowAgent(1 << 64, PORTS, clock.now)
    with pytest.raises(ConfigError, match="echo_interval"):
        AgentTimers(echo_interval=20, dead_interval=10)


# ---------------------------------------------------------------- flow table semantics


def test_add_installs_an_entry_the_node_reads(agent, scsc):
    version = agent.table_version
    assert scsc.send(add(cookie=7, idle_timeout=30, hard_timeout=60)) == []
    (entry,) = agent.entries()
    assert entry.match == of.Match(eth_type=IPV6, ipv6_dst=of.MaskedAddress.parse(B + "1"))
    assert (entry.priority, entry.cookie, entry.outputs, entry.drop) == (100, 7, (2,), False)
    assert (entry.idle_timeout, entry.hard_timeout, entry.installed_at) == (30, 60, scsc.clock.now)
    assert agent.table_version > version


def test_empty_action_list_is_drop(agent, scsc):
    scsc.send(ofparser.OFPFlowMod(DP, match=match(), instructions=[]))
    scsc.send(add(priority=5, ports=()))
    assert [e.drop for e in agent.entries()] == [True, True]


def test_entries_come_in_lookup_order(agent, scsc):
    scsc.send(add(10, match=match(B + "1")), add(300, match=match(B + "2")),
              add(10, match=match(B + "3")))  # fmt: skip
    assert [(e.priority, str(e.match.ipv6_dst)) for e in agent.entries()] == [
        (300, B + "2"),
        (10, B + "1"),
        (10, B + "3"),
    ]


def test_add_replaces_the_same_match_and_priority_keeping_counters(agent, scsc, clock):
    scsc.send(add(ports=(1,), cookie=1))
    (old,) = agent.entries()
    agent.update_counters({old.entry_id: FlowCounters(5, 500, clock.now)})
    clock.advance(10)
    scsc.send(add(ports=(2,), cookie=2))
    (new,) = agent.entries()
    assert (new.outputs, new.cookie, new.installed_at) == ((2,), 2, clock.now)
    assert (new.entry_id, new.packets, new.bytes) == (old.entry_id, 5, 500)
    scsc.send(add(ports=(3,), flags=ofp.OFPFF_RESET_COUNTS))
    (reset,) = agent.entries()
    assert reset.entry_id != old.entry_id and (reset.packets, reset.bytes) == (0, 0)


def test_same_match_other_priority_is_another_entry(agent, scsc):
    scsc.send(add(100), add(200))
    assert len(agent.entries()) == 2


def test_modify_changes_actions_only(agent, scsc, clock):
    scsc.send(add(100, cookie=1, idle_timeout=9), add(200, match=match(B, 64), cookie=2))
    first = agent.entries()
    clock.advance(3)
    scsc.send(modify((3,), match=match(B, 64)))  # non-strict: covers both
    after = agent.entries()
    assert [e.outputs for e in after] == [(3,), (3,)]
    assert [(e.entry_id, e.cookie, e.installed_at) for e in after] == [
        (e.entry_id, e.cookie, e.installed_at) for e in first
    ]
    assert after[1].idle_timeout == 9


def test_modify_strict_and_cookie_mask(agent, scsc):
    scsc.send(add(100, cookie=0x11), add(200, cookie=0x22))
    scsc.send(modify((3,), strict=True, priority=100))
    assert [(e.priority, e.outputs) for e in agent.entries()] == [(200, (2,)), (100, (3,))]
    scsc.send(modify((1,), cookie=0x22, cookie_mask=0xFF))
    assert [(e.priority, e.outputs) for e in agent.entries()] == [(200, (1,)), (100, (3,))]


def test_modify_that_selects_nothing_adds_nothing(agent, scsc):
    version = agent.table_version
    scsc.send(modify((1,), match=match(B + "9")))
    assert agent.entries() == [] and agent.table_version == version


def test_modify_with_reset_counts(agent, scsc, clock):
    scsc.send(add())
    (entry,) = agent.entries()
    agent.update_counters({entry.entry_id: FlowCounters(4, 400, clock.now)})
    scsc.send(modify((1,), flags=ofp.OFPFF_RESET_COUNTS))
    (after,) = agent.entries()
    assert after.entry_id != entry.entry_id and (after.packets, after.outputs) == (0, (1,))


def test_delete_non_strict_covers_more_specific_entries(agent, scsc):
    scsc.send(add(10, match=match(B + "1")), add(20, match=match(B + "2")),
              add(30, match=match("fd00::1")))  # fmt: skip
    scsc.send(delete(match=match(B, 64)))
    assert [str(e.match.ipv6_dst) for e in agent.entries()] == ["fd00::1"]
    scsc.send(delete(match=ofparser.OFPMatch()))
    assert agent.entries() == []


def test_delete_strict_needs_the_same_priority(agent, scsc):
    scsc.send(add(10), add(20))
    scsc.send(delete(strict=True, priority=30))
    assert len(agent.entries()) == 2
    scsc.send(delete(strict=True, priority=10))
    assert [e.priority for e in agent.entries()] == [20]


def test_delete_filters_by_cookie_and_out_port(agent, scsc):
    scsc.send(add(10, ports=(1,), cookie=0x101), add(20, ports=(2,), cookie=0x201),
              add(30, ports=(1, 2), cookie=0x102))  # fmt: skip
    scsc.send(delete(out_port=1, cookie=0x100, cookie_mask=0xF00))
    assert [e.priority for e in agent.entries()] == [20]


def test_os_ken_default_out_port_and_group_select_nothing_to_delete(agent, scsc):
    """os-ken's OFPFlowMod defaults out_port=0 and out_group=0: filters no entry passes
    (OpenFlow 1.3 and Open vSwitch agree). A DELETE must say OFPP_ANY / OFPG_ANY."""
    scsc.send(add())
    scsc.send(ofparser.OFPFlowMod(DP, command=ofp.OFPFC_DELETE, match=ofparser.OFPMatch()))
    assert len(agent.entries()) == 1


def test_delete_sends_flow_removed_when_flagged(agent, scsc, clock):
    scsc.send(add(10, flags=ofp.OFPFF_SEND_FLOW_REM, cookie=5), add(20))
    entry = agent.entries()[1]
    agent.update_counters({entry.entry_id: FlowCounters(3, 300, clock.now)})
    clock.advance(2.5)
    (removed,) = scsc.send(delete(match=ofparser.OFPMatch()))
    assert isinstance(removed, ofparser.OFPFlowRemoved)
    assert (removed.reason, removed.cookie, removed.priority) == (ofp.OFPRR_DELETE, 5, 10)
    assert (removed.packet_count, removed.duration_sec) == (3, 2)


def test_check_overlap(agent, scsc):
    scsc.send(add(100, match=match(B, 64)))
    (error,) = scsc.send(add(100, match=match(B + "1"), flags=ofp.OFPFF_CHECK_OVERLAP))
    assert (error.type, error.code) == (ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_OVERLAP)
    assert scsc.send(add(101, match=match(B + "1"), flags=ofp.OFPFF_CHECK_OVERLAP)) == []
    assert scsc.send(add(100, match=match("fd00::1"), flags=ofp.OFPFF_CHECK_OVERLAP)) == []


def test_table_full(clock):
    agent = OpenFlowAgent(1, PORTS, clock.now, max_entries=2)
    controller = Controller(agent, clock)
    controller.handshake()
    controller.send(add(1), add(2))
    (error,) = controller.send(add(3))
    assert error.code == ofp.OFPFMFC_TABLE_FULL
    assert controller.send(add(2, ports=(3,))) == []  # replacing still works


@pytest.mark.parametrize(
    ("message", "error_type", "code"),
    [
        (add(table_id=1), ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_TABLE_ID),
        (add(buffer_id=5), ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BUFFER_UNKNOWN),
        (delete(table_id=3), ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_TABLE_ID),
        (add(match=ofparser.OFPMatch(eth_type=0x800, ipv4_dst="10.0.0.1")),
         ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_FIELD),
        (add(ports=(ofp.OFPP_CONTROLLER,)), ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT),
    ],
)  # fmt: skip
def test_refused_flow_mods_change_nothing(agent, scsc, message, error_type, code):
    (error,) = scsc.send(message)
    assert (error.type, error.code, error.xid) == (error_type, code, scsc.xid)
    assert error.data == bytes(message.buf)  # the offending message itself
    assert agent.entries() == []
    assert agent.stats.errors_sent == 1
    assert [type(e) for e in scsc.events()] == [ControllerConnected, RequestRefused]


def test_delete_of_table_all_works(agent, scsc):
    scsc.send(add())
    scsc.send(delete(table_id=ofp.OFPTT_ALL))
    assert agent.entries() == []


# ---------------------------------------------------------------- timeouts


def test_hard_timeout_expires_with_flow_removed(agent, scsc, clock):
    scsc.send(add(hard_timeout=10, flags=ofp.OFPFF_SEND_FLOW_REM))
    assert agent.get_timer() == clock.now + 5  # the echo comes first
    scsc.send(add(priority=7, hard_timeout=3))  # no flag: removed silently
    assert agent.get_timer() == clock.now + 3
    agent.handle_timer(clock.advance(3))
    assert [e.priority for e in agent.entries()] == [100]
    assert scsc.replies() == []
    agent.handle_timer(clock.advance(7))
    removed, echo = scsc.replies()
    assert isinstance(echo, ofparser.OFPEchoRequest)
    assert (removed.reason, removed.duration_sec, removed.hard_timeout) == (
        ofp.OFPRR_HARD_TIMEOUT, 10, 10,
    )  # fmt: skip
    assert agent.entries() == []


def test_idle_timeout_counts_from_last_use(agent, scsc, clock):
    scsc.send(add(idle_timeout=10, flags=ofp.OFPFF_SEND_FLOW_REM))
    (entry,) = agent.entries()
    clock.advance(8)
    agent.update_counters({entry.entry_id: FlowCounters(1, 100, clock.now)})
    scsc.send(ofparser.OFPEchoRequest(DP, b""))  # traffic: no echo request from the agent
    agent.handle_timer(clock.advance(4))
    assert len(agent.entries()) == 1 and agent.get_timer() == clock.now + 1
    scsc.send(ofparser.OFPEchoRequest(DP, b""))
    agent.handle_timer(clock.advance(6))
    (removed,) = [r for r in scsc.replies() if isinstance(r, ofparser.OFPFlowRemoved)]
    assert (removed.reason, removed.packet_count) == (ofp.OFPRR_IDLE_TIMEOUT, 1)


# ---------------------------------------------------------------- statistics


def test_flow_stats_report_the_forwarders_counters(agent, scsc, clock):
    scsc.send(add(100, cookie=1), add(50, match=match(B, 64), ports=(1, 3), cookie=2))
    high, _ = agent.entries()
    agent.update_counters(
        {high.entry_id: FlowCounters(10, 1000, clock.now), 999: FlowCounters(1, 1)},
        lookups=40, matched=12,
    )  # fmt: skip
    clock.advance(2.5)
    stats = scsc.flows()
    assert [(s.priority, s.packet_count, s.byte_count) for s in stats] == [
        (100, 10, 1000),
        (50, 0, 0),
    ]
    assert (stats[0].duration_sec, stats[0].duration_nsec) == (2, 500_000_000)
    assert [a.port for a in stats[1].instructions[0].actions] == [1, 3]
    assert [s.cookie for s in scsc.flows(cookie=2, cookie_mask=0xFF)] == [2]
    assert [s.priority for s in scsc.flows(out_port=3)] == [50]
    assert [s.priority for s in scsc.flows(match=match(B + "1"))] == [100]
    (aggregate,) = scsc.send(ofparser.OFPAggregateStatsRequest(
        DP, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, ofparser.OFPMatch()))  # fmt: skip
    assert (aggregate.body.packet_count, aggregate.body.flow_count) == (10, 2)
    ((table,),) = [r.body for r in scsc.send(ofparser.OFPTableStatsRequest(DP, 0))]
    assert (table.active_count, table.lookup_count, table.matched_count) == (2, 40, 12)


def test_flow_stats_of_another_table(scsc):
    (error,) = scsc.send(ofparser.OFPFlowStatsRequest(DP, table_id=3))
    assert error.code == ofp.OFPBRC_BAD_TABLE_ID


def test_port_stats(agent, scsc, clock):
    clock.advance(4)
    (reply,) = scsc.send(ofparser.OFPPortStatsRequest(DP, 0))
    assert [(s.port_no, s.rx_packets, s.tx_bytes, s.duration_sec) for s in reply.body] == [
        (1, 10, 2000, 4),
        (2, 0, 0, 4),
        (3, 0, 0, 4),
    ]
    (one,) = scsc.send(ofparser.OFPPortStatsRequest(DP, 0, 2))
    assert [s.port_no for s in one.body] == [2]
    (error,) = scsc.send(ofparser.OFPPortStatsRequest(DP, 0, 9))
    assert error.code == ofp.OFPBRC_BAD_PORT


def test_table_features_describe_the_supported_fields(scsc):
    (reply,) = scsc.send(ofparser.OFPTableFeaturesStatsRequest(DP, 0))
    (table,) = reply.body
    assert table.name == b"dmsc-policy" and table.max_entries == 65536


def test_barrier_reply_comes_after_every_earlier_answer(agent, scsc):
    replies = scsc.send(
        add(match=ofparser.OFPMatch(eth_type=IPV6, tcp_dst=80)),
        add(),
        ofparser.OFPFlowStatsRequest(DP),
        ofparser.OFPBarrierRequest(DP),
    )
    assert [type(r).__name__ for r in replies] == [
        "OFPErrorMsg", "OFPFlowStatsReply", "OFPBarrierReply",
    ]  # fmt: skip
    assert [r.xid for r in replies] == [scsc.xid - 3, scsc.xid - 1, scsc.xid]
    assert len(replies[1].body) == 1


def test_config_role_echo_and_experimenter_requests(scsc):
    assert scsc.send(ofparser.OFPSetConfig(DP, ofp.OFPC_FRAG_DROP, 256)) == []
    (config,) = scsc.send(ofparser.OFPGetConfigRequest(DP))
    assert (config.flags, config.miss_send_len) == (ofp.OFPC_FRAG_DROP, 256)
    (error,) = scsc.send(ofparser.OFPSetConfig(DP, 0x40, 0))
    assert error.type == ofp.OFPET_SWITCH_CONFIG_FAILED
    (role,) = scsc.send(ofparser.OFPRoleRequest(DP, ofp.OFPCR_ROLE_MASTER, 42))
    assert (role.role, role.generation_id) == (ofp.OFPCR_ROLE_EQUAL, 42)
    (echo,) = scsc.send(ofparser.OFPEchoRequest(DP, b"abc"))
    assert (echo.xid, echo.data) == (scsc.xid, b"abc")
    (foreign,) = scsc.send(ofparser.OFPExperimenter(DP, 0x2320, 1, b""))
    assert foreign.code == ofp.OFPBRC_BAD_EXPERIMENTER
    (ours,) = scsc.send(ofparser.OFPExperimenter(DP, of.DMSC_EXPERIMENTER_ID, 1, b""))
    assert ours.code == ofp.OFPBRC_BAD_EXP_TYPE


def test_an_error_from_the_controller_is_an_event(agent, scsc):
    assert scsc.send(ofparser.OFPErrorMsg(DP, type_=1, code=1, data=b"x")) == []
    events = scsc.events()
    assert isinstance(events[-1], ControllerErrorReceived) and events[-1].error.data == b"x"
    assert agent.stats.errors_received == 1


# ---------------------------------------------------------------- asynchronous messages


def test_port_status_on_add_modify_delete(agent, scsc):
    new = PortInfo(4, "eth3", "02:00:00:00:00:04", True, 1_000_000)
    agent.port_changed(new, scsc.clock.now)
    agent.port_changed(new, scsc.clock.now)  # unchanged: nothing
    agent.port_changed(PortInfo(4, "eth3", "02:00:00:00:00:04", False, 1_000_000), scsc.clock.now)
    agent.port_removed(4, scsc.clock.now)
    agent.port_removed(4, scsc.clock.now)  # gone already: nothing
    replies = scsc.replies()
    assert [(r.reason, r.desc.port_no, r.desc.state) for r in replies] == [
        (ofp.OFPPR_ADD, 4, ofp.OFPPS_LIVE),
        (ofp.OFPPR_MODIFY, 4, ofp.OFPPS_LINK_DOWN),
        (ofp.OFPPR_DELETE, 4, ofp.OFPPS_LINK_DOWN),
    ]
    assert [p.port_no for p in agent.ports()] == [1, 2, 3]


def test_telemetry_and_lsa_copies_go_as_dmsc_experimenter_messages(agent, scsc):
    sample = dmsc_pb2.QosSample(sg_node_id="sg1", target="/B/4", delay_ms=3.0, loss=0.0)
    telemetry = dmsc_pb2.Telemetry(samples=[sample])
    assert agent.send_dmsc(telemetry, scsc.clock.now)
    assert agent.send_experimenter(of.EXP_LSA_COPY, b"", scsc.clock.now)
    first, second = scsc.replies()
    assert (first.experimenter, first.exp_type) == (0x00D5C0DE, of.EXP_TELEMETRY)
    assert of.decode_dmsc_experimenter(first.experimenter, first.exp_type, first.data) == telemetry
    assert second.exp_type == of.EXP_LSA_COPY


def test_async_messages_without_a_controller_are_dropped_and_counted(agent, clock):
    assert not agent.send_experimenter(of.EXP_TELEMETRY, b"", clock.now)
    agent.port_removed(1, clock.now)
    assert agent.data_to_send() == b"" and agent.stats.async_dropped == 2


# ---------------------------------------------------------------- keepalive, loss, fail-static


def test_echo_keepalive_and_controller_loss(agent, scsc, clock):
    assert agent.get_timer() == clock.now + 5
    agent.handle_timer(clock.advance(5))
    (echo,) = scsc.replies()
    assert isinstance(echo, ofparser.OFPEchoRequest)
    assert agent.get_timer() == clock.now + 5
    scsc.send(ofparser.OFPEchoReply(DP, b""))  # any traffic keeps the session alive
    agent.handle_timer(clock.advance(5))
    assert len(scsc.replies()) == 1
    agent.handle_timer(clock.advance(5))
    agent.handle_timer(clock.advance(5))
    assert agent.state is AgentState.DISCONNECTED
    (lost,) = [e for e in scsc.events() if isinstance(e, ControllerLost)]
    assert "for 15.0 s" in lost.reason
    assert agent.get_timer() is None


def test_fail_static_the_table_survives_ages_and_resyncs(agent, scsc, clock):
    scsc.send(add(100), add(50, match=match(B, 64), hard_timeout=100))
    version = agent.table_version
    agent.connection_lost(clock.now)
    assert [e.priority for e in agent.entries()] == [100, 50]
    assert agent.get_timer() == clock.now + 100  # the entries still age
    agent.handle_timer(clock.advance(100))
    assert [e.priority for e in agent.entries()] == [100]
    assert agent.table_version == version + 1
    assert agent.data_to_send() == b""
    scsc.handshake()  # the SCSC comes back and reads the table
    assert [s.priority for s in scsc.flows()] == [100]
    assert agent.stats.connections == 2


def test_a_dead_session_drops_bytes_until_reconnected(agent, scsc, clock):
    agent.connection_lost(clock.now)
    agent.receive(serialized(ofparser.OFPBarrierRequest(DP)), clock.now)
    assert agent.data_to_send() == b""


def test_an_unframable_stream_ends_the_session(agent, scsc):
    (reply,) = scsc.send_raw(serialized(ofparser.OFPBarrierRequest(DP)) + bytes(8))
    assert isinstance(reply, ofparser.OFPBarrierReply)
    assert agent.state is AgentState.DISCONNECTED
    assert "cannot frame" in scsc.events()[-1].reason


# ---------------------------------------------------------------- service sessions


def test_a_service_session_shares_the_table_and_async_goes_to_the_controller(agent, scsc, clock):
    service = agent.open_session(clock.now)
    tool = Controller(service, clock)
    tool.handshake()
    tool.send(add(flags=ofp.OFPFF_SEND_FLOW_REM))
    assert [s.priority for s in scsc.flows()] == [100]
    assert tool.send(delete(match=ofparser.OFPMatch())) == []
    (removed,) = scsc.replies()
    assert removed.reason == ofp.OFPRR_DELETE
    agent.handle_timer(clock.advance(5))  # both sessions are kept alive
    assert len(scsc.replies()) == len(tool.replies()) == 1
    service.connection_lost(clock.now)
    assert agent.get_timer() == clock.now + 5  # only the controller's echo remains


# ---------------------------------------------------------------- robustness


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=80), max_size=6), st.integers(0, 35))
def test_garbage_never_raises(chunks: list[bytes], msg_type: int):
    clock = Clock()
    agent = OpenFlowAgent(1, PORTS, clock.now)
    controller = Controller(agent, clock)
    controller.handshake()
    for chunk in chunks:
        framed = struct.pack("!BBHI", 4, msg_type, 8 + len(chunk), 1) + chunk
        agent.receive(framed, clock.now)
        split_stream(agent.data_to_send())
        agent.receive(chunk, clock.now)  # and the raw bytes, framed or not
        agent.data_to_send()
        if agent.state is AgentState.DISCONNECTED:
            controller.handshake()
