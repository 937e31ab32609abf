"""Seeing the wire: scapy layers, capture reading, pcap of a simulation, live capture (root)."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("scapy", reason="dmsc.wire needs scapy (pip install scapy)")

from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether
from scapy.utils import PcapNgWriter, wrpcap

from dmsc.cli import main
from dmsc.cli.capture import capture_argv, namespace_command
from dmsc.errors import ConfigError, DecodeError
from dmsc.names import name_prefix
from dmsc.proto import dmsc_pb2
from dmsc.proto.codec import ALL_DMSC_ROUTERS, LINK_STATE_UDP_PORT, PROTOCOL_VERSION
from dmsc.sim import SimNetwork
from dmsc.spa.claims import AttestationVerifier, issue_attestation
from dmsc.spa.keys import demo_private_key
from dmsc.wire import capture
from dmsc.wire.pcap_from_sim import (
    interface_link_local,
    interface_mac,
    record_simulation_pcap,
)
from dmsc.wire.scapy_layers import DMSC, describe_data, dmsc_frame, eui64_link_local

REPO = Path(__file__).resolve().parents[2]
MAC = "02:00:5e:10:00:01"
ANNOUNCED = "/B/4"


def packet(**body) -> dmsc_pb2.LinkStatePacket:
    return dmsc_pb2.LinkStatePacket(version=PROTOCOL_VERSION, sender="sr1", **body)


def hello() -> dmsc_pb2.LinkStatePacket:
    return packet(
        hello=dmsc_pb2.Hello(
            interface="eth0", hello_interval_ms=1000, dead_interval_ms=4000, neighbors=["sg1"]
        )
    )


def update(spa) -> dmsc_pb2.LinkStatePacket:
    lsa = dmsc_pb2.LinkStateAdvertisement(
        originator="sg4",
        sequence=7,
        lifetime_ms=1_800_000,
        adjacencies=[dmsc_pb2.Adjacency(neighbor="sr2", cost=10)],
        prefixes=[
            dmsc_pb2.AnnouncedPrefix(name=ANNOUNCED, attestation=spa.attest(ANNOUNCED, "sg4", 0))
        ],
    )
    return packet(update=dmsc_pb2.LinkStateUpdate(lsas=[lsa]))


def ack() -> dmsc_pb2.LinkStatePacket:
    header = dmsc_pb2.LsaHeader(originator="sg4", sequence=7, lifetime_ms=0)
    return packet(ack=dmsc_pb2.LinkStateAck(headers=[header]))


def on_the_wire(message: dmsc_pb2.LinkStatePacket | bytes) -> Ether:
    """Build a frame as a node sends it, then dissect its bytes as a receiver would."""
    return Ether(bytes(dmsc_frame(message, MAC, eui64_link_local(MAC))))


# ---------------------------------------------------------------------- scapy layers


def test_a_built_frame_is_link_local_signalling():
    frame = on_the_wire(hello())
    assert frame[Ether].dst == "33:33:00:00:0d:5c"
    assert frame[IPv6].src == "fe80::5eff:fe10:1"  # EUI-64, U/L bit flipped
    assert frame[IPv6].dst == ALL_DMSC_ROUTERS and frame[IPv6].hlim == 255
    assert frame[UDP].sport == frame[UDP].dport == LINK_STATE_UDP_PORT
    checksum = frame[UDP].chksum
    del frame[UDP].chksum
    assert Ether(bytes(frame))[UDP].chksum == checksum  # scapy agrees with what was sent


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda spa: hello(), ["HELLO from sr1 on eth0", "dead after 4 s", "neighbors heard: sg1"]),
        (
            update,
            [
                "UPDATE from sr1: 1 LSA",
                "LSA sg4 seq 7, lifetime 1800 s",
                "adjacencies: sr2 (cost 10)",
                f"prefix {ANNOUNCED}  {name_prefix(ANNOUNCED)}",
                "via sg4",
            ],
        ),
        (lambda spa: ack(), ["ACK from sr1: 1 LSA", "acknowledges sg4 seq 7, PURGE"]),
    ],
)
def test_each_body_dissects_and_renders(spa, build, expected):
    message = build(spa)
    frame = on_the_wire(message)
    assert frame[DMSC].decoded().message == message
    assert frame[DMSC].message == message.SerializeToString()  # the bytes, unchanged
    shown = frame.show(dump=True)
    for text in expected:
        assert text in shown
    body = message.WhichOneof("body")
    assert f"DMSC {body} from sr1" in frame.summary()


def test_datagrams_from_port_6464_dissect_too():
    frame = (
        Ether() / IPv6() / UDP(sport=LINK_STATE_UDP_PORT, dport=40000) / hello().SerializeToString()
    )
    assert Ether(bytes(frame))[DMSC].decoded().ok


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xff\xff", "not a valid LinkStatePacket"),
        (packet().SerializeToString(), "no hello, update or ack"),
        (dmsc_pb2.LinkStatePacket(version=9, sender="x").SerializeToString(), "version 9"),
    ],
)
def test_malformed_datagrams_show_the_reason(data, reason):
    frame = on_the_wire(data)
    assert not frame[DMSC].decoded().ok
    assert f"MALFORMED DMSC ({len(data)} bytes)" in frame.show(dump=True)
    assert reason in frame.show(dump=True)
    assert "DMSC malformed" in frame.summary() and reason in frame.summary()


def _mutated(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    result = bytearray(data)
    for index, value in edits:
        result[index % len(result)] = value
    return bytes(result)


valid_bytes = st.sampled_from(
    [hello().SerializeToString(), ack().SerializeToString(), packet().SerializeToString()]
)
payloads = st.one_of(
    st.binary(min_size=1, max_size=300),
    st.builds(
        _mutated,
        valid_bytes,
        st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 255)), min_size=1, max_size=4),
    ),
)


@settings(max_examples=300, deadline=None)
@given(payloads)
def test_random_payloads_never_raise_in_dissection(data):
    frame = on_the_wire(data)
    shown, summary = frame.show(dump=True), frame.summary()
    decoded = frame[DMSC].decoded()
    assert decoded.ok or (decoded.error in shown and "malformed" in summary)
    assert describe_data(data)


def test_an_empty_datagram_is_a_malformed_message():
    frame = on_the_wire(b"")
    assert DMSC not in frame  # scapy makes no layer of nothing
    message = capture.wire_message(frame)
    assert message.kind == "malformed" and "version 0" in message.decoded.error


def test_unicast_frames_need_the_neighbors_mac():
    with pytest.raises(ConfigError, match="dst_mac"):
        dmsc_frame(hello(), MAC, eui64_link_local(MAC), iface_dst="fe80::1")
    frame = dmsc_frame(hello(), MAC, eui64_link_local(MAC), "fe80::1", dst_mac="02:00:00:00:00:02")
    assert Ether(bytes(frame))[IPv6].dst == "fe80::1"


def test_simulated_interfaces_have_stable_distinct_addresses():
    mac = interface_mac("sg1", "eth0")
    assert mac == interface_mac("sg1", "eth0") != interface_mac("sg1", "eth1")
    assert int(mac[:2], 16) & 0x03 == 0x02  # unicast, locally administered
    assert interface_link_local("sg1", "eth0") == eui64_link_local(mac)
    assert interface_link_local("sg1", "eth0").startswith("fe80::")


# ---------------------------------------------------------------------- pcap of a simulation


@pytest.fixture(scope="module")
def sim_pcap(tmp_path_factory):
    """Three routers in a line; r0 announces /B/4; 5 virtual seconds recorded."""
    spa_key = demo_private_key("test-spa")
    network = SimNetwork(AttestationVerifier.from_public_keys([spa_key.public_key()]))
    for node in ("r0", "r1", "r2"):
        network.add_node(node)
    network.add_link("r0", "r1")
    network.add_link("r1", "r2")
    seen = []
    network.taps.append(seen.append)
    path = tmp_path_factory.mktemp("wire") / "line.pcapng"
    with record_simulation_pcap(network, path) as recorder:
        attestation = issue_attestation(spa_key, ANNOUNCED, "pod4", "r0", network.now, 3600)
        network.routers["r0"].announce_prefix(ANNOUNCED, attestation, network.now)
        network.run_for(5.0)
    network.run_for(1.0)  # after close: not recorded
    assert recorder.frames == len([d for d in seen if d.time <= network.now - 1.0])
    return path, recorder.frames


def test_sim_pcap_reads_back_in_time_order(sim_pcap):
    path, frames = sim_pcap
    messages = capture.read_messages(path)
    assert len(messages) == frames
    times = [m.time for m in messages]
    assert times == sorted(times)
    assert all(m.decoded.ok for m in messages)
    kinds = [m.kind for m in messages]
    assert {"hello", "update", "ack"} <= set(kinds)
    announcing = [
        i
        for i, m in enumerate(messages)
        if m.kind == "update"
        and any(p.name == ANNOUNCED for lsa in m.decoded.message.update.lsas for p in lsa.prefixes)
    ]
    assert announcing, f"no update carries {ANNOUNCED}"
    assert messages[announcing[0]].decoded.message.sender in ("r0", "r1")
    assert any(m.kind == "ack" for m in messages[announcing[0] :])  # and it is acknowledged
    assert kinds.index("hello") < announcing[0]


def test_sim_pcap_names_links_and_addresses(sim_pcap):
    path, _ = sim_pcap
    first = next(m for m in capture.read_messages(path) if m.kind == "hello")
    sender = first.decoded.message
    assert first.interface in {"r0-eth0", "r1-eth0", "r1-eth1", "r2-eth0"}
    assert first.source == interface_link_local(sender.sender, sender.hello.interface)
    assert first.destination == ALL_DMSC_ROUTERS
    assert first.link.startswith(f"{sender.sender} {sender.hello.interface} -> ")


def test_sim_pcap_opens_with_tcpdump(sim_pcap):
    tcpdump = "/usr/bin/tcpdump"
    if not os.access(tcpdump, os.X_OK):
        pytest.skip("tcpdump not installed")
    path, frames = sim_pcap
    result = subprocess.run(
        [tcpdump, "-n", "-r", str(path)], capture_output=True, text=True, check=True
    )
    lines = result.stdout.splitlines()
    assert len(lines) == frames
    assert f"> {ALL_DMSC_ROUTERS}.{LINK_STATE_UDP_PORT}: UDP" in lines[0]


def test_wireshark_decodes_the_sim_pcap_with_the_proto_file(sim_pcap):
    """The settings docs/wire.md gives for Wireshark, checked with tshark when it is there."""
    if not os.access("/usr/bin/tshark", os.X_OK):
        pytest.skip("tshark not installed")
    path, frames = sim_pcap
    settings = [
        "-o", f'uat:protobuf_search_paths:"{REPO / "dmsc" / "proto"}","TRUE"',
        "-o", f'uat:protobuf_udp_message_types:"{LINK_STATE_UDP_PORT}","dmsc.v1.LinkStatePacket"',
    ]  # fmt: skip
    result = subprocess.run(
        ["/usr/bin/tshark", "-n", "-r", str(path), *settings],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HOME": str(path.parent)},  # no personal Wireshark profile
    )
    lines = result.stdout.splitlines()
    assert len(lines) == frames
    assert all("PB(dmsc.v1.LinkStatePacket)" in line for line in lines)
    assert any("sender=r0 update" in line for line in lines)


# ---------------------------------------------------------------------- dmsc capture --read


def test_capture_read_prints_blocks(sim_pcap, capsys):
    path, frames = sim_pcap
    assert main(["capture", "--read", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("    0.000000  r")  # relative time, then the capture interface
    assert "HELLO from r0 on eth0" in out
    assert f"prefix {ANNOUNCED}  {name_prefix(ANNOUNCED)}" in out
    assert "ACK from r1" in out
    assert "-> ff02::d5c  (r0 eth0 -> r1 eth0)" in out
    assert f"{frames} DMSC message(s) shown, 0 malformed" in err


def test_capture_read_count_stops_early(sim_pcap, capsys):
    path, _ = sim_pcap
    assert main(["capture", "--read", str(path), "--count", "3"]) == 0
    out, err = capsys.readouterr()
    assert out.count(" -> ff02::d5c") == 3
    assert "3 DMSC message(s) shown" in err


def test_capture_read_all_lists_other_frames(tmp_path, capsys):
    good = dmsc_frame(hello(), MAC, eui64_link_local(MAC))
    bad = dmsc_frame(b"\x08\x07", MAC, eui64_link_local(MAC))
    grpc = Ether() / IPv6(src="fd00::2", dst="fd00::1") / TCP(sport=40000, dport=50051, flags="S")
    ping = Ether() / IPv6(src="fd00::2", dst="fd64:6d73:63:92eb:4::1") / ICMPv6EchoRequest()
    for offset, frame in enumerate((good, grpc, ping, bad)):
        frame.time = 1000.0 + offset / 10
    path = tmp_path / "mixed.pcap"
    wrpcap(str(path), [good, grpc, ping, bad])  # classic pcap this time
    assert main(["capture", "--read", str(path), "--all"]) == 0
    out, err = capsys.readouterr()
    assert "[gRPC SG -> SPA (type 3)]" in out
    assert "ICMPv6 Echo Request" in out
    assert "    0.300000  fe80::5eff:fe10:1 -> ff02::d5c" in out
    assert "MALFORMED DMSC: link-state packet: version 7, expected 1" in out
    assert "2 DMSC message(s) shown, 1 malformed, 2 other frame(s)" in err
    main(["capture", "--read", str(path)])
    assert "[gRPC" not in capsys.readouterr().out  # without --all, only DMSC


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read capture: No such file"),
        (b"", "not a pcap or pcapng capture"),
        (b"this is not a capture file at all\n", "not a pcap or pcapng capture"),
    ],
)
def test_bad_capture_files_are_clear_errors(tmp_path, capsys, content, message):
    path = tmp_path / "bad.pcap"
    if content is not None:
        path.write_bytes(content)
    assert main(["capture", "--read", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"dmsc capture: error: {path}: {message}" in err


def test_truncated_capture_prints_what_it_has_then_fails(sim_pcap, tmp_path, capsys):
    path, _ = sim_pcap
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(path.read_bytes()[:3000])
    assert main(["capture", "--read", str(cut)]) == 2
    out, err = capsys.readouterr()
    assert "HELLO from" in out
    assert f"{cut}: truncated or corrupt capture after" in err
    with pytest.raises(DecodeError, match="truncated"):
        capture.read_messages(cut)


def test_capture_writes_pcapng_that_reads_back(tmp_path):
    frame = dmsc_frame(hello(), MAC, eui64_link_local(MAC))
    frame.time, frame.sniffed_on = 5.0, "sg1-eth0"
    path = tmp_path / "one.pcapng"
    with PcapNgWriter(str(path)) as writer:
        writer.write(frame)
    (message,) = capture.read_messages(path)
    assert message.interface == "sg1-eth0" and message.decoded.message == hello()


def test_live_only_options_are_refused_with_read(capsys):
    assert main(["capture", "--read", "x.pcap", "--timeout", "3", "--netns", "ns1"]) == 2
    assert "--timeout, --netns: only for a live capture" in capsys.readouterr().err


def test_netns_reruns_the_same_capture_inside_the_namespace():
    from dmsc.cli import build_parser

    args = build_parser().parse_args(
        ["capture", "-i", "a", "-i", "b", "--count", "2", "--write", "x.pcapng", "--netns", "n1"]
    )
    assert capture_argv(args) == [
        "-i", "a", "-i", "b", "--count", "2", "--write", str(Path("x.pcapng").absolute())
    ]  # fmt: skip
    assert namespace_command(args)[:6] == ["ip", "netns", "exec", "n1", sys.executable, "-m"]


# ---------------------------------------------------------------------- live capture (root)

SENDER = """
import sys, time
from scapy.sendrecv import sendp
from dmsc.proto import dmsc_pb2
from dmsc.wire.scapy_layers import dmsc_frame, eui64_link_local
mac, iface = sys.argv[1], sys.argv[2]
hello = dmsc_pb2.LinkStatePacket(version=1, sender="sr9", hello=dmsc_pb2.Hello(
    interface=iface, hello_interval_ms=1000, dead_interval_ms=4000))
frames = [dmsc_frame(hello, mac, eui64_link_local(mac)),
          dmsc_frame(b"\\x08\\x01", mac, eui64_link_local(mac))]
for _ in range(150):  # until the test stops us (at most 30 s)
    sendp(frames, iface=iface, verbose=False)
    time.sleep(0.2)
"""


def _stop_group(process: subprocess.Popen) -> None:
    """Kill the process group this test started (by its id), then reap the leader."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def veth_namespaces():
    """Two fresh namespaces joined by a veth pair; always deleted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("live capture needs root (network namespaces, raw sockets)")
    tag = f"dmscw{os.getpid() % 100000}"
    namespaces = (f"{tag}a", f"{tag}b")
    try:
        for namespace in namespaces:
            _ip("netns", "add", namespace)
        _ip("link", "add", "vA", "netns", namespaces[0], "type", "veth", "peer", "name", "vB",
            "netns", namespaces[1])  # fmt: skip
        _ip("-n", namespaces[0], "link", "set", "vA", "up")
        _ip("-n", namespaces[1], "link", "set", "vB", "up")
        yield namespaces
    finally:
        for namespace in namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


@pytest.mark.root
def test_live_capture_in_a_namespace_decodes_what_the_other_end_sends(veth_namespaces, tmp_path):
    sender_ns, capture_ns = veth_namespaces
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    written = tmp_path / "live.pcapng"
    capture_command = [sys.executable, "-m", "dmsc", "capture", "--netns", capture_ns, "-i", "vB"]
    capture_command += ["--count", "2", "--timeout", "30", "--write", str(written)]
    catcher = subprocess.Popen(
        capture_command,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the capture re-runs itself in the netns
    )
    sender = subprocess.Popen(
        ["ip", "netns", "exec", sender_ns, sys.executable, "-c", SENDER, MAC, "vA"],
        env=environment,
        start_new_session=True,
    )
    try:
        out, err = catcher.communicate(timeout=40)
    finally:
        for process in (catcher, sender):
            _stop_group(process)
    assert catcher.returncode == 0, err
    assert "vB  fe80::5eff:fe10:1 -> ff02::d5c" in out
    assert "HELLO from sr9 on vA" in out and "MALFORMED DMSC" in out
    assert "2 DMSC message(s) shown, 1 malformed" in err
    kinds = {m.kind for m in capture.read_messages(written)}
    assert kinds == {"hello", "malformed"}


def test_ctrl_c_during_a_read_still_reports_counts(sim_pcap, monkeypatch, capsys):
    path, _ = sim_pcap
    calls = {"n": 0}
    real = capture.wire_message

    def interrupt_on_third(frame):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(frame)

    monkeypatch.setattr(capture, "wire_message", interrupt_on_third)
    started = time.monotonic()
    assert main(["capture", "--read", str(path)]) == 130
    assert time.monotonic() - started < 10
    assert "2 DMSC message(s) shown, 0 malformed (interrupted)" in capsys.readouterr().err
