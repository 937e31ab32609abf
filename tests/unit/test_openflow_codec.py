"""The switch-side OpenFlow 1.3 codec, proved against os-ken's controller side.

Switch → controller: every message our encoders make is parsed by os-ken's own parser
(``ofproto_parser.msg``, what an os-ken controller runs on each message from a switch).
Controller → switch: every message os-ken's controller classes serialize is decoded by ours.
Bad bytes: a DecodeError (an OFPT_ERROR to answer with), never another exception.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofparser

from dmsc.errors import ConfigError, DecodeError
from dmsc.proto import dmsc_pb2
from dmsc.proto import openflow as of

#: A stand-in for os-ken's Datapath: all its message classes need (serialize and parse).
DP = SimpleNamespace(ofproto=ofp, ofproto_parser=ofparser, id=0x1234)
IPV6 = 0x86DD
DST = "fd64:6d73:63:92eb::1"


def os_ken_parse(data: bytes) -> ofproto_parser.MsgBase:
    """One switch → controller message, parsed as an os-ken controller parses it."""
    version, msg_type, length, xid = ofproto_parser.header(data)
    assert length == len(data), "header length and message length differ"
    message = ofproto_parser.msg(DP, version, msg_type, length, xid, data)
    assert message is not None, "os-ken could not parse the message (it logs why)"
    return message


def split_stream(stream: bytes) -> list[bytes]:
    """Cut a byte stream into messages; independent of the codec under test."""
    messages = []
    while stream:
        (length,) = struct.unpack_from("!H", stream, 2)
        messages.append(stream[:length])
        stream = stream[length:]
    return messages


def serialized(message: ofproto_parser.MsgBase, xid: int = 7) -> bytes:
    """What an os-ken controller puts on the wire for ``message``."""
    message.set_xid(xid)
    message.serialize()
    return bytes(message.buf)


def flow_mod(**fields: object) -> ofparser.OFPFlowMod:
    fields.setdefault("match", ofparser.OFPMatch(eth_type=IPV6, ipv6_dst=DST))
    fields.setdefault("instructions", [apply(2)])
    return ofparser.OFPFlowMod(DP, **fields)


def apply(*ports: int, kind: int = ofp.OFPIT_APPLY_ACTIONS) -> ofparser.OFPInstructionActions:
    return ofparser.OFPInstructionActions(kind, [ofparser.OFPActionOutput(p) for p in ports])


def refused(data: bytes) -> of.OpenFlowError:
    with pytest.raises(of.OpenFlowError) as caught:
        of.decode_message(data)
    return caught.value


@pytest.fixture(autouse=True)
def _os_ken_logs_no_error(caplog: pytest.LogCaptureFixture):
    """os-ken's parser logs, and returns None, when a message is malformed: fail on that."""
    with caplog.at_level(logging.ERROR, logger="os_ken"):
        yield
    assert not [r for r in caplog.records if r.name.startswith("os_ken")]


# ---------------------------------------------------------------- switch → controller


def test_hello_carries_a_version_bitmap_of_1_3_only():
    message = os_ken_parse(of.encode_hello(1))
    assert isinstance(message, ofparser.OFPHello)
    assert message.xid == 1
    assert [e.versions for e in message.elements] == [[ofp.OFP_VERSION]]


def test_echo_request_and_reply():
    request = os_ken_parse(of.encode_echo_request(5, b"ping"))
    reply = os_ken_parse(of.encode_echo_reply(6, b"pong"))
    assert isinstance(request, ofparser.OFPEchoRequest) and request.data == b"ping"
    assert isinstance(reply, ofparser.OFPEchoReply) and (reply.xid, reply.data) == (6, b"pong")


def test_features_reply():
    message = os_ken_parse(of.encode_features_reply(2, 0xDEADBEEF00000001))
    assert isinstance(message, ofparser.OFPSwitchFeatures)
    assert message.datapath_id == 0xDEADBEEF00000001
    assert (message.n_buffers, message.n_tables, message.auxiliary_id) == (0, 1, 0)
    assert message.capabilities & ofp.OFPC_FLOW_STATS
    assert message.capabilities & ofp.OFPC_PORT_STATS


def test_get_config_reply():
    message = os_ken_parse(of.encode_get_config_reply(3, ofp.OFPC_FRAG_DROP, 128))
    assert isinstance(message, ofparser.OFPGetConfigReply)
    assert (message.flags, message.miss_send_len) == (ofp.OFPC_FRAG_DROP, 128)


PORT = of.PortInfo(3, "eth2", "02:00:00:00:00:03", up=True, curr_speed_kbps=1_000_000)


@pytest.mark.parametrize("reason", [ofp.OFPPR_ADD, ofp.OFPPR_DELETE, ofp.OFPPR_MODIFY])
def test_port_status(reason: int):
    message = os_ken_parse(of.encode_port_status(0, reason, PORT))
    assert isinstance(message, ofparser.OFPPortStatus)
    assert message.reason == reason
    desc = message.desc
    assert (desc.port_no, desc.hw_addr, desc.name) == (3, "02:00:00:00:00:03", b"eth2")
    assert desc.state == ofp.OFPPS_LIVE and desc.curr & ofp.OFPPF_1GB_FD
    assert (desc.curr_speed, desc.max_speed) == (1_000_000, 1_000_000)


def test_port_down_has_link_down_state():
    down = of.PortInfo(4, "eth3", "02:00:00:00:00:04", up=False, curr_speed_kbps=123)
    desc = os_ken_parse(of.encode_port_status(0, ofp.OFPPR_MODIFY, down)).desc
    assert desc.state == ofp.OFPPS_LINK_DOWN and desc.curr & ofp.OFPPF_OTHER


@pytest.mark.parametrize(
    "fields",
    [
        {"port_no": 0},
        {"name": "a-name-of-16-bytes"},
        {"name": ""},
        {"hw_addr": "02:00:00:00:00"},
        {"hw_addr": "zz:00:00:00:00:00"},
        {"curr_speed_kbps": -1},
    ],
)
def test_bad_port_info_is_refused(fields: dict):
    good = {"port_no": 1, "name": "eth0", "hw_addr": "02:00:00:00:00:01"}
    with pytest.raises(ConfigError):
        of.PortInfo(**{**good, **fields})


def test_desc_reply():
    desc = of.SwitchDescription(serial_number="42", datapath="sr1")
    message = os_ken_parse(of.encode_desc_reply(4, desc))
    assert isinstance(message, ofparser.OFPDescStatsReply)
    assert message.body.mfr_desc == b"DMSC testbed"
    assert (message.body.serial_num, message.body.dp_desc) == (b"42", b"sr1")


def flow(**fields: object) -> of.FlowStats:
    defaults = {
        "match": of.Match(eth_type=IPV6, ipv6_dst=of.MaskedAddress.parse("fd64::/64")),
        "instructions": (of.Instruction(ofp.OFPIT_APPLY_ACTIONS, (of.Output(2),)),),
        "priority": 100,
    }
    return of.FlowStats(**{**defaults, **fields})


def test_flow_stats_reply_with_counters_durations_matches_and_instructions():
    flows = [
        flow(cookie=0xC0FFEE, duration=12.25, idle_timeout=30, hard_timeout=60,
             flags=ofp.OFPFF_SEND_FLOW_REM, packet_count=10, byte_count=1500),
        flow(match=of.Match(in_port=1, eth_type=IPV6,
                            ipv6_src=of.MaskedAddress.parse("fd00::/ffff:0:ffff::")),
             instructions=(), priority=5),
    ]  # fmt: skip
    (data,) = of.encode_flow_stats_reply(9, flows)
    message = os_ken_parse(data)
    assert isinstance(message, ofparser.OFPFlowStatsReply) and message.flags == 0
    first, second = message.body
    assert (first.cookie, first.priority, first.table_id) == (0xC0FFEE, 100, 0)
    assert (first.duration_sec, first.duration_nsec) == (12, 250_000_000)
    assert (first.idle_timeout, first.hard_timeout, first.flags) == (30, 60, 1)
    assert (first.packet_count, first.byte_count) == (10, 1500)
    assert dict(first.match.items()) == {
        "eth_type": IPV6,
        "ipv6_dst": ("fd64::", "ffff:ffff:ffff:ffff::"),
    }
    (instruction,) = first.instructions
    assert instruction.type == ofp.OFPIT_APPLY_ACTIONS
    assert [a.port for a in instruction.actions] == [2]
    assert second.match["in_port"] == 1
    assert second.match["ipv6_src"] == ("fd00::", "ffff:0:ffff::")
    assert second.instructions == []


def test_empty_flow_stats_reply():
    (data,) = of.encode_flow_stats_reply(1, [])
    assert os_ken_parse(data).body == []


def test_a_large_flow_stats_reply_is_split_with_reply_more():
    flows = [flow(priority=i, cookie=i) for i in range(1000)]
    messages = of.encode_flow_stats_reply(11, flows)
    assert len(messages) > 1 and all(len(m) <= 0xFFFF for m in messages)
    parsed = [os_ken_parse(m) for m in messages]
    assert [m.flags for m in parsed] == [ofp.OFPMPF_REPLY_MORE] * (len(parsed) - 1) + [0]
    assert [s.cookie for m in parsed for s in m.body] == list(range(1000))
    assert {m.xid for m in parsed} == {11}


def test_aggregate_reply():
    message = os_ken_parse(of.encode_aggregate_reply(2, 7, 700, 3))
    assert isinstance(message, ofparser.OFPAggregateStatsReply)
    body = message.body
    assert (body.packet_count, body.byte_count, body.flow_count) == (7, 700, 3)


def test_table_stats_reply():
    (table,) = os_ken_parse(of.encode_table_stats_reply(2, 4, 1000, 900)).body
    assert (table.table_id, table.active_count) == (0, 4)
    assert (table.lookup_count, table.matched_count) == (1000, 900)


def test_table_features_reply_lists_what_the_decoder_accepts():
    message = os_ken_parse(of.encode_table_features_reply(2, "dmsc-policy", 4096))
    (table,) = message.body
    assert (table.table_id, table.name, table.max_entries) == (0, b"dmsc-policy", 4096)
    props = {p.type: p for p in table.properties}
    assert {i.type for i in props[ofp.OFPTFPT_INSTRUCTIONS].instruction_ids} == {
        ofp.OFPIT_APPLY_ACTIONS,
        ofp.OFPIT_WRITE_ACTIONS,
    }
    assert [a.type for a in props[ofp.OFPTFPT_APPLY_ACTIONS].action_ids] == [ofp.OFPAT_OUTPUT]
    fields = {(o.type, o.hasmask, o.length) for o in props[ofp.OFPTFPT_MATCH].oxm_ids}
    assert fields == {
        ("in_port", 0, 4),
        ("eth_type", 0, 2),
        ("ipv6_src", 1, 32),
        ("ipv6_dst", 1, 32),
    }


def test_port_stats_reply():
    counters = of.PortCounters(rx_packets=1, tx_packets=2, rx_bytes=3, tx_bytes=4, rx_dropped=5)
    (data,) = of.encode_port_stats_reply(
        2, [of.PortStats(1, counters, 3.5), of.PortStats(2, of.PortCounters(), 0)]
    )
    first, second = os_ken_parse(data).body
    assert (first.port_no, first.rx_packets, first.tx_packets, first.rx_bytes) == (1, 1, 2, 3)
    assert (first.tx_bytes, first.rx_dropped, first.duration_sec) == (4, 5, 3)
    assert first.duration_nsec == 500_000_000
    assert second.port_no == 2 and second.rx_packets == 0


def test_port_desc_reply():
    (data,) = of.encode_port_desc_reply(2, [PORT])
    (port,) = os_ken_parse(data).body
    assert (port.port_no, port.name, port.curr_speed) == (3, b"eth2", 1_000_000)


def test_barrier_and_role_replies():
    assert isinstance(os_ken_parse(of.encode_barrier_reply(8)), ofparser.OFPBarrierReply)
    role = os_ken_parse(of.encode_role_reply(9, ofp.OFPCR_ROLE_EQUAL, 77))
    assert (role.role, role.generation_id) == (ofp.OFPCR_ROLE_EQUAL, 77)


def test_flow_removed():
    removed = of.FlowRemoved(
        match=of.Match(eth_type=IPV6, ipv6_dst=of.MaskedAddress.parse(DST)),
        priority=100, reason=ofp.OFPRR_IDLE_TIMEOUT, cookie=5, duration=1.5, idle_timeout=10,
        packet_count=3, byte_count=300,
    )  # fmt: skip
    message = os_ken_parse(of.encode_flow_removed(0, removed))
    assert isinstance(message, ofparser.OFPFlowRemoved)
    assert (message.cookie, message.priority, message.reason) == (5, 100, ofp.OFPRR_IDLE_TIMEOUT)
    assert (message.duration_sec, message.duration_nsec, message.idle_timeout) == (1, 5 * 10**8, 10)
    assert (message.packet_count, message.byte_count) == (3, 300)
    assert message.match["ipv6_dst"] == DST


def test_error_reply_carries_the_offending_request():
    request = serialized(ofparser.OFPGroupMod(DP), xid=42)
    error = refused(request)
    message = os_ken_parse(of.error_reply(error))
    assert isinstance(message, ofparser.OFPErrorMsg)
    assert (message.xid, message.type, message.code) == (
        42,
        ofp.OFPET_BAD_REQUEST,
        ofp.OFPBRC_BAD_TYPE,
    )
    assert message.data == request


def telemetry() -> dmsc_pb2.Telemetry:
    sample = dmsc_pb2.QosSample(
        sg_node_id="sg1", target="/B/4", timestamp=1.0, delay_ms=2.5, jitter_ms=0.5,
        loss=0.01, bandwidth_bps=1e9,
    )  # fmt: skip
    return dmsc_pb2.Telemetry(samples=[sample])


def lsa_copy() -> dmsc_pb2.LsaCopy:
    lsa = dmsc_pb2.LinkStateAdvertisement(
        originator="sr1", sequence=3, lifetime_ms=60_000,
        adjacencies=[dmsc_pb2.Adjacency(neighbor="sg1", cost=10)],
    )  # fmt: skip
    port = dmsc_pb2.PortNeighbor(port_no=1, interface="eth0", neighbor="sg1")
    return dmsc_pb2.LsaCopy(lsa=lsa, ports=[port])


@pytest.mark.parametrize(
    ("body", "exp_type"), [(telemetry(), of.EXP_TELEMETRY), (lsa_copy(), of.EXP_LSA_COPY)]
)
def test_dmsc_experimenter_round_trip(body, exp_type: int):
    message = os_ken_parse(of.encode_dmsc_experimenter(12, body))
    assert isinstance(message, ofparser.OFPExperimenter)
    assert (message.experimenter, message.exp_type) == (of.DMSC_EXPERIMENTER_ID, exp_type)
    assert message.experimenter == 0x00D5C0DE
    decoded = of.decode_dmsc_experimenter(message.experimenter, message.exp_type, message.data)
    assert decoded == body


def test_unknown_values_travel_as_nan_and_are_accepted():
    nan = float("nan")
    body = dmsc_pb2.Telemetry(
        samples=[dmsc_pb2.QosSample(sg_node_id="sg1", target="/B/4", timestamp=1.0,
                                    delay_ms=nan, jitter_ms=nan, loss=1.0, bandwidth_bps=nan)],
        links=[dmsc_pb2.LinkSample(node_id="sr2", neighbor="sg4", timestamp=1.0,
                                   tx_bps=1e6, available_bps=nan)],
    )  # fmt: skip
    data = body.SerializeToString()
    decoded = of.decode_dmsc_experimenter(of.DMSC_EXPERIMENTER_ID, 1, data)
    assert decoded.SerializeToString() == data


@pytest.mark.parametrize(
    ("experimenter", "exp_type", "data", "why"),
    [
        (0x2320, 1, b"", "not DMSC"),
        (of.DMSC_EXPERIMENTER_ID, 9, b"", "unknown exp_type 9"),
        (of.DMSC_EXPERIMENTER_ID, 1, b"\xff\xff", "not a valid Telemetry"),
        (of.DMSC_EXPERIMENTER_ID, 2, b"", "without an LSA"),
        (
            of.DMSC_EXPERIMENTER_ID,
            1,
            dmsc_pb2.Telemetry(
                samples=[dmsc_pb2.QosSample(sg_node_id="sg1", target="/B", loss=2)]
            ).SerializeToString(),
            "telemetry from sg1 for /B: loss 2",
        ),
        (
            of.DMSC_EXPERIMENTER_ID,
            1,
            dmsc_pb2.Telemetry(
                samples=[dmsc_pb2.QosSample(sg_node_id="sg1", target="/B", delay_ms=-1)]
            ).SerializeToString(),
            "telemetry from sg1 for /B: value out of range",
        ),
        (
            of.DMSC_EXPERIMENTER_ID,
            1,
            dmsc_pb2.Telemetry(
                links=[dmsc_pb2.LinkSample(node_id="sr2", neighbor="sg4", tx_bps=float("inf"))]
            ).SerializeToString(),
            "link sample from sr2 toward sg4: tx_bps inf must be finite and >= 0",
        ),
    ],
)
def test_bad_dmsc_experimenter_bodies(experimenter, exp_type, data, why):
    with pytest.raises(DecodeError, match=why):
        of.decode_dmsc_experimenter(experimenter, exp_type, data)


# ---------------------------------------------------------------- controller → switch


def test_os_ken_hello_decodes_and_negotiates_1_3():
    hello = of.decode_message(serialized(ofparser.OFPHello(DP), xid=3))
    assert hello == of.Hello(3, ofp.OFP_VERSION, None)
    assert hello.negotiate() == ofp.OFP_VERSION


def test_hello_of_a_newer_controller_without_bitmap_negotiates_down():
    data = struct.pack("!BBHI", 6, ofp.OFPT_HELLO, 8, 1)  # os-ken's own first HELLO is 1.5
    assert of.decode_message(data).negotiate() == ofp.OFP_VERSION


def test_hello_bitmaps():
    bitmap = struct.pack("!HHI", ofp.OFPHET_VERSIONBITMAP, 8, (1 << 1) | (1 << 4) | (1 << 6))
    hello = of.decode_message(struct.pack("!BBHI", 6, 0, 16, 1) + bitmap)
    assert hello.versions == {1, 4, 6} and hello.negotiate() == 4
    only_1_0 = struct.pack("!HHI", ofp.OFPHET_VERSIONBITMAP, 8, 1 << 1)
    assert of.decode_message(struct.pack("!BBHI", 1, 0, 16, 1) + only_1_0).negotiate() is None
    assert of.decode_message(struct.pack("!BBHI", 1, 0, 8, 1)).negotiate() is None


def test_os_ken_echo_features_config_barrier_role():
    assert of.decode_message(serialized(ofparser.OFPEchoRequest(DP, b"x"))) == of.EchoRequest(
        7, b"x"
    )
    assert of.decode_message(serialized(ofparser.OFPEchoReply(DP, b"y"))) == of.EchoReply(7, b"y")
    assert of.decode_message(serialized(ofparser.OFPFeaturesRequest(DP))) == of.FeaturesRequest(7)
    get_config = serialized(ofparser.OFPGetConfigRequest(DP))
    assert of.decode_message(get_config) == of.GetConfigRequest(7)
    set_config = serialized(ofparser.OFPSetConfig(DP, ofp.OFPC_FRAG_NORMAL, 256))
    assert of.decode_message(set_config) == of.SetConfig(7, 0, 256)
    assert of.decode_message(serialized(ofparser.OFPBarrierRequest(DP))) == of.BarrierRequest(7)
    role = serialized(ofparser.OFPRoleRequest(DP, ofp.OFPCR_ROLE_MASTER, 5))
    assert of.decode_message(role) == of.RoleRequest(7, ofp.OFPCR_ROLE_MASTER, 5)


def test_os_ken_error_and_experimenter_from_the_controller():
    error = serialized(ofparser.OFPErrorMsg(DP, type_=1, code=2, data=b"abc"))
    assert of.decode_message(error) == of.ErrorMsg(7, 1, 2, b"abc")
    experimenter = serialized(ofparser.OFPExperimenter(DP, 0x00D5C0DE, 1, b"body"))
    assert of.decode_message(experimenter) == of.Experimenter(7, 0x00D5C0DE, 1, b"body")


@pytest.mark.parametrize(
    "command",
    [
        ofp.OFPFC_ADD,
        ofp.OFPFC_MODIFY,
        ofp.OFPFC_MODIFY_STRICT,
        ofp.OFPFC_DELETE,
        ofp.OFPFC_DELETE_STRICT,
    ],
)
def test_os_ken_flow_mod_every_command(command: int):
    message = flow_mod(
        command=command, cookie=0xAB, cookie_mask=0xFF, idle_timeout=10, hard_timeout=20,
        priority=300, flags=ofp.OFPFF_SEND_FLOW_REM | ofp.OFPFF_RESET_COUNTS,
        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
    )  # fmt: skip
    decoded = of.decode_message(serialized(message))
    assert decoded == of.FlowMod(
        7, command, of.Match(eth_type=IPV6, ipv6_dst=of.MaskedAddress.parse(DST)),
        (of.Instruction(ofp.OFPIT_APPLY_ACTIONS, (of.Output(2, ofp.OFPCML_MAX),)),),
        cookie=0xAB, cookie_mask=0xFF, idle_timeout=10, hard_timeout=20, priority=300,
        flags=ofp.OFPFF_SEND_FLOW_REM | ofp.OFPFF_RESET_COUNTS,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        (ofparser.OFPMatch(), of.Match()),
        (ofparser.OFPMatch(in_port=3), of.Match(in_port=3)),
        (ofparser.OFPMatch(eth_type=IPV6), of.Match(eth_type=IPV6)),
        (
            ofparser.OFPMatch(eth_type=IPV6, ipv6_src=("fd00::", "ffff::")),
            of.Match(eth_type=IPV6, ipv6_src=of.MaskedAddress.parse("fd00::/16")),
        ),
        (
            ofparser.OFPMatch(in_port=1, eth_type=IPV6, ipv6_src="fd00::1",
                              ipv6_dst=("fd64::", "ffff:ffff:ffff:ffff::")),
            of.Match(
                1, IPV6, of.MaskedAddress.parse("fd00::1"), of.MaskedAddress.parse("fd64::/64")
            ),
        ),
        (  # an all-ones mask is an exact match, an all-zero mask a wildcard
            ofparser.OFPMatch(eth_type=IPV6, ipv6_dst=(DST, "ffff:" * 7 + "ffff"),
                              ipv6_src=("::", "::")),
            of.Match(eth_type=IPV6, ipv6_dst=of.MaskedAddress.parse(DST)),
        ),
    ],
)  # fmt: skip
def test_os_ken_matches(match: ofparser.OFPMatch, expected: of.Match):
    assert of.decode_message(serialized(flow_mod(match=match))).match == expected


@pytest.mark.parametrize(
    ("instructions", "expected"),
    [
        ([], ()),
        ([apply()], ((ofp.OFPIT_APPLY_ACTIONS, ()),)),
        ([apply(1, 2)], ((ofp.OFPIT_APPLY_ACTIONS, (1, 2)),)),
        ([apply(3, kind=ofp.OFPIT_WRITE_ACTIONS)], ((ofp.OFPIT_WRITE_ACTIONS, (3,)),)),
        ([apply(1), apply(2, kind=ofp.OFPIT_WRITE_ACTIONS)],
         ((ofp.OFPIT_APPLY_ACTIONS, (1,)), (ofp.OFPIT_WRITE_ACTIONS, (2,)))),
    ],
)  # fmt: skip
def test_os_ken_instructions(instructions: list, expected: tuple):
    decoded = of.decode_message(serialized(flow_mod(instructions=instructions)))
    assert [(i.kind, tuple(a.port for a in i.actions)) for i in decoded.instructions] == list(
        expected
    )


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (ofparser.OFPDescStatsRequest(DP, 0), of.DescRequest(7)),
        (ofparser.OFPPortDescStatsRequest(DP, 0), of.PortDescRequest(7)),
        (ofparser.OFPTableStatsRequest(DP, 0), of.TableStatsRequest(7)),
        (ofparser.OFPTableFeaturesStatsRequest(DP, 0), of.TableFeaturesRequest(7)),
        (ofparser.OFPPortStatsRequest(DP, 0), of.PortStatsRequest(7, ofp.OFPP_ANY)),
        (ofparser.OFPPortStatsRequest(DP, 0, 2), of.PortStatsRequest(7, 2)),
        (ofparser.OFPFlowStatsRequest(DP), of.FlowStatsRequest(7, of.Match())),
        (
            ofparser.OFPFlowStatsRequest(DP, 0, 0, 2, ofp.OFPG_ANY, 5, 0xFF,
                                         ofparser.OFPMatch(eth_type=IPV6)),
            of.FlowStatsRequest(7, of.Match(eth_type=IPV6), False, 0, 2, ofp.OFPG_ANY, 5, 0xFF),
        ),
        (ofparser.OFPAggregateStatsRequest(DP, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0,
                                           ofparser.OFPMatch()),
         of.FlowStatsRequest(7, of.Match(), aggregate=True)),
    ],
)  # fmt: skip
def test_os_ken_multipart_requests(request_, expected):
    assert of.decode_message(serialized(request_)) == expected


UNSUPPORTED_TYPES = [
    ofparser.OFPPacketOut(DP, ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER, [], b"\x00" * 14),
    ofparser.OFPGroupMod(DP),
    ofparser.OFPPortMod(DP, 1, "02:00:00:00:00:01", 0, 0, 0),
    ofparser.OFPMeterMod(DP),
    ofparser.OFPTableMod(DP, 0, 0),
    ofparser.OFPQueueGetConfigRequest(DP, 1),
    ofparser.OFPGetAsyncRequest(DP),
    ofparser.OFPSetAsync(DP, [0, 0], [0, 0], [0, 0]),
]


@pytest.mark.parametrize("message", UNSUPPORTED_TYPES, ids=lambda m: type(m).__name__)
def test_unsupported_message_types_get_bad_type(message):
    error = refused(serialized(message, xid=99))
    assert (error.error_type, error.error_code, error.xid) == (
        ofp.OFPET_BAD_REQUEST,
        ofp.OFPBRC_BAD_TYPE,
        99,
    )


UNSUPPORTED_MULTIPART = [
    ofparser.OFPGroupStatsRequest(DP, 0),
    ofparser.OFPGroupDescStatsRequest(DP, 0),
    ofparser.OFPMeterStatsRequest(DP, 0),
    ofparser.OFPQueueStatsRequest(DP, 0),
    ofparser.OFPMeterFeaturesStatsRequest(DP, 0),
]


@pytest.mark.parametrize("message", UNSUPPORTED_MULTIPART, ids=lambda m: type(m).__name__)
def test_unsupported_multipart_types_get_bad_multipart(message):
    error = refused(serialized(message))
    assert (error.error_type, error.error_code) == (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_MULTIPART)


def test_setting_table_features_is_refused():
    setting = ofparser.OFPTableFeaturesStatsRequest(
        DP, 0, [ofparser.OFPTableFeaturesStats(0, b"x", 0, 0, 0, 10, [])]
    )
    error = refused(serialized(setting))
    assert (error.error_type, error.error_code) == (
        ofp.OFPET_TABLE_FEATURES_FAILED,
        ofp.OFPTFFC_EPERM,
    )


@pytest.mark.parametrize(
    ("match", "code", "why"),
    [
        (ofparser.OFPMatch(eth_type=0x800, ipv4_dst="10.0.0.1"), ofp.OFPBMC_BAD_FIELD, "ipv4_dst"),
        (ofparser.OFPMatch(eth_type=IPV6, ip_proto=6), ofp.OFPBMC_BAD_FIELD, "ip_proto"),
        (ofparser.OFPMatch(eth_dst="02:00:00:00:00:01"), ofp.OFPBMC_BAD_FIELD, "eth_dst"),
        (ofparser.OFPMatch(vlan_vid=0x1001), ofp.OFPBMC_BAD_FIELD, "vlan_vid"),
        (ofparser.OFPMatch(metadata=1), ofp.OFPBMC_BAD_FIELD, "metadata"),
        (ofparser.OFPMatch(eth_type=(IPV6, 0xFFFF)), ofp.OFPBMC_BAD_MASK, "eth_type"),
        (ofparser.OFPMatch(ipv6_dst=DST), ofp.OFPBMC_BAD_PREREQ, "needs eth_type"),
        (ofparser.OFPMatch(eth_type=0x800, ipv6_dst=DST), ofp.OFPBMC_BAD_PREREQ, "needs eth_type"),
        (ofparser.OFPMatch(in_port=0), ofp.OFPBMC_BAD_VALUE, "in_port 0"),
        (ofparser.OFPMatch(in_port=ofp.OFPP_LOCAL), ofp.OFPBMC_BAD_VALUE, "in_port"),
    ],
)  # fmt: skip
def test_unsupported_matches_are_refused_not_ignored(match, code: int, why: str):
    error = refused(serialized(flow_mod(match=match)))
    assert (error.error_type, error.error_code) == (ofp.OFPET_BAD_MATCH, code)
    assert why in str(error)


def oxm(field: int, payload: bytes, *, oxm_class: int = 0x8000, hasmask: bool = False) -> bytes:
    return struct.pack("!HBB", oxm_class, field << 1 | hasmask, len(payload)) + payload


def flow_mod_with_oxms(tlvs: bytes, declared: int | None = None) -> bytes:
    """A FLOW_MOD whose match is these raw OXM TLVs (os-ken would not write them)."""
    head = serialized(flow_mod(match=ofparser.OFPMatch(), instructions=[]))[:48]
    match = struct.pack("!HH", ofp.OFPMT_OXM, declared or 4 + len(tlvs)) + tlvs
    data = head + match + bytes(-len(match) % 8)
    return data[:2] + struct.pack("!H", len(data)) + data[4:]


IN_PORT_1 = oxm(ofp.OFPXMT_OFB_IN_PORT, struct.pack("!I", 1))
ETH_TYPE_IPV6 = oxm(ofp.OFPXMT_OFB_ETH_TYPE, struct.pack("!H", IPV6))
#: ipv6_dst fd00::1 under mask ffff:: — os-ken's serializer would clear the stray bit
STRAY_BIT = oxm(ofp.OFPXMT_OFB_IPV6_DST, b"\xfd" + bytes(14) + b"\x01" + b"\xff\xff" + bytes(14),
                hasmask=True)  # fmt: skip


@pytest.mark.parametrize(
    ("data", "code", "why"),
    [
        (flow_mod_with_oxms(IN_PORT_1 * 2), ofp.OFPBMC_DUP_FIELD, "twice"),
        (flow_mod_with_oxms(oxm(0, b"\0" * 4, oxm_class=0x0001)), ofp.OFPBMC_BAD_FIELD,
         "class 0x0001"),
        (flow_mod_with_oxms(oxm(0, b"\0" * 8, oxm_class=0xFFFF)), ofp.OFPBMC_BAD_FIELD,
         "class 0xffff"),
        (flow_mod_with_oxms(oxm(ofp.OFPXMT_OFB_ETH_TYPE, b"\x86\xdd\0")), ofp.OFPBMC_BAD_LEN,
         "eth_type: 3 bytes"),
        (flow_mod_with_oxms(IN_PORT_1[:6]), ofp.OFPBMC_BAD_LEN, "runs past"),
        (flow_mod_with_oxms(ETH_TYPE_IPV6 + STRAY_BIT), ofp.OFPBMC_BAD_WILDCARDS, "outside mask"),
        (flow_mod_with_oxms(IN_PORT_1, declared=200), ofp.OFPBMC_BAD_LEN, "does not fit"),
        (flow_mod_with_oxms(IN_PORT_1, declared=2), ofp.OFPBMC_BAD_LEN, "match length 2"),
    ],
)  # fmt: skip
def test_malformed_oxm_fields(data: bytes, code: int, why: str):
    error = refused(data)
    assert (error.error_type, error.error_code) == (ofp.OFPET_BAD_MATCH, code)
    assert why in str(error)


@pytest.mark.parametrize(
    ("actions", "code"),
    [
        ([ofparser.OFPActionOutput(ofp.OFPP_CONTROLLER)], ofp.OFPBAC_BAD_OUT_PORT),
        ([ofparser.OFPActionOutput(ofp.OFPP_FLOOD)], ofp.OFPBAC_BAD_OUT_PORT),
        ([ofparser.OFPActionOutput(ofp.OFPP_IN_PORT)], ofp.OFPBAC_BAD_OUT_PORT),
        ([ofparser.OFPActionOutput(0)], ofp.OFPBAC_BAD_OUT_PORT),
        ([ofparser.OFPActionSetField(eth_dst="02:00:00:00:00:01")], ofp.OFPBAC_BAD_TYPE),
        ([ofparser.OFPActionGroup(1)], ofp.OFPBAC_BAD_TYPE),
        ([ofparser.OFPActionDecNwTtl()], ofp.OFPBAC_BAD_TYPE),
        ([ofparser.OFPActionPushVlan()], ofp.OFPBAC_BAD_TYPE),
        ([ofparser.OFPActionOutput(1), ofparser.OFPActionSetQueue(1)], ofp.OFPBAC_BAD_TYPE),
    ],
)
def test_unsupported_actions_are_refused(actions: list, code: int):
    instructions = [ofparser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]
    error = refused(serialized(flow_mod(instructions=instructions)))
    assert (error.error_type, error.error_code) == (ofp.OFPET_BAD_ACTION, code)


def test_output_to_controller_says_why():
    instructions = [apply(ofp.OFPP_CONTROLLER)]
    assert "no packet-in" in str(refused(serialized(flow_mod(instructions=instructions))))


def test_write_actions_holds_one_output():
    instructions = [apply(1, 2, kind=ofp.OFPIT_WRITE_ACTIONS)]
    assert (
        refused(serialized(flow_mod(instructions=instructions))).error_code == ofp.OFPBAC_TOO_MANY
    )


@pytest.mark.parametrize(
    ("instruction", "code"),
    [
        (ofparser.OFPInstructionGotoTable(1), ofp.OFPBIC_UNSUP_INST),
        (ofparser.OFPInstructionWriteMetadata(1, 1), ofp.OFPBIC_UNSUP_INST),
        (ofparser.OFPInstructionMeter(1), ofp.OFPBIC_UNSUP_INST),
        (ofparser.OFPInstructionActions(ofp.OFPIT_CLEAR_ACTIONS, []), ofp.OFPBIC_UNSUP_INST),
    ],
)
def test_unsupported_instructions_are_refused(instruction, code: int):
    error = refused(serialized(flow_mod(instructions=[instruction])))
    assert (error.error_type, error.error_code) == (ofp.OFPET_BAD_INSTRUCTION, code)


def test_unknown_instruction_type_is_refused_where_os_ken_would_loop_forever():
    data = bytearray(serialized(flow_mod(instructions=[apply(1)])))
    instruction = len(data) - 24
    data[instruction : instruction + 2] = struct.pack("!H", 0x0077)
    assert refused(bytes(data)).error_code == ofp.OFPBIC_UNKNOWN_INST


def test_bad_flow_mod_command_and_flags():
    assert refused(serialized(flow_mod(command=9))).error_code == ofp.OFPFMFC_BAD_COMMAND
    assert refused(serialized(flow_mod(flags=1 << 9))).error_code == ofp.OFPFMFC_BAD_FLAGS


def test_wrong_version_after_hello():
    data = bytearray(serialized(ofparser.OFPBarrierRequest(DP)))
    data[0] = 1
    error = refused(bytes(data))
    assert (error.error_type, error.error_code) == (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_VERSION)


@pytest.mark.parametrize(
    "message",
    [
        ofparser.OFPFeaturesRequest(DP),
        ofparser.OFPBarrierRequest(DP),
        ofparser.OFPSetConfig(DP, 0, 128),
        ofparser.OFPRoleRequest(DP, 1, 0),
        ofparser.OFPDescStatsRequest(DP, 0),
        ofparser.OFPPortStatsRequest(DP, 0),
    ],
    ids=lambda m: type(m).__name__,
)
def test_wrong_lengths_are_bad_len(message):
    data = serialized(message) + b"\x00" * 8
    data = data[:2] + struct.pack("!H", len(data)) + data[4:]
    assert refused(data).error_code == ofp.OFPBRC_BAD_LEN


def test_role_request_for_a_role_that_does_not_exist():
    error = refused(serialized(ofparser.OFPRoleRequest(DP, 7, 0)))
    assert (error.error_type, error.error_code) == (
        ofp.OFPET_ROLE_REQUEST_FAILED,
        ofp.OFPRRFC_BAD_ROLE,
    )


def test_multipart_request_in_several_parts_is_refused():
    error = refused(serialized(ofparser.OFPDescStatsRequest(DP, ofp.OFPMPF_REQ_MORE)))
    assert error.error_code == ofp.OFPBRC_MULTIPART_BUFFER_OVERFLOW


def test_error_names():
    assert (
        of.error_name(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_FIELD)
        == "OFPET_BAD_MATCH/OFPBMC_BAD_FIELD"
    )
    assert of.error_name(0x7777, 3) == "OFPET_30583/3"


# ---------------------------------------------------------------- framing


def test_splitter_frames_a_stream_fed_byte_by_byte():
    stream = of.encode_hello(1) + of.encode_echo_request(2, b"x" * 100) + of.encode_barrier_reply(3)
    splitter = of.MessageSplitter()
    out = []
    for byte in stream:
        splitter.feed(bytes([byte]))
        out.extend(splitter.messages())
    assert out == split_stream(stream) and splitter.pending == 0


def test_splitter_refuses_an_unframable_header_after_the_good_messages():
    splitter = of.MessageSplitter()
    splitter.feed(of.encode_barrier_reply(1) + struct.pack("!BBHI", 4, 0, 4, 0))
    messages = splitter.messages()
    assert next(messages) == of.encode_barrier_reply(1)
    with pytest.raises(DecodeError, match="cannot be framed"):
        next(messages)


@given(st.lists(st.binary(max_size=300), max_size=8), st.data())
def test_splitter_any_chunking(bodies: list[bytes], data: st.DataObject):
    messages = [of.encode_echo_request(i, body) for i, body in enumerate(bodies)]
    stream = b"".join(messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    splitter = of.MessageSplitter()
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        splitter.feed(stream[start:end])
        out.extend(splitter.messages())
    assert out == messages


# ---------------------------------------------------------------- matches


addresses = st.integers(0, (1 << 128) - 1)
masked = st.builds(lambda v, m: of.MaskedAddress(v & m, m), addresses, addresses)
matches = st.builds(
    of.Match,
    in_port=st.none() | st.integers(1, ofp.OFPP_MAX),
    eth_type=st.just(IPV6),
    ipv6_src=st.none() | masked.filter(lambda a: a.mask != 0),
    ipv6_dst=st.none() | masked.filter(lambda a: a.mask != 0),
)


@given(matches)
def test_match_round_trips_through_os_ken(match: of.Match):
    data = of.encode_match(match)
    assert len(data) % 8 == 0
    assert of.decode_match(data, 0, len(data)) == (match, len(data))
    parsed = ofparser.OFPMatch.parser(data, 0)
    assert parsed["eth_type"] == IPV6


@given(matches, matches, addresses, addresses, st.integers(1, 5))
def test_covers_and_overlaps_agree_with_packet_matching(a, b, src, dst, in_port):
    if a.covers(b) and b.matches(in_port, IPV6, src, dst):
        assert a.matches(in_port, IPV6, src, dst)
    if a.matches(in_port, IPV6, src, dst) and b.matches(in_port, IPV6, src, dst):
        assert a.overlaps(b)
    assert a.covers(a) and a.overlaps(a)


def test_masked_address_text():
    assert str(of.MaskedAddress.parse("fd64::/64")) == "fd64::/64"
    assert str(of.MaskedAddress.parse("fd64::1")) == "fd64::1"
    assert str(of.MaskedAddress.parse("fd00::/ffff:0:ffff::")) == "fd00::/ffff:0:ffff::"
    assert of.MaskedAddress.parse("fd64::1/64") == of.MaskedAddress.parse("fd64::/64")
    assert str(
        of.Match(in_port=1, eth_type=IPV6, ipv6_dst=of.MaskedAddress.parse("fd64::/64"))
    ) == ("in_port=1,eth_type=0x86dd,ipv6_dst=fd64::/64")
    with pytest.raises(ValueError, match="outside mask"):
        of.MaskedAddress(1, 0)


# ---------------------------------------------------------------- bad bytes never crash


VALID_REQUESTS = [
    serialized(flow_mod(match=ofparser.OFPMatch(in_port=1, eth_type=IPV6,
                                                ipv6_src=("fd00::", "ffff::")),
                        instructions=[apply(1, 2), apply(3, kind=ofp.OFPIT_WRITE_ACTIONS)])),
    serialized(ofparser.OFPFlowStatsRequest(DP, match=ofparser.OFPMatch(eth_type=IPV6,
                                                                        ipv6_dst=DST))),
    serialized(ofparser.OFPPortStatsRequest(DP, 0, 1)),
    serialized(ofparser.OFPRoleRequest(DP, 2, 9)),
    serialized(ofparser.OFPSetConfig(DP, 0, 128)),
]  # fmt: skip
#: Messages whose body may be cut anywhere and still make a message (trailing data).
OPEN_ENDED = [of.encode_hello(1), serialized(ofparser.OFPExperimenter(DP, 1, 2, b"abc"))]


def _decodes_or_refuses(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        of.decode_message(data)


def _with_length(data: bytes) -> bytes:
    return data[:2] + struct.pack("!H", len(data)) + data[4:] if len(data) >= 8 else data


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 40), st.binary(max_size=200), st.sampled_from([4, 4, 4, 1, 6]))
def test_random_messages_decode_or_are_refused(msg_type: int, body: bytes, version: int):
    _decodes_or_refuses(struct.pack("!BBHI", version, msg_type, 8 + len(body), 1) + body)


@settings(max_examples=500)
@given(st.sampled_from(VALID_REQUESTS), st.data())
def test_truncated_messages_are_refused(message: bytes, data: st.DataObject):
    """Every OpenFlow 1.3 structure is 8-byte aligned: a cut elsewhere cannot be valid (a
    FLOW_MOD cut between two instructions is a valid FLOW_MOD with fewer of them)."""
    cut = data.draw(st.integers(8, len(message) - 1))
    if cut % 8:
        with pytest.raises(DecodeError):
            of.decode_message(_with_length(message[:cut]))
    else:
        _decodes_or_refuses(_with_length(message[:cut]))


@settings(max_examples=1000)
@given(st.sampled_from(VALID_REQUESTS + OPEN_ENDED), st.data())
def test_mutated_messages_decode_or_are_refused(message: bytes, data: st.DataObject):
    mutated = bytearray(message)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(8, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    _decodes_or_refuses(bytes(mutated))


@given(st.binary(max_size=64))
def test_random_bytes_decode_or_are_refused(data: bytes):
    _decodes_or_refuses(data)
