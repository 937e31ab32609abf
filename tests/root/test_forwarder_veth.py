"""The Python forwarder between real namespaces: client -- fwd -- server, kernel forwarding off."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time

import pytest

from dmsc.dataplane import netutil
from tests.root.conftest import RunningForwarder, popen_in, stop_process

pytestmark = pytest.mark.root

TCP_PORT = 5001
SERVER = f"""
import hashlib, socket, sys
listener = socket.socket(socket.AF_INET6)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("::", {TCP_PORT})); listener.listen(1)
print("listening", flush=True)
connection, _ = listener.accept()
digest, total = hashlib.sha256(), 0
while chunk := connection.recv(65536):
    digest.update(chunk); total += len(chunk)
print(total, digest.hexdigest(), flush=True)
"""


def ping(spaces: netutil.Namespaces, namespace: str, target: str, *extra: str):
    argv = ["ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", *extra, target]
    return spaces.exec(namespace, argv, check=False)


def test_ping_needs_the_forwarder(namespaces, chain):
    """Kernel forwarding is off in fwd: without the forwarder nothing crosses."""
    assert ping(namespaces, chain.client, chain.server_address).returncode != 0
    sysctl = namespaces.exec(chain.fwd, ["sysctl", "-n", "net.ipv6.conf.all.forwarding"])
    assert sysctl.stdout.strip() == "0"


def test_ping_across_the_forwarder(namespaces, chain, forwarder: RunningForwarder):
    result = ping(namespaces, chain.client, chain.server_address)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0% packet loss" in result.stdout
    stats = forwarder.stats()
    assert stats["routes"]["2001:db8:2::/64"]["packets"] >= 3
    assert stats["routes"]["2001:db8:1::/64"]["packets"] >= 3  # the replies
    assert stats["ports"]["f1"]["tx_packets"] >= 3


def test_tcp_transfer_arrives_intact(namespaces, chain, forwarder):
    payload = hashlib.sha256(b"seed").digest() * (20 * 2**20 // 32)  # 20 MiB
    server = popen_in(
        chain.server, [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "listening"
        client = popen_in(
            chain.client,
            [sys.executable, "-c", _client_code(chain.server_address)],
            stdin=subprocess.PIPE,
        )
        client.communicate(payload, timeout=60)
        assert client.returncode == 0
        total, digest = server.stdout.readline().split()
    finally:
        stop_process(server)
    assert int(total) == len(payload)
    assert digest == hashlib.sha256(payload).hexdigest()


def _client_code(address: str) -> str:
    return (
        "import socket, sys\n"
        f"s = socket.create_connection(({address!r}, {TCP_PORT}), timeout=30)\n"
        "s.sendall(sys.stdin.buffer.read()); s.shutdown(socket.SHUT_WR); s.recv(1)\n"
    )


def test_traceroute_shows_the_forwarder(namespaces, chain, forwarder):
    argv = ["traceroute", "-6", "-n", "-q", "1", "-w", "2", "-m", "4", chain.server_address]
    result = namespaces.exec(chain.client, argv, check=False)
    hops = [line.split() for line in result.stdout.splitlines()[1:]]
    assert hops[0][1] == chain.fwd_addresses[0], result.stdout  # Time Exceeded from the forwarder
    assert hops[1][1] == chain.server_address, result.stdout
    assert forwarder.stats()["ports"]["f0"]["drops"]["hop_limit"] >= 1


def test_hop_limit_one_ping_gets_time_exceeded(namespaces, chain, forwarder):
    result = ping(namespaces, chain.client, chain.server_address, "-t", "1")
    assert "Time exceeded" in result.stdout, result.stdout
    assert chain.fwd_addresses[0] in result.stdout


def test_no_route_gets_destination_unreachable(namespaces, chain, forwarder):
    result = ping(namespaces, chain.client, "2001:db8:77::1")
    assert result.returncode != 0
    assert "Destination unreachable" in result.stdout or "No route" in result.stdout, result.stdout
    assert forwarder.stats()["ports"]["f0"]["drops"]["no_route"] >= 1


MALFORMED = """
from scapy.all import Ether, IPv6, UDP, Raw, sendp
import sys
dst_mac, src_mac, target = sys.argv[1:4]
ip = IPv6(src="2001:db8:1::1", dst=target)
good = bytes(Ether(dst=dst_mac, src=src_mac) / ip / UDP() / Raw(b"x" * 40))
frames = []
for cut in (20, 40, 53):
    frames.append(good[:cut])                       # too short for IPv6
bad_version = bytearray(good); bad_version[14] = 0x45
frames.append(bytes(bad_version))                   # not version 6
frames.append(good[:-20])                           # payload length beyond the frame
sendp([Raw(f) for f in frames * 4], iface="c0", verbose=False)
print(len(frames) * 4)
"""


def test_malformed_frames_are_counted_and_forwarding_goes_on(namespaces, chain, forwarder):
    client_mac, fwd_mac = chain.macs[0], chain.macs[1]
    argv = [sys.executable, "-c", MALFORMED, fwd_mac, client_mac, chain.server_address]
    sent = popen_in(chain.client, argv, stdout=subprocess.PIPE, text=True)
    out, _ = sent.communicate(timeout=60)
    assert sent.returncode == 0
    deadline = time.monotonic() + 5
    while forwarder.stats()["ports"]["f0"]["drops"]["malformed"] < int(out):
        assert time.monotonic() < deadline, forwarder.stats()["ports"]["f0"]
        time.sleep(0.1)
    result = ping(namespaces, chain.client, chain.server_address)
    assert result.returncode == 0, result.stdout
    assert forwarder.process.poll() is None


def test_sigterm_stops_the_forwarder_promptly(forwarder):
    started = time.monotonic()
    forwarder.process.terminate()
    forwarder.process.wait(5)
    assert time.monotonic() - started < 3
    assert forwarder.process.returncode == 0
    assert forwarder.stats_path.exists()  # final counters written at exit
