"""Type 1 binds the caller: only the pod holding a lease may renew or withdraw it.

First the sans-I/O decision (:mod:`dmsc.nodes.pod_binding`), then the real SG gRPC service
(:class:`dmsc.nodes.gateway.Gateway` on a real :class:`RouterNode`) and the real SPA server on
loopback, attacked the ways issue 12 lists. Which pod link a call stands for is injected through
the gateway's ``caller_interface`` (read here from call metadata); the peer-string parsing itself
is tested in test_nodes_pure.py.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from dmsc.nodes.config import InstanceConfig, PodConfig, RouterConfig
from dmsc.nodes.gateway import Gateway
from dmsc.nodes.leases import Lease, LeaseTable
from dmsc.nodes.pod import Pod
from dmsc.nodes.pod_binding import (
    BAD_SIGNATURE,
    NOT_LEASE_HOLDER,
    REPLAYED,
    STALE,
    WRONG_GATEWAY,
    WRONG_INTERFACE,
    PodBinding,
    Refused,
    pod_key_problem,
)
from dmsc.nodes.router_node import RouterNode
from dmsc.proto import dmsc_pb2, dmsc_pb2_grpc
from dmsc.routing.domain import RoutingDomain
from dmsc.spa.authority import UNDECODABLE, SpaAuthority
from dmsc.spa.claims import (
    CLAIM_WINDOW_S,
    sign_claim,
    sign_withdrawal,
    verify_withdrawal_signature,
    withdrawal_signed_bytes,
)
from dmsc.spa.keys import demo_private_key, public_key_to_text, raw_public_bytes
from dmsc.spa.policy import DEFAULT_CLAIM_WINDOW_S, parse_policy
from dmsc.spa.service import SpaClient, start_server

NOW = 1_700_000_000.0
SG = "sg1"
LINK_A, LINK_B, ROUTER_LINK = "sg1-eth1", "sg1-eth2", "sg1-eth0"
MAC_A = b"\x02\x00\x00\x00\x00\x0a"
POD_A_KEY = demo_private_key("podA")  # what PodConfig(key_label="podA") loads
POD_B_KEY = demo_private_key("podB")
SPA_KEY = demo_private_key("spa1")
RAW_A = raw_public_bytes(POD_A_KEY.public_key())
RAW_B = raw_public_bytes(POD_B_KEY.public_key())
POLICY = {
    "pods": [
        {
            "pod_id": "podA",
            "public_key": public_key_to_text(POD_A_KEY.public_key()),
            "allowed": ["/A", "/A/*"],
        },
        {
            "pod_id": "podB",
            "public_key": public_key_to_text(POD_B_KEY.public_key()),
            "allowed": ["/B", "/B/*"],
        },
    ]
}
INTERFACE_KEY = "test-interface"  # call metadata naming the pod link a test call stands for
GARBAGE = b"\xff\xff\xff\xff not protobuf"


def withdrawal(key=POD_A_KEY, pod="podA", names=("/A/1",), sg=SG, ts=NOW, nonce=b"n1"):
    return sign_withdrawal(key, pod, names, sg, ts, nonce)


# ---------------------------------------------------------------- signing a withdrawal


def test_withdrawal_signature_covers_every_field_but_itself():
    request = withdrawal()
    assert verify_withdrawal_signature(request, POD_A_KEY.public_key())
    assert not verify_withdrawal_signature(request, POD_B_KEY.public_key())
    assert request.signature not in withdrawal_signed_bytes(request)
    changes = [("pod_id", "podB"), ("sg_node_id", "sg2"), ("timestamp", NOW + 1), ("nonce", b"n2")]
    for field, value in changes:
        altered = dmsc_pb2.WithdrawRequest()
        altered.CopyFrom(request)
        setattr(altered, field, value)
        assert not verify_withdrawal_signature(altered, POD_A_KEY.public_key()), field
    altered.CopyFrom(request)
    altered.names.append("/A/2")
    assert not verify_withdrawal_signature(altered, POD_A_KEY.public_key())


def test_the_sg_and_the_spa_share_one_freshness_window():
    assert DEFAULT_CLAIM_WINDOW_S == CLAIM_WINDOW_S == PodBinding(SG, ()).window_s


# ---------------------------------------------------------------- the decision, sans I/O


def lease_table(*holders: tuple[str, str, str, bytes]) -> LeaseTable:
    table = LeaseTable()
    for name, pod, interface, key in holders:
        table.grant(Lease(name, pod, interface, MAC_A, dmsc_pb2.Attestation(), NOW + 10, key))
    return table


def two_pods() -> LeaseTable:
    return lease_table(
        ("/A/1", "podA", LINK_A, RAW_A),
        ("/A/2", "podA", LINK_A, RAW_A),
        ("/B/1", "podB", LINK_B, RAW_B),
    )


def binding() -> PodBinding:
    return PodBinding(SG, (LINK_A, LINK_B))


def refusal(call) -> Refused:
    with pytest.raises(Refused) as caught:
        call()
    return caught.value


def test_the_lease_holder_withdraws_and_uses_up_its_nonce():
    gate, leases = binding(), two_pods()
    assert gate.accept_withdraw(leases, withdrawal(), LINK_A, NOW) == ["/A/1"]
    assert gate.accept_withdraw(leases, withdrawal(names=(), nonce=b"n2"), LINK_A, NOW) == [
        "/A/1",
        "/A/2",
    ]  # no names: all it holds (the table is unchanged: releasing is the caller's)
    again = refusal(lambda: gate.accept_withdraw(leases, withdrawal(), LINK_A, NOW + 1))
    assert again.kind == REPLAYED and "already used" in str(again)


@pytest.mark.parametrize(
    ("request_", "interface", "kind", "fragment"),
    [
        (withdrawal(), LINK_B, WRONG_INTERFACE, "holds its leases at SG sg1 via sg1-eth1"),
        (withdrawal(), ROUTER_LINK, WRONG_INTERFACE, "not a pod link of SG sg1"),
        (withdrawal(), None, WRONG_INTERFACE, "an unknown interface"),
        (withdrawal(pod="podC"), LINK_A, NOT_LEASE_HOLDER, "pod 'podC' holds no lease"),
        (withdrawal(key=POD_B_KEY), LINK_A, BAD_SIGNATURE, "not signed by the pod's key"),
        (withdrawal(sg="sg2"), LINK_A, WRONG_GATEWAY, "names SG 'sg2', but this is SG sg1"),
        (withdrawal(ts=NOW - 31), LINK_A, STALE, "31.000 s old"),
        (withdrawal(ts=NOW + 31), LINK_A, STALE, "31.000 s in the future"),
        (withdrawal(ts=float("nan")), LINK_A, STALE, "window is +/-30 s"),
        (withdrawal(nonce=b""), LINK_A, REPLAYED, "carries no nonce"),
        (withdrawal(names=("/B/1",)), LINK_A, NOT_LEASE_HOLDER, "does not hold '/B/1'"),
    ],
)
def test_each_refusal_names_what_failed(request_, interface, kind, fragment):
    gate, leases = binding(), two_pods()
    refused = refusal(lambda: gate.accept_withdraw(leases, request_, interface, NOW))
    assert refused.kind == kind
    assert fragment in str(refused), str(refused)
    assert len(gate.nonces) == 0  # a refused request does not use up its nonce


def test_unsigned_or_garbled_signature_is_a_bad_signature():
    gate, leases = binding(), two_pods()
    unsigned = withdrawal()
    unsigned.ClearField("signature")
    flipped = withdrawal()
    flipped.signature = bytes([flipped.signature[0] ^ 1]) + flipped.signature[1:]
    short = withdrawal()
    short.signature = b"x" * 7
    for request in (unsigned, flipped, short):
        refused = refusal(lambda r=request: gate.accept_withdraw(leases, r, LINK_A, NOW))
        assert refused.kind == BAD_SIGNATURE


def test_a_lease_without_a_pod_key_can_only_run_out():
    gate, leases = binding(), lease_table(("/A/1", "podA", LINK_A, b""))
    refused = refusal(lambda: gate.accept_withdraw(leases, withdrawal(), LINK_A, NOW))
    assert refused.kind == BAD_SIGNATURE and "the SPA gave no key" in str(refused)


@pytest.mark.parametrize(
    ("request_", "interface", "kind"),
    [
        (withdrawal(key=POD_B_KEY, sg="sg2"), LINK_B, WRONG_INTERFACE),  # before everything
        (withdrawal(pod="podC", key=POD_B_KEY), LINK_A, NOT_LEASE_HOLDER),  # before signature
        (withdrawal(key=POD_B_KEY, sg="sg2", ts=0.0), LINK_A, BAD_SIGNATURE),  # before SG
        (withdrawal(sg="sg2", ts=0.0), LINK_A, WRONG_GATEWAY),  # before freshness
        (withdrawal(ts=0.0, nonce=b""), LINK_A, STALE),  # before the nonce
        (withdrawal(names=("/B/1",), nonce=b""), LINK_A, REPLAYED),  # before the names
    ],
)
def test_checks_run_in_the_documented_order(request_, interface, kind):
    refused = refusal(lambda: binding().accept_withdraw(two_pods(), request_, interface, NOW))
    assert refused.kind == kind


def test_a_nonce_is_remembered_exactly_as_long_as_its_request_is_fresh():
    gate, leases = binding(), two_pods()
    future = NOW + 20  # a pod whose clock runs ahead, within the window
    assert gate.accept_withdraw(leases, withdrawal(ts=future), LINK_A, NOW) == ["/A/1"]
    replay = withdrawal(ts=future)
    late = future + CLAIM_WINDOW_S  # the last instant the replay is still fresh
    assert refusal(lambda: gate.accept_withdraw(leases, replay, LINK_A, late)).kind == REPLAYED
    after = late + 0.001
    assert refusal(lambda: gate.accept_withdraw(leases, replay, LINK_A, after)).kind == STALE
    assert not gate.nonces.seen("podA", b"n1", after)  # forgotten: it cannot be fresh again
    assert len(gate.nonces) == 0


def test_nonces_are_per_pod():
    gate, leases = binding(), two_pods()
    gate.accept_withdraw(leases, withdrawal(), LINK_A, NOW)
    mine = withdrawal(key=POD_B_KEY, pod="podB", names=("/B/1",))  # the same nonce b"n1"
    assert gate.accept_withdraw(leases, mine, LINK_B, NOW) == ["/B/1"]


def announce_request(pod="podA", claims=(("podA", POD_A_KEY, "/A/1"),)):
    return dmsc_pb2.AnnounceRequest(
        pod_id=pod, claims=[sign_claim(key, name, by, SG, NOW) for by, key, name in claims]
    )


def test_announce_is_checked_for_link_and_for_whose_claims_it_carries():
    gate, leases = binding(), two_pods()
    gate.check_announce(leases, announce_request(), LINK_A)  # renewal: fine
    gate.check_announce(LeaseTable(), announce_request(), LINK_B)  # first lease binds any link
    assert refusal(lambda: gate.check_announce(leases, announce_request(), LINK_B)).kind == (
        WRONG_INTERFACE
    )
    assert refusal(lambda: gate.check_announce(leases, announce_request(), ROUTER_LINK)).kind == (
        WRONG_INTERFACE
    )
    foreign = announce_request(pod="podB", claims=(("podA", POD_A_KEY, "/A/1"),))
    refused = refusal(lambda: gate.check_announce(leases, foreign, LINK_B))
    assert refused.kind == NOT_LEASE_HOLDER and "made by pod 'podA'" in str(refused)


def test_configured_pod_links_bind_a_pod_before_its_first_lease():
    """With the SG told which pod sits on which link (the emulation always tells it), a host on
    pod B's link cannot open pod A's first lease either."""
    gate = PodBinding(SG, (LINK_A, LINK_B), pod_links={LINK_A: "podA", LINK_B: "podB"})
    gate.check_announce(LeaseTable(), announce_request(), LINK_A)
    refused = refusal(lambda: gate.check_announce(LeaseTable(), announce_request(), LINK_B))
    assert refused.kind == WRONG_INTERFACE and "the link of pod 'podB'" in str(refused)


def test_announce_leaves_undecodable_claims_to_the_per_prefix_reject():
    request = announce_request()
    request.claims.add(claim=b"\xff\xff", signature=b"")
    binding().check_announce(LeaseTable(), request, LINK_A)


def test_the_sg_keeps_only_a_pod_key_that_signed_the_claim():
    signed = sign_claim(POD_A_KEY, "/A/1", "podA", SG, NOW)
    assert pod_key_problem(signed, RAW_A) is None
    assert "did not sign the claim" in pod_key_problem(signed, RAW_B)
    assert "no valid pod key (0 bytes)" in pod_key_problem(signed, b"")


# ---------------------------------------------------------------- the real gRPC services


class Clock:
    """One frozen clock for the SPA and the SG (time moves only when a test moves it)."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class LoopThread:
    """An asyncio loop in a thread, for the SG's grpc.aio server; tests call it synchronously."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


def interface_from_metadata(context) -> str | None:
    return dict(context.invocation_metadata()).get(INTERFACE_KEY)


@dataclass
class Sg:
    gateway: Gateway
    node: RouterNode
    spa: SpaAuthority
    clock: Clock
    channel: grpc.Channel

    @property
    def stub(self) -> dmsc_pb2_grpc.PodGatewayStub:
        return dmsc_pb2_grpc.PodGatewayStub(self.channel)

    def announce(self, names=("/A/1",), pod="podA", key=POD_A_KEY, via=LINK_A, claim_pod=None):
        claims = [sign_claim(key, name, claim_pod or pod, SG, self.clock()) for name in names]
        request = dmsc_pb2.AnnounceRequest(
            pod_id=pod, claims=claims, lease_ms=6000, hardware_address=MAC_A
        )
        return self.stub.Announce(request, timeout=5, metadata=((INTERFACE_KEY, via),))

    def withdraw(self, request, via=LINK_A) -> list[str]:
        reply = self.stub.Withdraw(request, timeout=5, metadata=((INTERFACE_KEY, via),))
        return list(reply.withdrawn)

    def counters(self) -> dict:
        return self.node.admin_handlers()["counters"]({})

    def events(self) -> list[dict]:
        return self.node.admin_handlers()["events"]({})

    def held(self) -> list[tuple[str, str, str, bytes, bytes]]:
        return [
            (lease.name, lease.pod_id, lease.interface, lease.pod_mac, lease.pod_public_key)
            for lease in self.gateway.leases
        ]

    def advertised(self) -> list[str]:
        return sorted(self.node.router.own_prefixes)


@pytest.fixture
def sg(tmp_path) -> Iterator[Sg]:
    clock = Clock()
    spa = SpaAuthority(parse_policy(POLICY), SPA_KEY)
    spa_server, spa_port = start_server(spa, "127.0.0.1:0", clock=clock)
    domain = RoutingDomain.open_directory(tmp_path)  # a router runs only once enrolled
    config = RouterConfig(
        node_id=SG,
        role="sg",
        interfaces=(),
        admin_socket="",
        trust_anchors=(public_key_to_text(SPA_KEY.public_key()),),
        router_key_file=str(domain.write_router(tmp_path, SG, "sg", NOW)),
        certificate_file=str(tmp_path / f"{SG}.cert"),
        link_key_file=str(tmp_path / "link.key"),
        routing_anchors=(domain.anchor_text,),
        pod_interfaces=(LINK_A, LINK_B),
        spa_target=f"127.0.0.1:{spa_port}",
    )
    node = RouterNode(config, clock)
    gateway = Gateway(node, listen="127.0.0.1:0", caller_interface=interface_from_metadata)
    node.extensions.append(gateway)
    loop = LoopThread()
    loop.run(gateway.start())
    channel = grpc.insecure_channel(f"127.0.0.1:{gateway.port}")
    try:
        yield Sg(gateway, node, spa, clock, channel)
    finally:
        channel.close()
        loop.run(gateway.stop())
        loop.close()
        spa_server.stop(None).wait()


def denied(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, caught.value.details()
    return caught.value


POD_A_HOLDS = [("/A/1", "podA", LINK_A, MAC_A, RAW_A)]


@pytest.fixture
def sg_with_pod_a(sg) -> Sg:
    """pod A holds /A/1 via its link; pod B holds /B/1 via its own."""
    assert [r.accepted for r in sg.announce().results] == [True]
    assert [r.accepted for r in sg.announce(["/B/1"], "podB", POD_B_KEY, LINK_B).results] == [True]
    assert sg.held()[:1] == POD_A_HOLDS and sg.advertised() == ["/A/1", "/B/1"]
    return sg


def assert_pod_a_untouched_and_still_served(sg: Sg) -> None:
    assert sg.held()[:1] == POD_A_HOLDS
    assert "/A/1" in sg.advertised()
    assert sg.announce().results[0].accepted  # renewal still works
    assert sg.withdraw(withdrawal(ts=sg.clock(), nonce=b"the real one")) == ["/A/1"]
    assert "/A/1" not in sg.advertised() and all(h[1] != "podA" for h in sg.held())


def assert_refusal_recorded(sg: Sg, kind: str, *fragments: str) -> None:
    assert sg.counters()[f"pod_refused_{kind}"] == 1
    refusals = [e for e in sg.events() if e["kind"] == "pod-refused"]
    assert len(refusals) == 1
    for fragment in fragments:
        assert fragment in refusals[0]["detail"], refusals[0]["detail"]


def test_the_legitimate_pod_announces_and_withdraws(sg_with_pod_a):
    sg = sg_with_pod_a
    assert sg.counters().get("pod_refused_bad_signature", 0) == 0
    assert_pod_a_untouched_and_still_served(sg)
    assert sg.held() == [("/B/1", "podB", LINK_B, MAC_A, RAW_B)]


def test_withdraw_by_a_caller_with_another_pods_key(sg_with_pod_a, caplog):
    sg = sg_with_pod_a
    forged = withdrawal(key=POD_B_KEY)  # pod B pretends to be pod A, over A's own link
    error = denied(lambda: sg.withdraw(forged, via=LINK_A))
    assert error.details().startswith("bad signature: withdrawal for pod 'podA' is not signed")
    assert_refusal_recorded(sg, BAD_SIGNATURE, "Withdraw via sg1-eth1 refused")
    refusals = [r for r in caplog.records if "refused: bad signature" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.WARNING
    assert_pod_a_untouched_and_still_served(sg)


def test_withdraw_of_another_pods_prefix_under_ones_own_name(sg_with_pod_a):
    sg = sg_with_pod_a
    mine = withdrawal(key=POD_B_KEY, pod="podB", names=("/A/1", "/B/1"))
    error = denied(lambda: sg.withdraw(mine, via=LINK_B))
    assert "not the lease holder: pod 'podB' does not hold '/A/1'" in error.details()
    assert_refusal_recorded(sg, NOT_LEASE_HOLDER)
    assert ("/B/1", "podB", LINK_B, MAC_A, RAW_B) in sg.held()  # refused whole: /B/1 kept too
    assert_pod_a_untouched_and_still_served(sg)


def test_withdraw_by_a_pod_that_holds_nothing(sg_with_pod_a):
    sg = sg_with_pod_a
    error = denied(lambda: sg.withdraw(withdrawal(key=POD_B_KEY, pod="podC"), via=LINK_B))
    assert "not the lease holder: pod 'podC' holds no lease at SG sg1" in error.details()
    assert_pod_a_untouched_and_still_served(sg)


@pytest.mark.parametrize("signature", [b"", b"\x00" * 64, b"short"])
def test_withdraw_with_no_or_garbled_signature(sg_with_pod_a, signature):
    sg = sg_with_pod_a
    request = withdrawal()
    request.signature = signature
    assert denied(lambda: sg.withdraw(request)).details().startswith("bad signature:")
    assert_refusal_recorded(sg, BAD_SIGNATURE)
    assert_pod_a_untouched_and_still_served(sg)


def test_replayed_withdraw(sg_with_pod_a):
    sg = sg_with_pod_a
    captured = withdrawal()  # pod A withdraws /A/1, someone records it ...
    assert sg.withdraw(captured) == ["/A/1"]
    assert sg.announce().results[0].accepted  # ... pod A comes back ...
    sg.clock.now += 10  # ... and the recording is played again, still within the window
    error = denied(lambda: sg.withdraw(captured))
    assert error.details().startswith("replayed: withdrawal by pod 'podA': nonce 6e31")
    assert_refusal_recorded(sg, REPLAYED)
    assert_pod_a_untouched_and_still_served(sg)


@pytest.mark.parametrize("offset", [-CLAIM_WINDOW_S - 1, CLAIM_WINDOW_S + 1])
def test_stale_withdraw(sg_with_pod_a, offset):
    sg = sg_with_pod_a
    error = denied(lambda: sg.withdraw(withdrawal(ts=NOW + offset)))
    assert error.details().startswith("stale: withdrawal by pod 'podA': timestamp")
    assert "accepted window is +/-30 s" in error.details()
    assert_refusal_recorded(sg, STALE)
    assert_pod_a_untouched_and_still_served(sg)


def test_withdraw_meant_for_another_sg(sg_with_pod_a):
    sg = sg_with_pod_a
    error = denied(lambda: sg.withdraw(withdrawal(sg="sg2")))
    assert error.details() == (
        "wrong SG: withdrawal by pod 'podA' names SG 'sg2', but this is SG sg1"
    )
    assert_refusal_recorded(sg, WRONG_GATEWAY)
    assert_pod_a_untouched_and_still_served(sg)


@pytest.mark.parametrize("via", [LINK_B, ROUTER_LINK])
def test_withdraw_over_another_link_than_the_lease(sg_with_pod_a, via):
    sg = sg_with_pod_a
    genuine = withdrawal()  # even pod A's own, valid signature: it came over the wrong link
    assert denied(lambda: sg.withdraw(genuine, via=via)).details().startswith("wrong interface:")
    assert_refusal_recorded(sg, WRONG_INTERFACE, f"Withdraw via {via} refused")
    assert_pod_a_untouched_and_still_served(sg)


def test_announce_over_another_link_than_the_lease(sg_with_pod_a):
    sg = sg_with_pod_a
    # valid claims by pod A (captured and replayed within the window, say), but from pod B's link
    error = denied(lambda: sg.announce(["/A/1", "/A/2"], via=LINK_B))
    assert error.details() == (
        "wrong interface: pod 'podA' holds its leases at SG sg1 via sg1-eth1, but this request "
        "came via sg1-eth2"
    )
    assert_refusal_recorded(sg, WRONG_INTERFACE, "Announce via sg1-eth2 refused")
    assert "/A/2" not in sg.advertised()
    assert_pod_a_untouched_and_still_served(sg)


def test_announce_from_outside_the_pod_links(sg):
    error = denied(lambda: sg.announce(via=ROUTER_LINK))
    assert "not a pod link of SG sg1 (sg1-eth1, sg1-eth2)" in error.details()
    assert sg.held() == [] and sg.advertised() == []


def test_announce_of_another_pods_claims_under_ones_own_name(sg_with_pod_a):
    sg = sg_with_pod_a
    # pod B forwards pod A's signed claim as its own: before, the lease went to pod B's link
    error = denied(lambda: sg.announce(["/A/1"], "podB", POD_A_KEY, LINK_B, claim_pod="podA"))
    assert "a pod announces only its own claims" in error.details()
    assert_refusal_recorded(sg, NOT_LEASE_HOLDER)
    assert all(h[1] != "podB" or h[0] != "/A/1" for h in sg.held())
    assert_pod_a_untouched_and_still_served(sg)


def test_the_pods_own_withdrawal_is_accepted(sg_with_pod_a):
    sg = sg_with_pod_a
    config = PodConfig("podA", LINK_A, SG, (InstanceConfig("/A/1"),), key_label="podA")
    pod = Pod(config, clock=sg.clock)
    assert sg.withdraw(pod.withdrawal([])) == ["/A/1"]  # what Pod.close sends
    assert sg.held() == [("/B/1", "podB", LINK_B, MAC_A, RAW_B)]


# ---------------------------------------------------------------- undecodable requests


def raw_call(channel: grpc.Channel, path: str, data: bytes) -> grpc.RpcError:
    call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as caught:
        call(data, timeout=5, metadata=((INTERFACE_KEY, LINK_A),))
    return caught.value


def assert_no_traceback(caplog) -> None:
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert "Traceback" not in record.getMessage()
        assert "Unexpected" not in record.getMessage()


@pytest.mark.parametrize("method", ["Announce", "Withdraw"])
def test_garbage_to_the_sg_is_invalid_argument_and_it_keeps_serving(sg_with_pod_a, method, caplog):
    sg = sg_with_pod_a
    caplog.set_level(logging.DEBUG)
    error = raw_call(sg.channel, f"/dmsc.v1.PodGateway/{method}", GARBAGE)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"not a valid {method}Request" in error.details()
    assert sg.counters()["pod_rx_undecodable"] == 1
    lines = [r for r in caplog.records if "undecodable request" in r.getMessage()]
    assert len(lines) == 1 and f"/dmsc.v1.PodGateway/{method}" in lines[0].getMessage()
    assert_no_traceback(caplog)
    assert_pod_a_untouched_and_still_served(sg)


def test_garbage_to_the_spa_is_invalid_argument_and_it_keeps_serving(caplog):
    caplog.set_level(logging.DEBUG)
    spa = SpaAuthority(parse_policy(POLICY), SPA_KEY)
    server, port = start_server(spa, "127.0.0.1:0", clock=lambda: NOW)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            path = "/dmsc.v1.PrefixAuthentication/Authenticate"
            error = raw_call(channel, path, GARBAGE)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "not a valid AuthRequest" in error.details()
            bad_utf8 = b"\x12\x02\xff\xfe"  # sg_node_id that is not UTF-8
            assert raw_call(channel, path, bad_utf8).code() == grpc.StatusCode.INVALID_ARGUMENT
        with SpaClient(f"127.0.0.1:{port}", timeout_s=5) as client:
            claim = sign_claim(POD_A_KEY, "/A/1", "podA", SG, NOW)
            reply = client.authenticate(dmsc_pb2.AuthRequest(claim=claim, sg_node_id=SG))
        assert reply.accepted and reply.pod_public_key == RAW_A
        assert spa.counters[UNDECODABLE] == 2
        lines = [r for r in caplog.records if "undecodable request" in r.getMessage()]
        assert len(lines) == 2
        assert_no_traceback(caplog)
    finally:
        server.stop(None).wait()
