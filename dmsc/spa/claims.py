"""Prefix claims (pod -> SPA), attestations (SPA -> every node) and withdrawals (pod -> SG),
signed with Ed25519.

A claim is what a pod says: "I, pod P, behind SG S, own name N, at time T". An attestation is what
the SPA says after checking it: "N belongs to pod P behind SG S from ``issued_at`` until
``expires_at``", signed with an SPA key that every node trusts. Both travel as the exact bytes that
were signed, so verifying never depends on re-encoding a message. A withdrawal ("pod P gives up
names N at SG S, time T, nonce X") is signed with the same pod key over the request serialized
with its signature empty, as the proto says.

Claims and withdrawals share one freshness rule (:func:`freshness_problem`, window
:data:`CLAIM_WINDOW_S`): the SPA applies it to claims, the SG to withdrawals.

Nothing here reads a clock: ``now`` is passed in (epoch seconds on real nodes, virtual time in
simulations), which keeps expiry testable and deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from google.protobuf.message import DecodeError as ProtobufDecodeError

from dmsc.errors import AuthenticationError, ConfigError, DecodeError
from dmsc.names import ServiceName
from dmsc.proto import dmsc_pb2
from dmsc.spa.keys import SIGNATURE_BYTES, key_id

#: How far in the future an attestation's ``issued_at`` may lie (clocks of SPA and node differ).
CLOCK_SKEW_S = 5.0
#: How far a pod's signed timestamp may be from the receiver's clock, either way: bounds how long
#: a captured claim (at the SPA) or withdrawal (at the SG) can be replayed. The SPA policy may
#: set its own ``claim_window_s``; this is its default and the SG's window.
CLAIM_WINDOW_S = 30.0
#: Longest untrusted text quoted in a reason, so a request cannot flood replies and logs.
QUOTE_LIMIT = 64


def quoted(text: str, limit: int = QUOTE_LIMIT) -> str:
    """Quote untrusted text for a reason message, cut short."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def format_time(seconds: float) -> str:
    """A timestamp for a reason: millisecond epoch time, or short form when absurd."""
    return f"{seconds:.3f}" if abs(seconds) < 1e12 else f"{seconds:g}"


def freshness_problem(timestamp: float, now: float, window_s: float) -> str | None:
    """None when ``timestamp`` is within ``window_s`` of ``now`` either way; otherwise how far
    off it is (``"31.000 s old"``, ``"40.000 s in the future"``)."""
    age = now - timestamp
    # Written so that a NaN or infinite timestamp fails too (NaN <= window is False).
    if math.isfinite(age) and abs(age) <= window_s:
        return None
    return f"{format_time(abs(age))} s {'old' if age >= 0 else 'in the future'}"


def sign_prefix_claim(
    pod_key: Ed25519PrivateKey, claim: dmsc_pb2.PrefixClaim
) -> dmsc_pb2.SignedClaim:
    """Serialize ``claim`` once and sign exactly those bytes."""
    data = claim.SerializeToString()
    return dmsc_pb2.SignedClaim(claim=data, signature=pod_key.sign(data))


def sign_claim(
    pod_key: Ed25519PrivateKey,
    name: str | ServiceName,
    pod_id: str,
    sg_node_id: str,
    now: float,
    nonce: bytes = b"",
) -> dmsc_pb2.SignedClaim:
    """A pod's signed claim on ``name``.

    The name is not validated here: the SPA is the authority on names, and being able to sign a
    bad one lets tests and experiments exercise its rejections.
    """
    claim = dmsc_pb2.PrefixClaim(
        name=str(name), pod_id=pod_id, sg_node_id=sg_node_id, timestamp=now, nonce=nonce
    )
    return sign_prefix_claim(pod_key, claim)


def open_claim(signed: dmsc_pb2.SignedClaim) -> dmsc_pb2.PrefixClaim:
    """Decode the claim bytes (no signature check); bad bytes raise :class:`DecodeError`."""
    try:
        return dmsc_pb2.PrefixClaim.FromString(signed.claim)
    except ProtobufDecodeError as error:
        raise DecodeError(
            f"prefix claim ({len(signed.claim)} bytes) does not decode: {error}"
        ) from None


def _signature_valid(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def verify_claim_signature(signed: dmsc_pb2.SignedClaim, public_key: Ed25519PublicKey) -> bool:
    """True when ``signed.signature`` is ``public_key``'s signature over the claim bytes."""
    return _signature_valid(public_key, signed.signature, signed.claim)


def withdrawal_signed_bytes(request: dmsc_pb2.WithdrawRequest) -> bytes:
    """What the pod signs: the request serialized with ``signature`` empty."""
    unsigned = dmsc_pb2.WithdrawRequest()
    unsigned.CopyFrom(request)
    unsigned.ClearField("signature")
    return unsigned.SerializeToString()


def sign_withdrawal(
    pod_key: Ed25519PrivateKey,
    pod_id: str,
    names: Iterable[str],
    sg_node_id: str,
    now: float,
    nonce: bytes,
) -> dmsc_pb2.WithdrawRequest:
    """A pod's signed request to give up ``names`` at ``sg_node_id`` (all it holds if empty)."""
    request = dmsc_pb2.WithdrawRequest(
        pod_id=pod_id, names=list(names), sg_node_id=sg_node_id, timestamp=now, nonce=nonce
    )
    request.signature = pod_key.sign(withdrawal_signed_bytes(request))
    return request


def verify_withdrawal_signature(
    request: dmsc_pb2.WithdrawRequest, public_key: Ed25519PublicKey
) -> bool:
    """True when ``request.signature`` is ``public_key``'s signature over the request."""
    return _signature_valid(public_key, request.signature, withdrawal_signed_bytes(request))


def issue_attestation(
    spa_key: Ed25519PrivateKey,
    name: str | ServiceName,
    pod_id: str,
    sg_node_id: str,
    now: float,
    validity_s: float,
) -> dmsc_pb2.Attestation:
    """The SPA's signed statement that ``name`` belongs to ``pod_id`` behind ``sg_node_id``."""
    if not (math.isfinite(validity_s) and validity_s > 0):
        raise ConfigError(
            f"attestation validity must be a positive number of seconds, got {validity_s}"
        )
    body = dmsc_pb2.AttestationBody(
        name=str(name),
        pod_id=pod_id,
        sg_node_id=sg_node_id,
        issued_at=now,
        expires_at=now + validity_s,
        spa_key_id=key_id(spa_key.public_key()),
    )
    data = body.SerializeToString()
    return dmsc_pb2.Attestation(body=data, signature=spa_key.sign(data))


def open_attestation(attestation: dmsc_pb2.Attestation) -> dmsc_pb2.AttestationBody:
    """Decode the body bytes (no signature check); bad bytes raise :class:`DecodeError`."""
    try:
        return dmsc_pb2.AttestationBody.FromString(attestation.body)
    except ProtobufDecodeError as error:
        raise DecodeError(
            f"attestation body ({len(attestation.body)} bytes) does not decode: {error}"
        ) from None


class AttestationVerifier:
    """Checks attestations against the SPA public keys every node holds (its trust anchors)."""

    def __init__(
        self,
        trust_anchors: Mapping[str, Ed25519PublicKey],
        *,
        max_skew_s: float = CLOCK_SKEW_S,
    ) -> None:
        for anchor_id, public_key in trust_anchors.items():
            if key_id(public_key) != anchor_id:
                # Attestations name their key by key_id(); any other id could never match.
                raise ConfigError(
                    f"trust anchor listed as {anchor_id!r} has key id {key_id(public_key)!r}; "
                    "use AttestationVerifier.from_public_keys or dmsc.spa.keys.key_id"
                )
        self._anchors = MappingProxyType(dict(trust_anchors))
        self.max_skew_s = max_skew_s

    @classmethod
    def from_public_keys(
        cls, keys: Iterable[Ed25519PublicKey], *, max_skew_s: float = CLOCK_SKEW_S
    ) -> AttestationVerifier:
        return cls({key_id(key): key for key in keys}, max_skew_s=max_skew_s)

    @property
    def trust_anchors(self) -> Mapping[str, Ed25519PublicKey]:
        return self._anchors

    def verify(
        self,
        attestation: dmsc_pb2.Attestation,
        name: str | ServiceName,
        sg_node_id: str,
        now: float,
    ) -> float:
        """The attestation's ``expires_at`` if it lets ``sg_node_id`` advertise ``name`` at
        ``now``; :class:`AuthenticationError` saying why not otherwise."""
        return self.verify_body(attestation, name, sg_node_id, now).expires_at

    def verify_body(
        self,
        attestation: dmsc_pb2.Attestation,
        name: str | ServiceName,
        sg_node_id: str,
        now: float,
    ) -> dmsc_pb2.AttestationBody:
        """Like :meth:`verify`, returning the whole checked body (pod id, times, key id)."""
        name = str(name)
        body = self._authentic_body(attestation, name)
        if body.name != name:
            raise AuthenticationError(
                f"attestation is for {body.name!r}, not for {name!r} (SPA key {body.spa_key_id})"
            )
        if body.sg_node_id != sg_node_id:
            raise AuthenticationError(
                f"attestation of {name} binds SG {body.sg_node_id!r}, but {sg_node_id!r} "
                "advertises it: replayed by another node"
            )
        self._check_validity(body, now)
        return body

    def _authentic_body(
        self, attestation: dmsc_pb2.Attestation, name: str
    ) -> dmsc_pb2.AttestationBody:
        """Decode the body and check its signature before trusting any field of it."""
        try:
            body = open_attestation(attestation)
        except DecodeError as error:
            raise AuthenticationError(f"attestation offered for {name}: {error}") from None
        anchor = self._anchors.get(body.spa_key_id)
        if anchor is None:
            raise AuthenticationError(
                f"attestation offered for {name} names SPA key id {body.spa_key_id[:32]!r}, "
                f"which is not a trust anchor (trusted: {self._anchor_list()})"
            )
        if not _signature_valid(anchor, attestation.signature, attestation.body):
            raise AuthenticationError(
                f"attestation offered for {name}: bad signature for SPA key {body.spa_key_id}"
            )
        return body

    def _anchor_list(self) -> str:
        return ", ".join(sorted(self._anchors)) or "none"

    def _check_validity(self, body: dmsc_pb2.AttestationBody, now: float) -> None:
        issued, expires = body.issued_at, body.expires_at
        # NaN compares false with everything, so test finiteness before the window.
        if not (math.isfinite(issued) and math.isfinite(expires) and issued <= expires):
            raise AuthenticationError(
                f"attestation of {body.name} has an invalid validity period [{issued}, {expires}]"
            )
        if issued > now + self.max_skew_s:
            raise AuthenticationError(
                f"attestation of {body.name} is not valid yet: issued at {issued:.3f}, "
                f"{issued - now:.3f} s after now ({now:.3f}); clocks out of sync?"
            )
        if expires <= now:
            raise AuthenticationError(
                f"attestation of {body.name} expired at {expires:.3f}, {now - expires:.3f} s ago"
            )
