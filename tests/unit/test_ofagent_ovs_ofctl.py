"""An independent implementation reads and writes the agent's table: Open vSwitch's ovs-ofctl.

The agent is served over real loopback TCP by a tiny passive listener — what ``ptcp:`` is to
Open vSwitch — where every connection is a session of the same OpenFlowAgent. ovs-ofctl
connects to it as to a switch. No root needed (loopback TCP, no namespace).
"""

from __future__ import annotations

import re
import selectors
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofparser

from dmsc.nodes.ofagent import (
    ControllerLost,
    FlowCounters,
    OpenFlowAgent,
    OpenFlowSession,
    PortCounters,
    PortInfo,
    RequestRefused,
)
from tests.unit.test_openflow_codec import DP, IPV6, os_ken_parse, serialized

OVS_OFCTL = shutil.which("ovs-ofctl")
pytestmark = pytest.mark.skipif(
    OVS_OFCTL is None, reason="ovs-ofctl not installed (Debian package openvswitch-common)"
)

DST = "fd64:6d73:63:92eb::1"
WAIT = 10.0  # seconds: the bound on every wait in this file


class AgentListener:
    """A passive OpenFlow listener on 127.0.0.1 serving sessions of one agent, in a thread."""

    def __init__(self, agent: OpenFlowAgent) -> None:
        self.agent = agent
        self.lock = threading.Lock()  # held around every use of the agent
        self.events: list[object] = []
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.setblocking(False)
        self.port = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name="agent-listener", daemon=True)

    def __enter__(self) -> AgentListener:
        self._selector.register(self._server, selectors.EVENT_READ, None)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        try:
            for key in list(self._selector.get_map().values()):
                key.fileobj.close()
        finally:
            self._selector.close()
        assert not self._thread.is_alive(), "the listener thread did not stop"
        if self.failure is not None:
            raise AssertionError("the listener thread failed") from self.failure

    @property
    def remote(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for key, _ in self._selector.select(timeout=0.05):
                    with self.lock:
                        self._ready(key)
                with self.lock:
                    self.agent.handle_timer(time.monotonic())
                    for key in list(self._selector.get_map().values()):
                        if key.data is not None:
                            self._flush(key.fileobj, key.data)
        except BaseException as error:  # reported by __exit__, in the test's thread
            self.failure = error

    def _ready(self, key: selectors.SelectorKey) -> None:
        now = time.monotonic()
        if key.data is None:
            connection, _ = self._server.accept()
            session = self.agent.open_session(now)
            session.connection_made(now)
            self._selector.register(connection, selectors.EVENT_READ, session)
            self._flush(connection, session)
            return
        try:
            data = key.fileobj.recv(65536)
        except ConnectionError:
            data = b""
        if data:
            key.data.receive(data, now)
            self._flush(key.fileobj, key.data)
        else:
            self._drop(key.fileobj, key.data, now)

    def _flush(self, connection: socket.socket, session: OpenFlowSession) -> None:
        try:
            connection.sendall(session.data_to_send())
        except OSError:
            self._drop(connection, session, time.monotonic())
            return
        while (event := session.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, ControllerLost):
                self._drop(connection, session, time.monotonic())

    def _drop(self, connection: socket.socket, session: OpenFlowSession, now: float) -> None:
        if connection.fileno() != -1:
            self._selector.unregister(connection)
            connection.close()
        session.connection_lost(now)


@pytest.fixture
def listener() -> Iterator[AgentListener]:
    ports = [
        PortInfo(1, "eth0", "02:00:00:00:00:01", True, 1_000_000),
        PortInfo(2, "eth1", "02:00:00:00:00:02", True, 10_000_000),
    ]
    counters = {2: PortCounters(rx_packets=7, tx_packets=9, rx_bytes=700, tx_bytes=900)}
    agent = OpenFlowAgent(0xD5C0DE, ports, time.monotonic(), port_stats_provider=lambda: counters)
    with AgentListener(agent) as running:
        yield running


def ovs_ofctl(
    listener: AgentListener, command: str, *args: str, options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    argv = [OVS_OFCTL, "-O", "OpenFlow13", f"--timeout={int(WAIT)}", *options, command]
    argv.append(listener.remote)
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, timeout=WAIT + 5, check=False
    )


def ok(listener: AgentListener, command: str, *args: str, options: tuple[str, ...] = ()) -> str:
    result = ovs_ofctl(listener, command, *args, options=options)
    assert result.returncode == 0, f"ovs-ofctl {command} {args}: {result.stderr}"
    return result.stdout


def dumped_flows(listener: AgentListener) -> list[str]:
    """ovs-ofctl dump-flows, one string per flow, without the ever-changing duration."""
    lines = ok(listener, "dump-flows").splitlines()
    assert lines[0].startswith("OFPST_FLOW reply (OF1.3)")
    return [re.sub(r"duration=[0-9.]+s, ", "", line.strip()) for line in lines[1:]]


def os_ken_controller(listener: AgentListener, *messages) -> list:
    """An os-ken-serialized session over a real socket: HELLO, the messages, a barrier;
    returns os-ken's parse of every reply before the barrier's."""
    stream = serialized(ofparser.OFPHello(DP), xid=1)
    for xid, message in enumerate(messages, start=2):
        stream += serialized(message, xid=xid)
    stream += serialized(ofparser.OFPBarrierRequest(DP), xid=999)
    with socket.create_connection(("127.0.0.1", listener.port), timeout=WAIT) as connection:
        connection.sendall(stream)
        return _read_until_barrier(connection)


def _read_until_barrier(connection: socket.socket) -> list:
    deadline = time.monotonic() + WAIT
    buffer, replies = b"", []
    while time.monotonic() < deadline:
        data = connection.recv(65536)
        assert data, "the agent closed the connection"
        buffer += data
        while len(buffer) >= 8 and len(buffer) >= struct.unpack_from("!H", buffer, 2)[0]:
            length = struct.unpack_from("!H", buffer, 2)[0]
            replies.append(os_ken_parse(buffer[:length]))
            buffer = buffer[length:]
            if isinstance(replies[-1], ofparser.OFPBarrierReply):
                return replies[1:-1]  # without the agent's HELLO and the barrier reply
    raise AssertionError(f"no barrier reply within {WAIT} s")


def output(port: int) -> list:
    actions = [ofparser.OFPActionOutput(port)]
    return [ofparser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]


# ---------------------------------------------------------------- the tests


def test_add_flow_by_ovs_ofctl_is_in_the_agent_and_in_dump_flows(listener):
    ok(listener, "add-flow", f"priority=100,ipv6,ipv6_dst={DST}/128,actions=output:2")
    with listener.lock:
        (entry,) = listener.agent.entries()
    assert (entry.priority, str(entry.match.ipv6_dst), entry.outputs) == (100, DST, (2,))
    assert dumped_flows(listener) == [
        f"cookie=0x0, table=0, n_packets=0, n_bytes=0, priority=100,ipv6,ipv6_dst={DST} "
        "actions=output:2"
    ]


def test_os_ken_flow_mods_over_tcp_read_back_by_ovs_ofctl(listener):
    policy = ofparser.OFPFlowMod(
        DP, cookie=0xD5C, priority=300, idle_timeout=60, hard_timeout=600,
        flags=ofp.OFPFF_SEND_FLOW_REM, instructions=output(1),
        match=ofparser.OFPMatch(eth_type=IPV6, ipv6_src=("fd00::", "ffff:ffff::"),
                                ipv6_dst=("fd64:6d73:63:92eb::", "ffff:ffff:ffff:ffff::")),
    )  # fmt: skip
    drop = ofparser.OFPFlowMod(
        DP, priority=10, match=ofparser.OFPMatch(in_port=2, eth_type=IPV6), instructions=[]
    )
    assert os_ken_controller(listener, policy, drop) == []  # no error before the barrier
    with listener.lock:
        entries = listener.agent.entries()
        listener.agent.update_counters({entries[0].entry_id: FlowCounters(42, 4200, 0.0)})
    assert dumped_flows(listener) == [
        "cookie=0xd5c, table=0, n_packets=42, n_bytes=4200, idle_timeout=60, "
        "hard_timeout=600, send_flow_rem priority=300,ipv6,ipv6_src=fd00::/32,"
        "ipv6_dst=fd64:6d73:63:92eb::/64 actions=output:1",
        "cookie=0x0, table=0, n_packets=0, n_bytes=0, priority=10,ipv6,in_port=2 actions=drop",
    ]
    aggregate = ok(listener, "dump-aggregate")
    assert "packet_count=42 byte_count=4200 flow_count=2" in aggregate


def test_unsupported_match_and_action_from_ovs_ofctl_get_openflow_errors(listener):
    ipv4 = ovs_ofctl(listener, "add-flow", "priority=10,ip,nw_dst=10.0.0.1,actions=output:1")
    assert ipv4.returncode != 0
    assert "OFPT_ERROR" in ipv4.stderr and "OFPBMC_BAD_FIELD" in ipv4.stderr
    assert "nw_dst=10.0.0.1" in ipv4.stderr  # ovs-ofctl decoded our copy of its request
    tcp = ovs_ofctl(listener, "add-flow", "priority=10,ipv6,tcp,tp_dst=80,actions=output:1")
    assert "OFPBMC_BAD_FIELD" in tcp.stderr
    packet_in = ovs_ofctl(listener, "add-flow", "priority=10,ipv6,actions=CONTROLLER")
    assert "OFPBAC_BAD_OUT_PORT" in packet_in.stderr
    rewrite = ovs_ofctl(listener, "add-flow", "ipv6,actions=mod_dl_dst:02:00:00:00:00:09,output:1")
    assert "OFPBAC_BAD_TYPE" in rewrite.stderr
    assert dumped_flows(listener) == []
    with listener.lock:
        refused = [e for e in listener.events if isinstance(e, RequestRefused)]
    assert "ipv4_dst" in str(refused[0].error)


def test_mod_flows_and_del_flows_semantics_agree_with_ovs_ofctl(listener):
    ok(listener, "add-flow", f"priority=100,ipv6,ipv6_dst={DST},actions=output:2")
    ok(listener, "add-flow", "priority=50,cookie=0x7,ipv6,ipv6_dst=fd64::/16,actions=output:1")
    ok(listener, "mod-flows", "ipv6,ipv6_dst=fd64::/16,actions=output:2")  # covers both
    assert [f.rsplit(" ", 1)[1] for f in dumped_flows(listener)] == ["actions=output:2"] * 2
    ok(listener, "del-flows", "priority=50,ipv6,ipv6_dst=fd64::/16", options=("--strict",))
    assert len(dumped_flows(listener)) == 1
    ok(listener, "del-flows", "ipv6")
    assert dumped_flows(listener) == []


def test_ports_description_tables_through_ovs_ofctl(listener):
    ports = ok(listener, "dump-ports-desc")
    assert " 1(eth0): addr:02:00:00:00:00:01" in ports and "10000 Mbps now" in ports
    stats = ok(listener, "dump-ports")
    assert re.search(r"port +2: rx pkts=7, bytes=700", stats)
    assert "Manufacturer: DMSC testbed" in ok(listener, "dump-desc")
    assert "active=0" in ok(listener, "dump-tables")
    features = ok(listener, "dump-table-features")
    assert "arbitrary mask: ipv6_{src,dst}" in features and "actions: output" in features
    show = ok(listener, "show")  # two connections at once: features, then config
    assert "dpid:0000000000d5c0de" in show and "n_tables:1" in show
    assert "frags=normal" in show


def test_flows_survive_the_connections_that_made_them(listener):
    """Every ovs-ofctl command is a connection that closes: the table outlives them all."""
    for i in range(5):
        ok(listener, "add-flow", f"priority={i + 1},ipv6,ipv6_dst=fd64::{i + 1},actions=output:1")
    assert len(dumped_flows(listener)) == 5
    with listener.lock:
        assert listener.agent.stats.connections >= 6
