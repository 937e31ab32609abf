"""Keys, signed prefix claims and attestations (dmsc.spa.keys, dmsc.spa.claims)."""

from __future__ import annotations

import argparse
import base64
import math
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmsc.cli import spa as spa_cli
from dmsc.errors import AuthenticationError, ConfigError, DecodeError
from dmsc.proto import dmsc_pb2
from dmsc.spa.claims import (
    CLOCK_SKEW_S,
    AttestationVerifier,
    issue_attestation,
    open_attestation,
    open_claim,
    sign_claim,
    sign_prefix_claim,
    verify_claim_signature,
)
from dmsc.spa.keys import (
    demo_private_key,
    generate_private_key,
    key_id,
    load_private_key,
    private_key_from_seed,
    public_key_from_text,
    public_key_to_text,
    raw_public_bytes,
    save_private_key,
)

NOW = 1_700_000_000.0
VALIDITY = 600.0
POD_KEY = private_key_from_seed(bytes(range(32)))
SPA_KEY = private_key_from_seed(bytes([7]) * 32)
OTHER_KEY = private_key_from_seed(bytes([9]) * 32)


@pytest.fixture
def verifier() -> AttestationVerifier:
    return AttestationVerifier.from_public_keys([SPA_KEY.public_key()])


def attest(key=SPA_KEY, name="/B/4", sg="sg1", now=NOW, validity=VALIDITY):
    return issue_attestation(key, name, "pod1", sg, now, validity)


def flip_bit(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


# ---------------------------------------------------------------- keys


def test_seed_gives_the_same_key_every_time():
    first, second = private_key_from_seed(b"\x01" * 32), private_key_from_seed(b"\x01" * 32)
    assert raw_public_bytes(first.public_key()) == raw_public_bytes(second.public_key())
    assert raw_public_bytes(first.public_key()) != raw_public_bytes(SPA_KEY.public_key())


@pytest.mark.parametrize("seed", [b"", b"\x00" * 31, b"\x00" * 33, "0" * 32])
def test_seed_of_wrong_size_or_type_is_refused(seed):
    with pytest.raises(ConfigError, match="32 bytes"):
        private_key_from_seed(seed)


def test_key_id_is_16_hex_digits_and_distinguishes_keys():
    ident = key_id(SPA_KEY.public_key())
    assert len(ident) == 16 and int(ident, 16) >= 0
    assert ident == key_id(private_key_from_seed(bytes([7]) * 32).public_key())
    assert ident != key_id(OTHER_KEY.public_key())


def test_public_key_text_round_trip():
    text = public_key_to_text(POD_KEY.public_key())
    assert len(base64.b64decode(text)) == 32
    assert raw_public_bytes(public_key_from_text(text)) == raw_public_bytes(POD_KEY.public_key())
    assert raw_public_bytes(public_key_from_text(f"  {text}\n")) == raw_public_bytes(
        POD_KEY.public_key()
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not base64!", "not valid base64"),
        ("abc", "not valid base64"),
        (base64.b64encode(b"x" * 31).decode(), "31 bytes"),
        (base64.b64encode(b"x" * 64).decode(), "64 bytes"),
        (b"bytes", "base64 text"),
    ],
)
def test_bad_public_key_text_is_a_config_error(text, reason):
    with pytest.raises(ConfigError, match=reason):
        public_key_from_text(text)


def test_private_key_file_round_trip_with_mode_0600(tmp_path):
    path = tmp_path / "pod.pem"
    path.write_text("old")
    path.chmod(0o644)
    save_private_key(POD_KEY, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    loaded = load_private_key(path)
    assert raw_public_bytes(loaded.public_key()) == raw_public_bytes(POD_KEY.public_key())
    assert [p.name for p in tmp_path.iterdir()] == ["pod.pem"]  # no temporary left behind


def test_load_private_key_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match=r"missing\.pem: cannot read"):
        load_private_key(missing)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello")
    with pytest.raises(ConfigError, match=r"garbage\.pem: not an unencrypted PEM"):
        load_private_key(garbage)


def test_load_private_key_refuses_other_key_types(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "ec.pem"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    with pytest.raises(ConfigError, match=r"ec\.pem: .*not an Ed25519"):
        load_private_key(path)


def test_save_private_key_into_missing_directory_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nodir/k\.pem: cannot write"):
        save_private_key(POD_KEY, tmp_path / "nodir" / "k.pem")


def test_generated_keys_differ_and_demo_keys_are_stable():
    assert key_id(generate_private_key().public_key()) != key_id(
        generate_private_key().public_key()
    )
    assert key_id(demo_private_key("pod1").public_key()) == key_id(
        demo_private_key("pod1").public_key()
    )
    assert key_id(demo_private_key("pod1").public_key()) != key_id(
        demo_private_key("pod2").public_key()
    )


# ---------------------------------------------------------------- claims


def test_claim_sign_open_verify_round_trip():
    signed = sign_claim(POD_KEY, "/B/4", "pod1", "sg1", NOW, nonce=b"n0")
    claim = open_claim(signed)
    assert (claim.name, claim.pod_id, claim.sg_node_id, claim.timestamp, claim.nonce) == (
        "/B/4",
        "pod1",
        "sg1",
        NOW,
        b"n0",
    )
    assert verify_claim_signature(signed, POD_KEY.public_key())
    assert not verify_claim_signature(signed, OTHER_KEY.public_key())


def test_tampered_claim_bytes_fail_verification():
    signed = sign_claim(POD_KEY, "/B/4", "pod1", "sg1", NOW)
    tampered = dmsc_pb2.SignedClaim(claim=flip_bit(signed.claim, 3), signature=signed.signature)
    assert not verify_claim_signature(tampered, POD_KEY.public_key())


def test_claim_re_signed_with_another_name_fails_under_the_original_signature():
    signed = sign_claim(POD_KEY, "/B/4", "pod1", "sg1", NOW)
    claim = open_claim(signed)
    claim.name = "/B/5"
    forged = dmsc_pb2.SignedClaim(claim=claim.SerializeToString(), signature=signed.signature)
    assert not verify_claim_signature(forged, POD_KEY.public_key())


@pytest.mark.parametrize("signature", [b"", b"\x00" * 64, b"\x00" * 63, b"\x00" * 65])
def test_bad_signature_bytes_fail_verification(signature):
    signed = sign_claim(POD_KEY, "/B/4", "pod1", "sg1", NOW)
    assert not verify_claim_signature(
        dmsc_pb2.SignedClaim(claim=signed.claim, signature=signature), POD_KEY.public_key()
    )


def test_tampered_signature_fails_verification():
    signed = sign_claim(POD_KEY, "/B/4", "pod1", "sg1", NOW)
    for index in (0, 31, 63):
        tampered = dmsc_pb2.SignedClaim(
            claim=signed.claim, signature=flip_bit(signed.signature, index)
        )
        assert not verify_claim_signature(tampered, POD_KEY.public_key())


def test_open_claim_on_garbage_is_a_decode_error():
    with pytest.raises(DecodeError, match="prefix claim"):
        open_claim(dmsc_pb2.SignedClaim(claim=b"\xff\xff\xff"))


def test_sign_prefix_claim_signs_exactly_the_carried_bytes():
    claim = dmsc_pb2.PrefixClaim(name="not a name", pod_id="p", sg_node_id="s", timestamp=NOW)
    signed = sign_prefix_claim(POD_KEY, claim)
    POD_KEY.public_key().verify(signed.signature, signed.claim)  # raises if wrong
    assert open_claim(signed) == claim


@settings(max_examples=200, deadline=None)
@given(claim=st.binary(max_size=200), signature=st.binary(max_size=80))
def test_random_claim_bytes_never_verify_and_decode_only_to_decode_error(claim, signature):
    signed = dmsc_pb2.SignedClaim(claim=claim, signature=signature)
    assert not verify_claim_signature(signed, POD_KEY.public_key())
    try:
        decoded = open_claim(signed)
    except DecodeError:
        return
    assert isinstance(decoded, dmsc_pb2.PrefixClaim)


# ---------------------------------------------------------------- attestations


def test_good_attestation_verifies_and_returns_expiry(verifier):
    attestation = attest()
    assert verifier.verify(attestation, "/B/4", "sg1", NOW + 1) == NOW + VALIDITY
    body = verifier.verify_body(attestation, "/B/4", "sg1", NOW)
    assert (body.pod_id, body.spa_key_id) == ("pod1", key_id(SPA_KEY.public_key()))
    assert open_attestation(attestation) == body


def test_attestation_signed_by_a_wrong_key_is_refused(verifier):
    genuine = attest()
    # Same body (naming the trusted key id) but signed by an untrusted key.
    forged = dmsc_pb2.Attestation(body=genuine.body, signature=OTHER_KEY.sign(genuine.body))
    with pytest.raises(AuthenticationError, match="bad signature"):
        verifier.verify(forged, "/B/4", "sg1", NOW)


def test_attestation_with_tampered_body_is_refused(verifier):
    genuine = attest()
    body = open_attestation(genuine)
    body.expires_at += 10_000
    tampered = dmsc_pb2.Attestation(body=body.SerializeToString(), signature=genuine.signature)
    with pytest.raises(AuthenticationError, match="bad signature"):
        verifier.verify(tampered, "/B/4", "sg1", NOW)


def test_attestation_from_an_unknown_spa_key_is_refused(verifier):
    with pytest.raises(AuthenticationError, match="not a trust anchor"):
        verifier.verify(attest(key=OTHER_KEY), "/B/4", "sg1", NOW)


def test_attestation_for_another_name_is_refused(verifier):
    with pytest.raises(AuthenticationError, match=r"is for '/B/4', not for '/B/5'"):
        verifier.verify(attest(name="/B/4"), "/B/5", "sg1", NOW)


def test_attestation_replayed_by_a_rogue_node_is_refused(verifier):
    with pytest.raises(AuthenticationError, match=r"binds SG 'sg1', but 'rogue'.*replayed"):
        verifier.verify(attest(sg="sg1"), "/B/4", "rogue", NOW)


def test_attestation_expires_at_expires_at(verifier):
    attestation = attest()
    assert verifier.verify(attestation, "/B/4", "sg1", NOW + VALIDITY - 0.001)
    with pytest.raises(AuthenticationError, match="expired"):
        verifier.verify(attestation, "/B/4", "sg1", NOW + VALIDITY)


def test_attestation_from_the_future_is_refused_beyond_the_skew(verifier):
    attestation = attest(now=NOW + 60)
    with pytest.raises(AuthenticationError, match="not valid yet"):
        verifier.verify(attestation, "/B/4", "sg1", NOW)
    small_skew = attest(now=NOW + CLOCK_SKEW_S / 2)
    assert verifier.verify(small_skew, "/B/4", "sg1", NOW) == NOW + CLOCK_SKEW_S / 2 + VALIDITY


@pytest.mark.parametrize(
    ("issued", "expires"), [(math.nan, NOW + 1), (NOW, math.nan), (NOW, math.inf), (NOW, NOW - 1)]
)
def test_attestation_with_an_impossible_validity_is_refused(verifier, issued, expires):
    body = dmsc_pb2.AttestationBody(
        name="/B/4",
        pod_id="pod1",
        sg_node_id="sg1",
        issued_at=issued,
        expires_at=expires,
        spa_key_id=key_id(SPA_KEY.public_key()),
    )
    data = body.SerializeToString()
    attestation = dmsc_pb2.Attestation(body=data, signature=SPA_KEY.sign(data))
    with pytest.raises(AuthenticationError, match="invalid validity"):
        verifier.verify(attestation, "/B/4", "sg1", NOW)


@pytest.mark.parametrize("body", [b"\xff", b"\x0a\x05ab", b"\x0a\x02\xff\xfe", b""])
def test_garbage_attestation_body_is_an_authentication_error(verifier, body):
    with pytest.raises(AuthenticationError):
        verifier.verify(dmsc_pb2.Attestation(body=body, signature=b"x" * 64), "/B/4", "sg1", NOW)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300), signature=st.binary(max_size=100))
def test_random_attestation_bytes_only_ever_raise_authentication_error(body, signature):
    verifier = AttestationVerifier.from_public_keys([SPA_KEY.public_key()])
    with pytest.raises(AuthenticationError):
        verifier.verify(dmsc_pb2.Attestation(body=body, signature=signature), "/B/4", "sg1", NOW)


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(max_size=20),
    sg=st.text(max_size=10),
    issued=st.floats(allow_nan=True, allow_infinity=True),
    expires=st.floats(allow_nan=True, allow_infinity=True),
)
def test_any_signed_body_verifies_or_raises_authentication_error(name, sg, issued, expires):
    """Even a genuinely signed body with odd fields never makes verify raise anything else."""
    body = dmsc_pb2.AttestationBody(
        name=name,
        sg_node_id=sg,
        issued_at=issued,
        expires_at=expires,
        spa_key_id=key_id(SPA_KEY.public_key()),
    )
    data = body.SerializeToString()
    verifier = AttestationVerifier.from_public_keys([SPA_KEY.public_key()])
    try:
        expiry = verifier.verify(
            dmsc_pb2.Attestation(body=data, signature=SPA_KEY.sign(data)), name, sg, NOW
        )
    except AuthenticationError:
        return
    assert math.isfinite(expiry) and expiry > NOW and issued <= NOW + CLOCK_SKEW_S


def test_verifier_refuses_a_trust_anchor_under_the_wrong_id():
    with pytest.raises(ConfigError, match="key id"):
        AttestationVerifier({"spa-1": SPA_KEY.public_key()})
    anchors = {key_id(SPA_KEY.public_key()): SPA_KEY.public_key()}
    assert set(AttestationVerifier(anchors).trust_anchors) == set(anchors)


def test_verifier_with_several_spas_accepts_each():
    verifier = AttestationVerifier.from_public_keys([SPA_KEY.public_key(), OTHER_KEY.public_key()])
    assert verifier.verify(attest(key=SPA_KEY), "/B/4", "sg1", NOW) == NOW + VALIDITY
    assert verifier.verify(attest(key=OTHER_KEY), "/B/4", "sg1", NOW) == NOW + VALIDITY


@pytest.mark.parametrize("validity", [0, -1, math.nan, math.inf])
def test_issue_attestation_refuses_a_non_positive_validity(validity):
    with pytest.raises(ConfigError, match="validity"):
        attest(validity=validity)


# ---------------------------------------------------------------- CLI: keygen, pubkey, sign-claim


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="dmsc")
    spa_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_keygen_with_seed_and_pubkey(tmp_path, capsys):
    path = tmp_path / "spa.pem"
    assert run_cli("spa", "keygen", "--out", str(path), "--seed", "07" * 32) == 0
    expected = f"public_key: {public_key_to_text(SPA_KEY.public_key())}"
    assert expected in capsys.readouterr().out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert run_cli("spa", "pubkey", str(path)) == 0
    out = capsys.readouterr().out
    assert expected in out and f"key_id: {key_id(SPA_KEY.public_key())}" in out


def test_cli_keygen_refuses_to_overwrite_and_bad_seeds(tmp_path):
    path = tmp_path / "spa.pem"
    run_cli("spa", "keygen", "--out", str(path))
    with pytest.raises(ConfigError, match="already exists"):
        run_cli("spa", "keygen", "--out", str(path))
    assert run_cli("spa", "keygen", "--out", str(path), "--force") == 0
    with pytest.raises(ConfigError, match="not hexadecimal"):
        run_cli("spa", "keygen", "--out", str(tmp_path / "a.pem"), "--seed", "zz")
    with pytest.raises(ConfigError, match="2 bytes"):
        run_cli("spa", "keygen", "--out", str(tmp_path / "a.pem"), "--seed", "abcd")


def test_cli_sign_claim_prints_a_verifiable_claim(tmp_path, capsys):
    path = tmp_path / "pod.pem"
    save_private_key(POD_KEY, path)
    run_cli("spa", "sign-claim", "--pod-key", str(path), "--pod-id", "pod1", "--sg", "sg1", "/B/4")
    signed = dmsc_pb2.SignedClaim.FromString(base64.b64decode(capsys.readouterr().out))
    claim = open_claim(signed)
    assert (claim.name, claim.pod_id, claim.sg_node_id) == ("/B/4", "pod1", "sg1")
    assert len(claim.nonce) == 16
    assert verify_claim_signature(signed, POD_KEY.public_key())
