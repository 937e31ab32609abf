"""The SPA's decision on one request (dmsc.spa.authority), every path, no network."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmsc.names import NameRegistry, ServiceName, component_field, name_prefix
from dmsc.proto import dmsc_pb2
from dmsc.spa.authority import ACCEPTED, UNDECODABLE, SpaAuthority
from dmsc.spa.claims import AttestationVerifier, open_attestation, sign_claim, sign_prefix_claim
from dmsc.spa.keys import private_key_from_seed, public_key_to_text, raw_public_bytes
from dmsc.spa.policy import parse_policy

NOW = 1_700_000_000.0
WINDOW = 30.0
VALIDITY = 600.0
SPA_KEY = private_key_from_seed(b"\x53" * 32)
POD1_KEY = private_key_from_seed(b"\x01" * 32)
POD2_KEY = private_key_from_seed(b"\x02" * 32)
STRANGER_KEY = private_key_from_seed(b"\x66" * 32)
R = dmsc_pb2.RejectCode


def make_policy():
    return parse_policy(
        {
            "attestation_validity_s": VALIDITY,
            "claim_window_s": WINDOW,
            "pods": [
                {
                    "pod_id": "pod1",
                    "public_key": public_key_to_text(POD1_KEY.public_key()),
                    "allowed": ["/A", "/A/*"],
                },
                {
                    "pod_id": "pod2",
                    "public_key": public_key_to_text(POD2_KEY.public_key()),
                    "allowed": ["/A", "/A/*", "/B/7"],
                },
            ],
        }
    )


@pytest.fixture
def spa() -> SpaAuthority:
    return SpaAuthority(make_policy(), SPA_KEY)


def request(
    name="/A/1", pod="pod1", key=POD1_KEY, claim_sg="sg1", sg="sg1", ts=NOW
) -> dmsc_pb2.AuthRequest:
    return dmsc_pb2.AuthRequest(claim=sign_claim(key, name, pod, claim_sg, ts), sg_node_id=sg)


def assert_rejected(reply: dmsc_pb2.AuthReply, code: int, *fragments: str) -> None:
    assert not reply.accepted, reply
    assert reply.code == code, (R.Name(reply.code), reply.reason)
    assert not reply.HasField("attestation")
    for fragment in fragments:
        assert fragment in reply.reason, (fragment, reply.reason)


# ---------------------------------------------------------------- accept


def test_accept_returns_an_attestation_every_node_can_verify(spa):
    reply = spa.authenticate(request("/A/1"), NOW)
    assert reply.accepted and reply.code == R.REJECT_UNSPECIFIED
    assert "pod1" in reply.reason and "/A/1" in reply.reason
    verifier = AttestationVerifier.from_public_keys([spa.public_key])
    assert verifier.verify(reply.attestation, "/A/1", "sg1", NOW + 1) == NOW + VALIDITY
    body = open_attestation(reply.attestation)
    assert (body.pod_id, body.issued_at, body.spa_key_id) == ("pod1", NOW, spa.key_id)
    assert spa.counters[ACCEPTED] == 1
    assert "/A/1" in spa.registry


def test_accept_tells_the_sg_the_key_of_the_pod_that_signed():
    spa = SpaAuthority(make_policy(), SPA_KEY)
    first = spa.authenticate(request("/A/1", pod="pod1", key=POD1_KEY), NOW)
    second = spa.authenticate(request("/A/1", pod="pod2", key=POD2_KEY), NOW)
    assert first.pod_public_key == raw_public_bytes(POD1_KEY.public_key())
    assert second.pod_public_key == raw_public_bytes(POD2_KEY.public_key())


def test_reject_tells_no_key(spa):
    assert spa.authenticate(request("/C/1"), NOW).pod_public_key == b""


def test_claim_within_the_window_either_side_is_accepted(spa):
    assert spa.authenticate(request("/A/1", ts=NOW - WINDOW), NOW).accepted
    assert spa.authenticate(request("/A/2", ts=NOW + WINDOW), NOW).accepted


def test_renewal_of_an_owned_name_is_accepted(spa):
    first = spa.authenticate(request("/A/1"), NOW)
    later = NOW + 300
    second = spa.authenticate(request("/A/1", ts=later), later)
    assert first.accepted and second.accepted
    assert open_attestation(second.attestation).expires_at == later + VALIDITY
    assert spa.counters[ACCEPTED] == 2 and len(spa.registry) == 2  # /A and /A/1


def test_the_service_name_is_shared_by_the_pods_hosting_it(spa):
    """/A is anycast: several pods may own it; this is not a collision."""
    assert spa.authenticate(request("/A", pod="pod1", key=POD1_KEY), NOW).accepted
    other = request("/A", pod="pod2", key=POD2_KEY, sg="sg2", claim_sg="sg2")
    assert spa.authenticate(other, NOW).accepted
    assert spa.counters[ACCEPTED] == 2


# ---------------------------------------------------------------- each reject code


@pytest.mark.parametrize(
    ("req", "reason"),
    [
        (dmsc_pb2.AuthRequest(sg_node_id="sg1"), "carries no claim"),
        (
            dmsc_pb2.AuthRequest(claim=dmsc_pb2.SignedClaim(claim=b"\xff\x00"), sg_node_id="sg1"),
            "does not decode",
        ),
        (
            dmsc_pb2.AuthRequest(
                claim=dmsc_pb2.SignedClaim(claim=b"\x0a\x02\xff\xfe"), sg_node_id="sg1"
            ),
            "does not decode",
        ),
        (request(sg=""), "names no SG"),
    ],
)
def test_malformed_request(spa, req, reason):
    assert_rejected(spa.authenticate(req, NOW), R.REJECT_MALFORMED, reason)


@pytest.mark.parametrize("name", ["A/1", "/A//1", "/A/1/", "/", "", "/a b", "/1/2/3/4/5"])
def test_bad_name(spa, name):
    assert_rejected(spa.authenticate(request(name), NOW), R.REJECT_BAD_NAME, "pod1", repr(name))


def test_wrong_gateway(spa):
    reply = spa.authenticate(request("/A/1", claim_sg="sg1", sg="sg9"), NOW)
    assert_rejected(reply, R.REJECT_WRONG_GATEWAY, "pod1", "/A/1", "'sg1'", "'sg9'")


def test_unknown_pod(spa):
    reply = spa.authenticate(request("/A/1", pod="ghost", key=STRANGER_KEY), NOW)
    assert_rejected(reply, R.REJECT_UNKNOWN_POD, "'ghost'", "/A/1", "no such pod in the SPA policy")


def test_bad_signature_from_another_key(spa):
    reply = spa.authenticate(request("/A/1", pod="pod1", key=POD2_KEY), NOW)
    assert_rejected(reply, R.REJECT_BAD_SIGNATURE, "pod1", "/A/1", "not signed")


def test_bad_signature_on_a_tampered_claim(spa):
    req = request("/A/1")
    req.claim.signature = bytes(64)
    assert_rejected(spa.authenticate(req, NOW), R.REJECT_BAD_SIGNATURE, "pod1")


@pytest.mark.parametrize("timestamp", [NOW - WINDOW - 0.001, NOW + WINDOW + 0.001, 0.0])
def test_stale_claim(spa, timestamp):
    reply = spa.authenticate(request("/A/1", ts=timestamp), NOW)
    assert_rejected(reply, R.REJECT_STALE_CLAIM, "pod1", "/A/1", "window")


@pytest.mark.parametrize("timestamp", [math.nan, math.inf, -math.inf])
def test_non_finite_timestamp_is_stale_not_accepted(spa, timestamp):
    assert_rejected(spa.authenticate(request("/A/1", ts=timestamp), NOW), R.REJECT_STALE_CLAIM)


@pytest.mark.parametrize("name", ["/B/1", "/B", "/A/1/2", "/C"])
def test_not_allowed(spa, name):
    reply = spa.authenticate(request(name), NOW)
    assert_rejected(reply, R.REJECT_NOT_ALLOWED, "pod1", name, "/A, /A/*")
    assert name not in spa.registry


def colliding_components() -> tuple[str, str]:
    """Two distinct components with the same 16-bit field, found by brute force."""
    seen: dict[int, str] = {}
    for i in itertools.count():
        component = f"svc{i}"
        field = component_field(component)
        if field in seen:
            return seen[field], component
        seen[field] = component
    raise AssertionError("unreachable")


def test_collision(spa):
    first, second = colliding_components()
    name1, name2 = f"/A/{first}", f"/A/{second}"
    assert name1 != name2 and name_prefix(name1) == name_prefix(name2)  # verified, not assumed
    assert spa.authenticate(request(name1), NOW).accepted
    reply = spa.authenticate(request(name2, pod="pod2", key=POD2_KEY, sg="s2", claim_sg="s2"), NOW)
    assert_rejected(reply, R.REJECT_COLLISION, "pod2", name2, f"already held by {name1}")
    assert spa.registry.owner_of(name2) == ServiceName.parse(name1)
    # The owner may still renew.
    assert spa.authenticate(request(name1, ts=NOW + 1), NOW + 1).accepted


def test_collision_of_an_ancestor_is_caught_in_a_shared_registry():
    first, second = colliding_components()
    registry = NameRegistry()
    registry.register(f"/{first}")
    policy = parse_policy(
        {
            "pods": [
                {
                    "pod_id": "pod1",
                    "public_key": public_key_to_text(POD1_KEY.public_key()),
                    "allowed": [f"/{second}/*"],
                }
            ]
        }
    )
    spa = SpaAuthority(policy, SPA_KEY, registry=registry)
    assert spa.registry is registry
    reply = spa.authenticate(request(f"/{second}/1"), NOW)
    assert_rejected(reply, R.REJECT_COLLISION, f"/{second}", f"already held by /{first}")


# ---------------------------------------------------------------- order of the checks


@pytest.mark.parametrize(
    ("req", "expected"),
    [
        # bad name wins over wrong gateway, unknown pod, bad signature, staleness
        (request("bad", pod="ghost", key=STRANGER_KEY, sg="x", ts=0.0), R.REJECT_BAD_NAME),
        # wrong gateway wins over unknown pod
        (request("/A/1", pod="ghost", key=STRANGER_KEY, sg="x"), R.REJECT_WRONG_GATEWAY),
        # unknown pod wins over bad signature and staleness
        (request("/A/1", pod="ghost", key=STRANGER_KEY, ts=0.0), R.REJECT_UNKNOWN_POD),
        # bad signature wins over staleness and policy
        (request("/Z/1", key=STRANGER_KEY, ts=0.0), R.REJECT_BAD_SIGNATURE),
        # staleness wins over policy
        (request("/Z/1", ts=0.0), R.REJECT_STALE_CLAIM),
    ],
)
def test_checks_run_in_the_documented_order(spa, req, expected):
    assert spa.authenticate(req, NOW).code == expected


def test_counters_count_every_outcome(spa):
    assert set(spa.counters) == {ACCEPTED, UNDECODABLE, *R.keys()}
    assert not any(spa.counters.values())
    spa.authenticate(request("/A/1"), NOW)
    spa.authenticate(request("/A/1"), NOW)
    spa.authenticate(request("/C/1"), NOW)
    spa.authenticate(dmsc_pb2.AuthRequest(), NOW)
    assert spa.counters[ACCEPTED] == 2
    assert spa.counters["REJECT_NOT_ALLOWED"] == 1
    assert spa.counters["REJECT_MALFORMED"] == 1
    assert sum(spa.counters.values()) == 4


@pytest.mark.parametrize(
    ("req", "code"),
    [
        (request("/A/1", pod="p" * 5000, key=STRANGER_KEY), R.REJECT_UNKNOWN_POD),
        (request("/" + "x" * 100_000), R.REJECT_BAD_NAME),
        (request("/A/1", ts=1e300), R.REJECT_STALE_CLAIM),
        (request("/A/1", claim_sg="s" * 5000, sg="t" * 5000), R.REJECT_WRONG_GATEWAY),
    ],
)
def test_reasons_stay_short_whatever_the_request_carries(spa, req, code):
    reply = spa.authenticate(req, NOW)
    assert reply.code == code
    assert len(reply.reason) <= 400


@settings(max_examples=300, deadline=None)
@given(claim=st.binary(max_size=200), signature=st.binary(max_size=80), sg=st.text(max_size=8))
def test_random_requests_are_rejected_never_raise(claim, signature, sg):
    spa = SpaAuthority(make_policy(), SPA_KEY)
    req = dmsc_pb2.AuthRequest(
        claim=dmsc_pb2.SignedClaim(claim=claim, signature=signature), sg_node_id=sg
    )
    reply = spa.authenticate(req, NOW)
    assert not reply.accepted and reply.code != R.REJECT_UNSPECIFIED and reply.reason


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(max_size=30),
    pod=st.sampled_from(["pod1", "pod2", "ghost", ""]),
    timestamp=st.floats(allow_nan=True, allow_infinity=True),
)
def test_validly_signed_odd_claims_get_a_decision_never_an_exception(name, pod, timestamp):
    spa = SpaAuthority(make_policy(), SPA_KEY)
    claim = dmsc_pb2.PrefixClaim(name=name, pod_id=pod, sg_node_id="sg1", timestamp=timestamp)
    reply = spa.authenticate(
        dmsc_pb2.AuthRequest(claim=sign_prefix_claim(POD1_KEY, claim), sg_node_id="sg1"), NOW
    )
    if reply.accepted:
        assert pod == "pod1" and abs(timestamp - NOW) <= WINDOW
        assert make_policy().allows("pod1", name)
