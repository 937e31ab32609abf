"""The SCSC os-ken application, end to end over loopback TCP: no root, no Mininet.

The SCSC runs as ``dmsc scsc --config FILE`` in a subprocess; its switches are real
:class:`OpenFlowAgent` cores, each driven by a thread with a socket, as an SG or SR would drive
it (LSA copy after each handshake, telemetry every 0.1 s, reconnection when the SCSC is gone).
The topology::

    sgA --10-- srX --10-- sgB (/B/1)
                 \\--10-- sgC (/B/2)          sgA's pod is the client /C/1

Routing alone takes /B to /B/1 (equal cost; the first by name). Every wait polls with a
deadline; every process and thread is stopped in a ``finally``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import math
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from dmsc.cli import main as dmsc_main
from dmsc.controllers.center import (
    LinkReading,
    SchedulingCenter,
    TelemetryReport,
    decode_experimenter,
    read_back_choices,
)
from dmsc.controllers.decision import (
    COOKIE_TAG_MASK,
    PolicyIntent,
    SchedulerConfig,
    Topology,
    policy_cookie,
)
from dmsc.controllers.launcher import ScscConfig, config_from_mapping, load_config
from dmsc.controllers.thresholds import ThresholdTable
from dmsc.errors import ConfigError, DecodeError, DmscError
from dmsc.measurement.estimators import PathQuality
from dmsc.names import name_address, name_prefix
from dmsc.nodes.admin import ask
from dmsc.nodes.ofagent import ControllerConnected, ControllerLost, FlowEntry, OpenFlowAgent
from dmsc.proto import dmsc_pb2
from dmsc.proto.codec import DMSC_EXPERIMENTER_ID, EXP_LSA_COPY, EXP_TELEMETRY
from dmsc.proto.openflow import FlowMod, MessageSplitter, OpenFlowError, PortInfo, decode_message

REPO = Path(__file__).resolve().parents[2]
WAIT = 15.0  # seconds: the bound on every wait in this file
TELEMETRY_EVERY = 0.1

#: node -> (datapath id, {neighbor: port}, names advertised)
NODES = {
    "sgA": (1, {"srX": 1}, ["/C/1", "/C"]),
    "srX": (2, {"sgA": 1, "sgB": 2, "sgC": 3}, []),
    "sgB": (3, {"srX": 1}, ["/B/1", "/B"]),
    "sgC": (4, {"srX": 1}, ["/B/2", "/B"]),
}
ANYCAST_B = ipaddress.IPv6Network(f"{name_address('/B')}/128")
CLIENT_C1 = name_prefix("/C/1")


def lsa(node: str, sequence: int = 1, names: list[str] | None = None):
    """``node``'s LSA: links of cost 10 to its neighbors, ``names`` (else its own) advertised."""
    _, ports, advertised = NODES[node]
    return dmsc_pb2.LinkStateAdvertisement(
        originator=node,
        sequence=sequence,
        lifetime_ms=3_600_000,
        adjacencies=[dmsc_pb2.Adjacency(neighbor=n, cost=10) for n in ports],
        prefixes=[
            dmsc_pb2.AnnouncedPrefix(name=n) for n in (advertised if names is None else names)
        ],
    )


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (DmscError, OSError) as error:  # the SCSC not (yet) answering
            last_error, result = error, None
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error})")


# ---------------------------------------------------------------- a switch (SG or SR)


class Switch:
    """One node's OpenFlow side: an OpenFlowAgent connected to the SCSC, driven by a thread.

    Like the node program: reconnects while the SCSC is away (the table stays), sends its LSA
    copy after every handshake and when its LSA changes, and telemetry every 0.1 s once told
    what to report."""

    def __init__(self, node: str, scsc_port: int) -> None:
        dpid, ports, _ = NODES[node]
        self.node = node
        self.scsc_port = scsc_port
        self.lock = threading.Lock()  # held around every use of the agent and the fields below
        self.agent = OpenFlowAgent(
            dpid,
            [PortInfo(n, f"eth{n}", f"02:00:00:00:{dpid:02x}:{n:02x}", True, 1_000_000)
             for n in sorted(ports.values())],
            time.time(),
        )  # fmt: skip
        self.ports = dict(ports)
        self.lsa = lsa(node)
        self.flow_mods: list[FlowMod] = []  # every FLOW_MOD received, in order
        self.handshakes = 0
        self.delays: dict[str, float] = {}  # target -> one-way delay (ms) to report
        self.raw: list[tuple[int, bytes]] = []  # (exp_type, body) to send once
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"switch-{node}", daemon=True)

    # ------------------------------------------------------------ the test's side

    def start(self) -> Switch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), f"switch {self.node} did not stop"
        if self.failure is not None:
            raise AssertionError(f"switch {self.node} failed") from self.failure

    def table(self) -> set[tuple]:
        """(priority, dst, src, output ports, cookie) of every entry."""
        return {
            (e.priority, _net(e.match.ipv6_dst), _net(e.match.ipv6_src), e.outputs, e.cookie)
            for e in self.entries()
        }

    def entries(self) -> list[FlowEntry]:
        with self.lock:
            return self.agent.entries()

    def adds(self) -> list[FlowMod]:
        with self.lock:
            return [m for m in self.flow_mods if m.command == ofp.OFPFC_ADD]

    def report(self, **delays: float) -> None:
        """Report these one-way delays (ms) from now on: ``B_1=80`` is /B/1 at 80 ms."""
        with self.lock:
            self.delays = {"/" + key.replace("_", "/"): value for key, value in delays.items()}

    def advertise(self, names: list[str], sequence: int) -> None:
        """This node's LSA changed (it advertises ``names`` now): copy it to the SCSC."""
        with self.lock:
            self.lsa = lsa(self.node, sequence, names)
            self.agent.send_dmsc(self._lsa_copy(), time.time())

    def send_raw(self, exp_type: int, body: bytes) -> None:
        with self.lock:
            self.raw.append((exp_type, body))

    # ------------------------------------------------------------ the thread

    def _lsa_copy(self) -> dmsc_pb2.LsaCopy:
        ports = [
            dmsc_pb2.PortNeighbor(port_no=number, interface=f"eth{number}", neighbor=neighbor)
            for neighbor, number in self.ports.items()
        ]
        return dmsc_pb2.LsaCopy(lsa=self.lsa, ports=ports)

    def _telemetry(self, now: float) -> dmsc_pb2.Telemetry:
        """As an SG sends it: unknown bandwidth travels as NaN."""
        return dmsc_pb2.Telemetry(
            samples=[
                PathQuality(delay, 0.5, 0.0, None, 10, now).to_qos_sample(self.node, target)
                for target, delay in sorted(self.delays.items())
            ]
        )

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    connection = socket.create_connection(("127.0.0.1", self.scsc_port), 1.0)
                except OSError:
                    time.sleep(0.05)  # the SCSC is not (yet, or no longer) there
                    continue
                with connection:
                    self._serve(connection)
        except BaseException as error:  # reported by stop(), in the test's thread
            self.failure = error

    def _serve(self, connection: socket.socket) -> None:
        splitter = MessageSplitter()
        next_report = 0.0
        with self.lock:
            self.agent.connection_made(time.time())
        while not self._stop.is_set():
            data = _receive(connection)
            now = time.time()
            with self.lock:
                if data == b"":
                    self.agent.connection_lost(now)
                    return
                if data:
                    self._note_flow_mods(splitter, data)
                    self.agent.receive(data, now)
                alive = self._turn(now, report=now >= next_report)
                outgoing = self.agent.data_to_send()
            next_report = next_report if now < next_report else now + TELEMETRY_EVERY
            try:
                connection.sendall(outgoing)
            except OSError:
                alive = False
            if not alive:
                with self.lock:
                    self.agent.connection_lost(time.time())
                return

    def _turn(self, now: float, report: bool) -> bool:
        """Timers, events, what is due to the SCSC; False when the session is over."""
        self.agent.handle_timer(now)
        while (event := self.agent.next_event()) is not None:
            if isinstance(event, ControllerConnected):
                self.handshakes += 1
                self.agent.send_dmsc(self._lsa_copy(), now)  # right after the handshake
            elif isinstance(event, ControllerLost):
                return False
        if self.agent.connected:
            if report and self.delays:
                self.agent.send_dmsc(self._telemetry(now), now)
            for exp_type, body in self.raw:
                self.agent.send_experimenter(exp_type, body, now)
            self.raw.clear()
        return True

    def _note_flow_mods(self, splitter: MessageSplitter, data: bytes) -> None:
        splitter.feed(data)
        for message in splitter.messages():
            with contextlib.suppress(OpenFlowError):
                decoded = decode_message(message)
                if isinstance(decoded, FlowMod):
                    self.flow_mods.append(decoded)


def _receive(connection: socket.socket) -> bytes | None:
    """Bytes from the SCSC, b"" when it closed, None when nothing came within 20 ms."""
    ready, _, _ = select.select([connection], [], [], 0.02)
    if not ready:
        return None
    try:
        return connection.recv(65536)
    except OSError:
        return b""


def _net(masked: Any) -> ipaddress.IPv6Network | None:
    if masked is None:
        return None
    return ipaddress.IPv6Network((masked.value, masked.prefix_length))


# ---------------------------------------------------------------- the SCSC process


class Scsc:
    """``dmsc scsc`` in a subprocess, on 127.0.0.1 and a free port."""

    def __init__(self, tmp: Path, sockets: Path, settings: dict[str, Any]) -> None:
        self.tmp = tmp
        self.port = _free_port()
        self.admin = str(sockets / "scsc.sock")  # short: unix socket paths are limited
        self.decisions_log = tmp / "decisions.jsonl"
        self.telemetry_log = tmp / "telemetry.jsonl"
        self.config_path = tmp / "scsc.json"
        self.config = {
            "admin_socket": self.admin,
            "decisions_log": str(self.decisions_log),
            "telemetry_log": str(self.telemetry_log),
            "listen_host": "127.0.0.1",
            "listen_port": self.port,
            "decision_interval_s": 0.1,
            "startup_settle_s": 0.3,
            "scheduler": {"hold_down_s": 1.0},
            **settings,
        }
        self.process: subprocess.Popen | None = None
        self.runs = 0
        self.expect_clean_exit = True

    @property
    def log_path(self) -> Path:
        return self.tmp / f"scsc-{self.runs}.log"

    def start(self) -> Scsc:
        self.runs += 1
        self.config_path.write_text(json.dumps(self.config))
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dmsc", "scsc", "--config", str(self.config_path)],
                stdout=subprocess.DEVNULL, stderr=log, cwd=REPO, env=env,
            )  # fmt: skip
        wait_for("the SCSC's admin socket", self._ready)
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the SCSC exited ({self.process.returncode}):\n{self.logs()}")
        return bool(self.ask("status"))

    def ask(self, query: str, **arguments: Any) -> Any:
        return ask(self.admin, query, **arguments)

    def stop(self, signum: int = signal.SIGTERM) -> int | None:
        """Signal it, wait, kill if it hangs; the exit code (None if it was not running)."""
        process, self.process = self.process, None
        if process is None:
            return None
        try:
            if process.poll() is None:
                process.send_signal(signum)
            return process.wait(WAIT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(WAIT)

    def logs(self) -> str:
        return "".join((self.tmp / f"scsc-{n}.log").read_text() for n in range(1, self.runs + 1))

    def decisions(self) -> list[dict[str, Any]]:
        if not self.decisions_log.exists():
            return []
        return [json.loads(line) for line in self.decisions_log.read_text().splitlines()]

    def node_switches(self) -> dict[str, dict[str, Any]]:
        """Connected switches whose table was read back, by node."""
        return {
            s["node"]: s
            for s in self.ask("status")["switches"]
            if s["node"] is not None and s["table"] == "read"
        }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Lab:
    """An SCSC and its switches; ``close()`` stops all of them, whatever happened."""

    tmp: Path
    sockets: Path
    scsc: Scsc | None = None
    switches: dict[str, Switch] = field(default_factory=dict)

    def start(self, nodes: tuple[str, ...] = tuple(NODES), **settings: Any) -> Lab:
        self.scsc = Scsc(self.tmp, self.sockets, settings).start()
        for node in nodes:
            self.connect(node)
        wait_for(f"{nodes} connected and read back", lambda: self.ready(nodes))
        return self

    def connect(self, node: str) -> Switch:
        assert self.scsc is not None
        self.switches[node] = Switch(node, self.scsc.port).start()
        return self.switches[node]

    def ready(self, nodes: tuple[str, ...]) -> bool:
        assert self.scsc is not None
        return set(nodes) <= set(self.scsc.node_switches())

    def close(self) -> None:
        failures: list[str] = []
        for switch in self.switches.values():
            try:
                switch.stop()
            except AssertionError as error:
                failures.append(f"{error}: {error.__cause__!r}")
        if self.scsc is not None:
            code = self.scsc.stop()
            logs = self.scsc.logs()
            if self.scsc.expect_clean_exit and code not in (0, None):
                failures.append(f"the SCSC exited with {code} on SIGTERM")
            if "Traceback" in logs:  # as faucet's tests do: an exception logged is a failure
                failures.append(f"the SCSC logged an exception:\n{logs}")
        assert not failures, "\n".join(failures)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    sockets = Path(tempfile.mkdtemp(prefix="scsc-", dir="/tmp"))
    running = Lab(tmp_path, sockets)
    try:
        yield running
    finally:
        try:
            running.close()
        finally:
            shutil.rmtree(sockets, ignore_errors=True)


COOKIE = policy_cookie("sgA", "/B")


def steered(port: int) -> set[tuple]:
    """The one policy of (sgA, /B) on a node: anycast /B from /C/1 out of ``port``."""
    return {(1000, ANYCAST_B, CLIENT_C1, (port,), COOKIE)}


# ---------------------------------------------------------------- configuration


def test_config_has_documented_defaults():
    config = config_from_mapping({"admin_socket": "a", "decisions_log": "d", "telemetry_log": "t"})
    assert (config.listen_host, config.listen_port, config.decision_interval_s) == (
        "0.0.0.0",
        6653,
        0.2,
    )
    assert config.threshold_table().default.max_delay_ms == 50.0  # the built-in defaults
    assert config.scheduler_config().hold_down_s == 10.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"listen_prot": 6653}, r"scsc\.json: unknown key\(s\) \['listen_prot'\]"),
        ({"admin_socket": None}, r"scsc\.json: admin_socket: expected a string, got None"),
        ({"listen_port": "6653"}, r"listen_port: expected an integer, got '6653'"),
        ({"listen_port": True}, r"listen_port: expected an integer, got True"),
        ({"listen_port": 70000}, r"listen_port: 70000 is not in 1\.\.65535"),
        ({"listen_host": "localhost"}, r"listen_host: 'localhost' is not an IPv4 or IPv6"),
        ({"decision_interval_s": 0}, r"decision_interval_s: must be > 0, got 0"),
        ({"decision_interval_s": math.inf}, r"decision_interval_s: expected a number, got inf"),
        ({"thresholds": []}, r"thresholds: expected a mapping, got \[\]"),
        (
            {"thresholds": {"default": {"max_delay_ms": 0}}},
            r"thresholds: default: threshold max_delay_ms: out of range, got 0",
        ),
        ({"scheduler": {"hold_down": 1}}, r"scheduler: unknown key\(s\) \['hold_down'\]"),
        ({"scheduler": {"hysteresis": 1.5}}, r"scheduler hysteresis: must be in \[0, 1\)"),
    ],
)
def test_config_errors_name_the_file_and_the_field(tmp_path, change, message):
    data = {"admin_socket": "a", "decisions_log": "d", "telemetry_log": "t", **change}
    path = tmp_path / "scsc.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_config_needs_the_three_paths_and_valid_json(tmp_path):
    with pytest.raises(ConfigError, match=r"missing key\(s\) \['decisions_log', 'telemetry_log'\]"):
        config_from_mapping({"admin_socket": "a"})
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ConfigError, match=r"broken\.json: not JSON"):
        load_config(broken)
    with pytest.raises(ConfigError, match=r"absent\.json: cannot read"):
        load_config(tmp_path / "absent.json")
    with pytest.raises(ConfigError, match="admin_socket: must not be empty"):
        ScscConfig(admin_socket="", decisions_log="d", telemetry_log="t")


def test_dmsc_scsc_refuses_a_bad_config_before_starting(tmp_path, capsys):
    path = tmp_path / "scsc.json"
    path.write_text(json.dumps({"admin_socket": "a", "decisions_log": "d", "telemetry_log": 1}))
    assert dmsc_main(["scsc", "--config", str(path)]) == 2
    assert "dmsc scsc: error: " in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # nothing started, nothing written


# ---------------------------------------------------------------- pure parts


def test_telemetry_with_unknown_values_is_accepted_and_garbage_refused():
    sample = PathQuality(12.0, None, 0.1, None, 10, 1000.0).to_qos_sample("sgA", "/B/1")
    body = dmsc_pb2.Telemetry(samples=[sample]).SerializeToString()
    decoded = decode_experimenter(DMSC_EXPERIMENTER_ID, EXP_TELEMETRY, body)
    assert decoded.samples == {("sgA", "/B/1"): PathQuality(12.0, None, 0.1, None, 0, 1000.0)}
    assert decoded.links == ()
    sample.loss = 2.0
    bad = dmsc_pb2.Telemetry(samples=[sample]).SerializeToString()
    with pytest.raises(DecodeError, match=r"telemetry from sgA for /B/1: loss 2\.0"):
        decode_experimenter(DMSC_EXPERIMENTER_ID, EXP_TELEMETRY, bad)
    with pytest.raises(DecodeError, match="not a valid Telemetry"):
        decode_experimenter(DMSC_EXPERIMENTER_ID, EXP_TELEMETRY, b"\xff\xff\xff")
    with pytest.raises(DecodeError, match="unknown exp_type 99"):
        decode_experimenter(DMSC_EXPERIMENTER_ID, 99, b"")


def link_sample(available: float, at: float, **fields: Any) -> dmsc_pb2.LinkSample:
    values = dict(node_id="srX", neighbor="sgB", interface="eth2", timestamp=at,
                  capacity_bps=10e6, tx_bps=10e6 - available, available_bps=available)  # fmt: skip
    return dmsc_pb2.LinkSample(**{**values, **fields})


def test_link_samples_are_decoded_with_unknown_capacity_as_none():
    samples = [
        link_sample(2e6, 7.0),
        link_sample(math.nan, 7.0, neighbor="sgC", capacity_bps=0, tx_bps=1e6),
    ]
    body = dmsc_pb2.Telemetry(links=samples).SerializeToString()
    report = decode_experimenter(DMSC_EXPERIMENTER_ID, EXP_TELEMETRY, body)
    assert report.samples == {}
    assert [(r.node, r.neighbor, r.available_bps, r.time) for r in report.links] == [
        ("srX", "sgB", 2e6, 7.0),
        ("srX", "sgC", None, 7.0),
    ]
    for bad, message in [
        (link_sample(-1.0, 7.0), "link sample from srX toward sgB: available_bps -1.0 must be"),
        (link_sample(1.0, math.inf), "timestamp inf must be finite and >= 0"),
        (link_sample(1.0, 7.0, neighbor=""), "toward ?: empty node id"),
    ]:
        body = dmsc_pb2.Telemetry(links=[bad]).SerializeToString()
        with pytest.raises(DecodeError, match=re.escape(message)):
            decode_experimenter(DMSC_EXPERIMENTER_ID, EXP_TELEMETRY, body)


def test_choices_are_read_back_by_following_a_pairs_flows():
    topology = Topology.from_lsas(lsa(node) for node in NODES)

    def hop(node, next_hop, cookie=COOKIE):
        return PolicyIntent(node, 1000, ANYCAST_B, CLIENT_C1, next_hop, cookie)

    installed = {"sgA": [hop("sgA", "srX")], "srX": [hop("srX", "sgC")]}
    (choice,) = read_back_choices(topology, installed, 5.0).values()
    assert (choice.instance, choice.path, choice.since) == ("/B/2", ("sgA", "srX", "sgC"), 5.0)
    # half a path (srX not read yet), or flows that lead nowhere: no choice
    assert read_back_choices(topology, {"sgA": [hop("sgA", "srX")]}, 5.0) == {}
    looping = {"sgA": [hop("sgA", "srX")], "srX": [hop("srX", "sgA")]}
    assert read_back_choices(topology, looping, 5.0) == {}
    assert COOKIE & COOKIE_TAG_MASK == 0xD5C0 << 48


def lsa_copy(node: str, sequence: int = 1, names=None, missing: str = "") -> dmsc_pb2.LsaCopy:
    """``node``'s LSA copy, its port to ``missing`` left out."""
    ports = [
        dmsc_pb2.PortNeighbor(port_no=number, interface=f"eth{number}", neighbor=neighbor)
        for neighbor, number in NODES[node][1].items()
        if neighbor != missing
    ]
    return dmsc_pb2.LsaCopy(lsa=lsa(node, sequence, names), ports=ports)


def test_a_round_keeps_what_has_no_port_pending_and_deletes_source_first():
    """The sans-I/O center alone; srX's first LSA copy names no port to sgC."""
    center = SchedulingCenter(ThresholdTable(), SchedulerConfig(hold_down_s=0.0))
    keys = {node: key for key, node in enumerate(NODES, start=1)}
    for node, key in keys.items():
        center.switch_connected(key, f"127.0.0.1:{key}", 0.0)
        center.lsa_copy(key, lsa_copy(node, missing="sgC" if node == "srX" else ""))
        center.table_read(key, [])
    now = time.time()

    def measured(at, **delays):
        qualities = {
            f"/B/{k[-1]}": PathQuality(v, 1.0, 0.0, None, 10, at) for k, v in delays.items()
        }
        center.take_telemetry(TelemetryReport({("sgA", t): q for t, q in qualities.items()}))

    measured(now, B_1=80.0, B_2=5.0)
    assert [(c.intent.node, c.port) for c in center.run_round(now).changes] == [("sgA", 1)]
    (pending,) = center.pending
    assert (pending.intent.node, pending.intent.next_hop) == ("srX", "sgC")
    assert pending.reason == "srX reports no port to sgC in its LSA copy"
    assert center.run_round(now + 1).changes == ()  # sgA's is in place; srX's still waits
    center.lsa_copy(keys["srX"], lsa_copy("srX"))
    assert [(c.intent.node, c.port) for c in center.run_round(now + 2).changes] == [("srX", 3)]
    assert center.pending == []
    # /B/1 recovers: srX's flow is re-pointed (an ADD over it), and nothing is deleted
    measured(now + 3, B_1=1.0, B_2=5.0)
    changes = center.run_round(now + 3).changes
    assert [(c.intent.node, c.intent.next_hop, c.port) for c in changes] == [("srX", "sgB", 2)]
    # both instances withdrawn: the policies go, the source SG's first
    center.lsa_copy(keys["sgB"], lsa_copy("sgB", 2, []))
    center.lsa_copy(keys["sgC"], lsa_copy("sgC", 2, []))
    changes = center.run_round(now + 4).changes
    assert [(c.intent.node, c.is_add) for c in changes] == [("sgA", False), ("srX", False)]
    assert center.choices == {} and center.timing.count == 5


def started_center(thresholds: ThresholdTable) -> SchedulingCenter:
    """A center that knows the four switches, their LSA copies and empty tables."""
    center = SchedulingCenter(thresholds, SchedulerConfig(telemetry_max_age_s=10.0))
    for key, node in enumerate(NODES, start=1):
        center.switch_connected(key, f"127.0.0.1:{key}", 0.0)
        center.lsa_copy(key, lsa_copy(node))
        center.table_read(key, [])
    return center


def test_a_narrow_link_reported_by_a_router_moves_the_pair_while_it_is_fresh():
    thresholds = ThresholdTable.from_mapping({"services": {"/B": {"min_bandwidth_bps": 5e6}}})
    center = started_center(thresholds)
    now = time.time()
    samples = {("sgA", "/B/1"): PathQuality(5.0, 1.0, 0.0, None, 10, now),
               ("sgA", "/B/2"): PathQuality(8.0, 1.0, 0.0, None, 10, now)}  # fmt: skip
    narrow = LinkReading("srX", "sgB", 2e6, 10e6, 8e6, now - 11.0)  # too old to count
    center.take_telemetry(TelemetryReport(samples, (narrow,)))
    assert center.run_round(now).records == ()  # routing's /B/1 meets the thresholds
    center.take_telemetry(TelemetryReport({}, (dataclasses.replace(narrow, time=now),)))
    (record,) = center.run_round(now + 0.1).records
    assert record.trigger == "/B/1 (routing's choice): bandwidth 2 Mbit/s ≤ 5 Mbit/s"
    assert (record.new_instance, record.new_path) == ("/B/2", ("sgA", "srX", "sgC"))


def test_a_reset_removes_every_policy_forgets_what_it_knew_and_decides_anew():
    center = started_center(ThresholdTable.from_mapping({"default": {"max_delay_ms": 50}}))
    now = time.time()

    def measured(at, b1):
        center.take_telemetry(TelemetryReport({
            ("sgA", "/B/1"): PathQuality(b1, 1.0, 0.0, None, 10, at),
            ("sgA", "/B/2"): PathQuality(5.0, 1.0, 0.0, None, 10, at),
        }))  # fmt: skip

    measured(now, b1=80.0)
    installed = center.run_round(now).changes
    assert [(c.intent.node, c.is_add) for c in installed] == [("srX", True), ("sgA", True)]
    removed = center.reset(now + 1).changes
    assert [(c.intent.node, c.is_add) for c in removed] == [("sgA", False), ("srX", False)]
    assert (center.choices, center.telemetry, center.links) == ({}, {}, {})
    assert center.counters["resets"] == 1
    assert center.run_round(now + 2).changes == ()  # nothing left, nothing chosen
    measured(now + 3, b1=80.0)  # no hold-down carried over: the next bad report moves it again
    (record,) = center.run_round(now + 3).records
    assert (record.old_instance, record.new_instance) == ("/B/1", "/B/2")


# ---------------------------------------------------------------- the running SCSC


def test_policies_follow_telemetry_and_go_when_the_service_does(lab):
    lab.start()
    scsc, sw = lab.scsc, lab.switches
    assert {s["node"]: s["ports"] for s in scsc.ask("status")["switches"]}["srX"] == {
        "sgA": 1, "sgB": 2, "sgC": 3,
    }  # fmt: skip
    # /B/1, routing's own choice, crosses max_delay_ms 50: the SCSC steers sgA's /B to /B/2
    sw["sgA"].report(B_1=80.0, B_2=5.0)

    def via_sgc() -> bool:  # two switches, two connections: either may be told first
        return sw["sgA"].table() == steered(1) and sw["srX"].table() == steered(3)

    wait_for("sgA -> srX -> sgC", via_sgc)
    assert [s["node"] for s in scsc.ask("status")["switches"]] == ["sgA", "sgB", "sgC", "srX"]
    (record,) = scsc.decisions()
    assert (record["source"], record["service"], record["round"] >= 1) == ("sgA", "/B", True)
    assert (record["old_instance"], record["new_instance"]) == ("/B/1", "/B/2")
    assert (record["old_path"], record["new_path"]) == ("sgA>srX>sgB", "sgA>srX>sgC")
    assert record["trigger"] == "/B/1 (routing's choice): delay 80.0 ms ≥ 50 ms"
    logs = scsc.logs()
    assert logs.index("srX: add") < logs.index("sgA: add")  # the far end of the path first
    (choice,) = scsc.ask("choices")
    assert (choice["instance"], choice["path"]) == ("/B/2", ["sgA", "srX", "sgC"])
    assert scsc.ask("policies", node="sgA") == {
        "sgA": [{"node": "sgA", "dst": str(ANYCAST_B), "src": str(CLIENT_C1), "next_hop": "srX",
                 "priority": 1000, "cookie": f"{COOKIE:#018x}", "port": 1}],
    }  # fmt: skip
    with pytest.raises(DmscError, match=r"policies: no flow table known for node 'sgZ'"):
        scsc.ask("policies", node="sgZ")
    status = scsc.ask("status")
    assert status["decide"]["count"] == status["rounds"] > 0 and not status["settling"]
    assert status["decide"]["max_ms"] >= status["decide"]["last_ms"] > 0
    ages = {row["target"]: row["age_s"] for row in scsc.ask("telemetry")}
    assert set(ages) == {"/B/1", "/B/2"} and all(0 <= age < 5 for age in ages.values())
    logged = [json.loads(line) for line in scsc.telemetry_log.read_text().splitlines()]
    first = {key: logged[0][key] for key in ("sg", "target", "delay_ms", "bandwidth_bps")}
    assert first == {"sg": "sgA", "target": "/B/1", "delay_ms": 80.0, "bandwidth_bps": None}

    # /B/1 recovers: after the 1 s hold-down it wins by more than 20 %; only srX changes
    sw["sgA"].report(B_1=2.0, B_2=5.0)
    wait_for("srX -> sgB", lambda: sw["srX"].table() == steered(2))
    assert sw["sgA"].table() == steered(1)
    assert len(sw["sgA"].adds()) == 1 and len(sw["srX"].adds()) == 2
    second = scsc.decisions()[-1]
    assert "/B/1 delay 2.0 ms beats /B/2's 5.0 ms" in second["trigger"]
    assert second["time"] - record["time"] >= 1.0  # held down meanwhile
    assert scsc.ask("decisions", limit=1) == [second]

    # /B/2 and then /B/1 withdrawn: nothing to steer to, the policies go, routing decides
    sw["sgC"].advertise([], sequence=2)
    wait_for("/B/2 gone", lambda: scsc.ask("status")["instances"] == ["/B/1", "/C/1"])
    sw["sgB"].advertise([], sequence=2)
    wait_for("the policies removed", lambda: not sw["sgA"].table() and not sw["srX"].table())
    last = scsc.decisions()[-1]
    assert (last["old_instance"], last["new_instance"], last["new_path"]) == ("/B/1", None, "")
    assert "/B/1 withdrawn" in last["trigger"] and "routing decides" in last["trigger"]
    delete = sw["sgA"].flow_mods[-1]
    assert delete.command == ofp.OFPFC_DELETE_STRICT and delete.out_port == ofp.OFPP_ANY
    assert scsc.ask("choices") == [] and scsc.ask("status")["pending"] == []
    with pytest.raises(DmscError, match="decisions: limit: expected an integer >= 0"):
        scsc.ask("decisions", limit=-1)


def test_a_restarted_scsc_reads_the_tables_back_and_sends_nothing_new(lab):
    lab.start(startup_settle_s=1.0)
    scsc, sw = lab.scsc, lab.switches
    sw["sgA"].report(B_1=80.0, B_2=5.0)
    wait_for("the policies", lambda: sw["sgA"].table() and sw["srX"].table() == steered(3))
    before = {node: switch.entries() for node, switch in sw.items()}
    mods = {node: len(switch.flow_mods) for node, switch in sw.items()}

    scsc.stop(signal.SIGKILL)  # a crash: no goodbye to anyone
    scsc.start()
    wait_for("every switch back", lambda: lab.ready(tuple(NODES)))
    wait_for("rounds after settling", lambda: scsc.ask("status")["rounds"] >= 5)
    (choice,) = scsc.ask("choices")
    assert (choice["instance"], choice["path"]) == ("/B/2", ["sgA", "srX", "sgC"])
    assert "read back from the flow tables" in scsc.logs()
    assert {node: switch.entries() for node, switch in sw.items()} == before  # ids, times too
    assert {node: len(switch.flow_mods) for node, switch in sw.items()} == mods
    assert all(switch.handshakes == 2 for switch in sw.values())
    assert "flow_adds" not in scsc.ask("status")["counters"]
    assert len(scsc.decisions()) == 1  # a read-back is not a decision

    # and it goes on deciding: /B/1 recovers, one FLOW_MOD to srX, nothing else
    sw["sgA"].report(B_1=2.0, B_2=5.0)
    wait_for("srX -> sgB", lambda: sw["srX"].table() == steered(2))
    assert {node: len(switch.flow_mods) for node, switch in sw.items()} == {
        **mods, "srX": mods["srX"] + 1,
    }  # fmt: skip


def test_reset_on_the_admin_socket_empties_the_tables_and_settles(lab):
    lab.start(startup_settle_s=1.0)
    scsc, sw = lab.scsc, lab.switches
    sw["sgA"].report(B_1=80.0, B_2=5.0)
    wait_for("the policies", lambda: sw["sgA"].table() and sw["srX"].table() == steered(3))
    assert scsc.ask("reset") == {"removed": 2, "pending": []}
    assert scsc.ask("status")["settling"] and scsc.ask("choices") == []
    wait_for("empty tables", lambda: not sw["sgA"].table() and not sw["srX"].table())
    assert "reset: choices and telemetry forgotten, 2 policies removed" in scsc.logs()


def test_policies_for_a_disconnected_switch_wait_for_it(lab):
    lab.start()
    scsc, sw = lab.scsc, lab.switches
    sw.pop("srX").stop()  # its LSA stays: srX still forwards, only its SCSC session is gone
    wait_for("srX gone", lambda: "srX" not in scsc.node_switches())
    sw["sgA"].report(B_1=80.0, B_2=5.0)
    wait_for("sgA steered", lambda: sw["sgA"].table() == steered(1))
    (pending,) = wait_for("srX pending", lambda: scsc.ask("status")["pending"])
    assert (pending["node"], pending["next_hop"]) == ("srX", "sgC")
    assert pending["reason"] == "no switch of srX connected"

    lab.connect("srX")  # a fresh srX (restarted node, empty table)
    wait_for("srX steered", lambda: lab.switches["srX"].table() == steered(3))
    wait_for("nothing pending", lambda: scsc.ask("status")["pending"] == [])


def test_bad_experimenter_bodies_are_counted_and_the_scsc_carries_on(lab):
    lab.start(nodes=("sgA",))
    scsc, sg = lab.scsc, lab.switches["sgA"]
    bad_sample = PathQuality(1.0, 0.1, 0.0, None, 10, time.time()).to_qos_sample("sgA", "/B/1")
    bad_sample.loss = 2.0
    sg.send_raw(EXP_TELEMETRY, b"\xff\xff\xff")
    sg.send_raw(EXP_TELEMETRY, dmsc_pb2.Telemetry(samples=[bad_sample]).SerializeToString())
    sg.send_raw(EXP_LSA_COPY, dmsc_pb2.LsaCopy().SerializeToString())
    sg.send_raw(99, b"what")
    expected = {"bad_telemetry": 2, "bad_lsa_copy": 1, "bad_experimenter": 1}

    def counted():
        counters = scsc.ask("status")["counters"]
        return {key: counters.get(key) for key in expected} == expected

    wait_for("the bad messages counted", counted)
    logs = scsc.logs()
    assert "sgA: message refused: telemetry from sgA for /B/1: loss 2.0" in logs
    assert "LSA copy without an LSA" in logs and "unknown exp_type 99" in logs
    sg.report(B_1=3.0)  # good telemetry still goes in, on the same session
    wait_for("telemetry", lambda: scsc.ask("telemetry"))
    link = link_sample(4e6, time.time(), node_id="sgA", neighbor="srX")
    sg.send_raw(EXP_TELEMETRY, dmsc_pb2.Telemetry(links=[link]).SerializeToString())
    (reading,) = wait_for("the link reading", lambda: scsc.ask("links"))
    assert (reading["node"], reading["neighbor"], reading["available_bps"]) == ("sgA", "srX", 4e6)
    assert sg.handshakes == 1


def test_set_thresholds_refuses_a_bad_table_and_applies_a_good_one(lab):
    lab.start()
    scsc, sw = lab.scsc, lab.switches
    defaults = scsc.ask("thresholds")
    assert defaults == {
        "default": {"min_bandwidth_bps": None, "max_delay_ms": 50.0, "max_jitter_ms": 10.0,
                    "max_loss": 0.2},
        "services": {},
    }  # fmt: skip
    sw["sgA"].report(B_1=30.0, B_2=5.0)  # 30 ms is fine by the defaults: routing decides

    def routing_decides():
        notes = scsc.ask("status")["demand"]
        return notes == [
            {"source": "sgA", "service": "/B", "note": "routing's choice /B/1 meets the thresholds"}
        ]

    wait_for("routing's choice kept", routing_decides)
    bad = {"default": {"max_delay_ms": 0}}
    with pytest.raises(
        DmscError,
        match=r"^set_thresholds: thresholds: default: threshold max_delay_ms: out of range, got 0$",
    ):
        scsc.ask("set_thresholds", thresholds=bad)
    with pytest.raises(DmscError, match=r"services: /B: unknown threshold\(s\) \['max_delay'\]"):
        scsc.ask("set_thresholds", thresholds={"services": {"/B": {"max_delay": 20}}})
    with pytest.raises(DmscError, match="argument 'thresholds' is missing"):
        scsc.ask("set_thresholds")
    assert scsc.ask("thresholds") == defaults
    assert not sw["sgA"].table()

    table = scsc.ask("set_thresholds", thresholds={"services": {"/B": {"max_delay_ms": 20}}})
    assert table["services"]["/B"]["max_delay_ms"] == 20 and scsc.ask("thresholds") == table
    wait_for("/B steered to /B/2", lambda: sw["srX"].table() == steered(3))
    assert "delay 30.0 ms ≥ 20 ms" in scsc.decisions()[-1]["trigger"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_closes_the_admin_socket_and_exits_0(lab, signum):
    lab.start(nodes=("sgA",))
    scsc = lab.scsc
    assert scsc.ask("status")["listen"] == {"host": "127.0.0.1", "port": scsc.port}
    assert Path(scsc.admin).exists()
    assert scsc.stop(signum) == 0
    assert not Path(scsc.admin).exists()
    assert f"{signal.Signals(signum).name} received: stopping" in scsc.logs()


def test_the_scsc_refuses_to_start_on_a_taken_port_or_an_unwritable_log(lab):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        scsc = Scsc(lab.tmp, lab.sockets, {"listen_port": port})
        lab.scsc, scsc.expect_clean_exit = scsc, False
        with pytest.raises(AssertionError, match=r"the SCSC exited \(2\)"):
            scsc.start()
    assert f"cannot listen on 127.0.0.1 port {port}: Address already in use" in scsc.logs()
    (lab.tmp / "file").write_text("")
    scsc.config["decisions_log"] = str(lab.tmp / "file" / "decisions.jsonl")
    scsc.port = scsc.config["listen_port"] = _free_port()
    with pytest.raises(AssertionError, match=r"the SCSC exited \(2\)"):
        scsc.start()
    assert f"error: decisions_log {scsc.config['decisions_log']}: cannot open (" in scsc.logs()
