"""The SPA over real gRPC on loopback (dmsc.spa.service), and ``dmsc spa serve``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from dmsc.errors import ConfigError
from dmsc.proto import dmsc_pb2
from dmsc.spa.authority import ACCEPTED, SpaAuthority
from dmsc.spa.claims import AttestationVerifier, sign_claim
from dmsc.spa.keys import private_key_from_seed, public_key_to_text, save_private_key
from dmsc.spa.policy import parse_policy
from dmsc.spa.service import PrefixAuthenticationServicer, SpaClient, serve, start_server

NOW = 1_700_000_000.0
SPA_KEY = private_key_from_seed(b"\x53" * 32)
POD_KEY = private_key_from_seed(b"\x01" * 32)
R = dmsc_pb2.RejectCode
REPO = Path(__file__).resolve().parents[2]
POLICY_DATA = {
    "pods": [
        {
            "pod_id": "pod1",
            "public_key": public_key_to_text(POD_KEY.public_key()),
            "allowed": ["/A", "/A/*"],
        }
    ]
}


def make_authority() -> SpaAuthority:
    return SpaAuthority(parse_policy(POLICY_DATA), SPA_KEY)


def request(name: str) -> dmsc_pb2.AuthRequest:
    return dmsc_pb2.AuthRequest(
        claim=sign_claim(POD_KEY, name, "pod1", "sg1", NOW), sg_node_id="sg1"
    )


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def spa_server() -> Iterator[tuple[SpaAuthority, str]]:
    authority = make_authority()
    server, port = start_server(authority, "127.0.0.1:0", clock=lambda: NOW)
    try:
        yield authority, f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait()


def test_accept_and_reject_through_the_client(spa_server):
    authority, target = spa_server
    with SpaClient(target, timeout_s=5.0) as client:
        accepted = client.authenticate(request("/A/1"))
        rejected = client.authenticate(request("/B/1"))
    assert accepted.accepted
    verifier = AttestationVerifier.from_public_keys([SPA_KEY.public_key()])
    assert verifier.verify(accepted.attestation, "/A/1", "sg1", NOW) == NOW + 3600
    assert not rejected.accepted and rejected.code == R.REJECT_NOT_ALLOWED
    assert "pod1" in rejected.reason and "/B/1" in rejected.reason
    assert authority.counters[ACCEPTED] == 1 and authority.counters["REJECT_NOT_ALLOWED"] == 1


def test_concurrent_requests_are_all_answered(spa_server):
    authority, target = spa_server
    replies: list[dmsc_pb2.AuthReply] = []
    with SpaClient(target, timeout_s=5.0) as client:
        threads = [
            threading.Thread(
                target=lambda i=i: replies.append(client.authenticate(request(f"/A/{i}")))
            )
            for i in range(1, 21)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert len(replies) == 20 and all(reply.accepted for reply in replies)
    assert authority.counters[ACCEPTED] == 20


def test_unreachable_spa_is_a_quick_reject_not_an_exception():
    target = f"127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with SpaClient(target, timeout_s=0.5) as client:
        reply = client.authenticate(request("/A/1"))
    assert time.monotonic() - started < 2.0
    assert not reply.accepted and reply.code == R.REJECT_SPA_UNAVAILABLE
    assert target in reply.reason


def test_spa_that_does_not_answer_in_time_is_a_reject():
    release = threading.Event()

    def stuck_clock() -> float:
        release.wait(timeout=10)
        return NOW

    server, port = start_server(make_authority(), "127.0.0.1:0", clock=stuck_clock)
    try:
        started = time.monotonic()
        with SpaClient(f"127.0.0.1:{port}", timeout_s=0.3) as client:
            reply = client.authenticate(request("/A/1"))
        assert time.monotonic() - started < 2.0
        assert reply.code == R.REJECT_SPA_UNAVAILABLE and "within 0.3 s" in reply.reason
    finally:
        release.set()
        server.stop(None).wait()


def test_serve_returns_a_started_server():
    server = serve(make_authority(), "127.0.0.1:0")
    try:
        assert isinstance(server, grpc.Server)
    finally:
        server.stop(None).wait()


def test_bind_failure_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"SPA cannot listen on '192\.0\.2\.1:50051'"):
        start_server(make_authority(), "192.0.2.1:50051")  # TEST-NET-1: never a local address


def test_servicer_uses_the_injected_clock():
    servicer = PrefixAuthenticationServicer(make_authority(), clock=lambda: NOW + 1000)
    reply = servicer.Authenticate(request("/A/1"), context=None)
    assert reply.code == R.REJECT_STALE_CLAIM  # the claim is 1000 s old by that clock


# ---------------------------------------------------------------- dmsc spa serve


SERVE_LAUNCHER = """
import argparse, sys
from dmsc.cli import spa
parser = argparse.ArgumentParser(prog="dmsc")
spa.register(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_cli_serve_answers_then_stops_cleanly_on_signal(tmp_path, stop_signal):
    import yaml

    policy, key = tmp_path / "policy.yaml", tmp_path / "spa.pem"
    policy.write_text(yaml.safe_dump(POLICY_DATA))
    save_private_key(SPA_KEY, key)
    argv = ["spa", "serve", "--policy", str(policy), "--key", str(key), "--listen", "127.0.0.1:0"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_LAUNCHER, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first_line = process.stdout.readline()  # printed once the server listens
        port = int(first_line.rsplit("(port ", 1)[1].rstrip(")\n"))
        live = dmsc_pb2.AuthRequest(
            claim=sign_claim(POD_KEY, "/A/1", "pod1", "sg1", time.time()), sg_node_id="sg1"
        )
        with SpaClient(f"127.0.0.1:{port}", timeout_s=5.0) as client:
            assert client.authenticate(live).accepted
        process.send_signal(stop_signal)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "SPA stopped; outcomes: ACCEPTED=1" in out
