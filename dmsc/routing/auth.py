"""Who may speak the link-state protocol: enrolled routers, on keyed links.

Two checks, as secured IGPs make them:

- **Per link.** Every type 2 packet carries HMAC-SHA-256 under the routing domain's link key and
  a sequence number that only grows per sender (RFC 5310 for IS-IS, RFC 7166's authentication
  trailer for OSPFv3). Whoever lacks the key (a pod, a host plugged into a link) can neither form
  an adjacency nor inject or replay a packet.
- **Per originator.** Every LSA is signed with its originator's Ed25519 key and carries the
  certificate with which the domain's trust anchor (the operator's key) enrolled that key for
  that node id, a chain of one link as in NLSR's trust schema. A router that has the link key but
  no enrolment, or an enrolled one posing as another node, cannot get an LSA installed; nobody
  but the originator can purge an LSA before it ages out.

Both are computed over exact bytes where the bytes exist (the packet as received) and over
protobuf's deterministic serialization where a field changes in flight (an LSA's remaining
lifetime), so no canonical encoding beyond protobuf's own is needed. Nothing here reads a clock:
``now`` is passed in.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from google.protobuf.message import DecodeError as ProtobufDecodeError

from dmsc.proto import dmsc_pb2
from dmsc.spa.keys import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, key_id, raw_public_bytes

LINK_KEY_BYTES = 32  # HMAC-SHA-256 keys: RFC 2104 asks for at least the digest length
DIGEST_BYTES = 32
ROUTER_ROLES = ("sg", "sr")
#: verified LSA signatures remembered per node, so a flooded copy is checked once
SIGNATURE_CACHE_SIZE = 65_536
#: packets a sender's sequence may arrive out of order and still count (IPsec's anti-replay
#: window, RFC 4303 §3.4.3): links with jitter reorder, a replay is still caught
REPLAY_WINDOW = 64


class Refused(Exception):
    """A packet or LSA that fails authentication; the message says which check."""


# ---------------------------------------------------------------------- enrolment


def enrol_router(
    anchor: Ed25519PrivateKey,
    node_id: str,
    role: str,
    router_key: Ed25519PublicKey,
    now: float,
    lifetime_s: float,
) -> dmsc_pb2.RouterCertificate:
    """The trust anchor certifies ``router_key`` as the key of ``node_id``."""
    if role not in ROUTER_ROLES:
        raise ValueError(f"router {node_id}: role must be one of {ROUTER_ROLES}, not {role!r}")
    body = dmsc_pb2.RouterCertificateBody(
        node_id=node_id,
        role=role,
        public_key=raw_public_bytes(router_key),
        issued_at=now,
        expires_at=now + lifetime_s,
        anchor_key_id=key_id(anchor.public_key()),
    ).SerializeToString()
    return dmsc_pb2.RouterCertificate(body=body, signature=anchor.sign(body))


class CertificateChecker:
    """Checks enrolments against the domain's trust anchors; a good certificate is parsed once."""

    def __init__(self, anchors: Iterable[Ed25519PublicKey]) -> None:
        self._anchors = {key_id(anchor): anchor for anchor in anchors}
        if not self._anchors:
            raise ValueError("a routing domain needs at least one trust anchor")
        self._good: dict[bytes, tuple[dmsc_pb2.RouterCertificateBody, Ed25519PublicKey]] = {}

    def router_key(
        self, certificate: dmsc_pb2.RouterCertificate, node_id: str, now: float
    ) -> Ed25519PublicKey:
        """The enrolled key of ``node_id``, or :class:`Refused` saying why not."""
        cache_key = certificate.body + certificate.signature
        known = self._good.get(cache_key)
        if known is None:
            known = self._check_signature(certificate)
            if len(self._good) >= SIGNATURE_CACHE_SIZE:
                self._good.clear()
            self._good[cache_key] = known
        body, public_key = known
        if body.node_id != node_id:
            raise Refused(f"certificate enrols {body.node_id!r}, not {node_id!r}")
        if not body.issued_at <= now < body.expires_at:
            raise Refused(
                f"certificate of {node_id} valid {body.issued_at:.0f}..{body.expires_at:.0f}, "
                f"not at {now:.0f}"
            )
        return public_key

    def _check_signature(self, certificate):
        if not certificate.body:
            raise Refused("no certificate: the originator is not enrolled")
        try:
            body = dmsc_pb2.RouterCertificateBody.FromString(certificate.body)
        except ProtobufDecodeError:
            raise Refused("certificate body does not decode") from None
        anchor = self._anchors.get(body.anchor_key_id)
        if anchor is None:
            raise Refused(f"certificate issued by unknown anchor {body.anchor_key_id[:16]!r}")
        if not _signature_valid(anchor, certificate.signature, certificate.body):
            raise Refused("certificate signature does not verify under its anchor")
        if body.role not in ROUTER_ROLES or len(body.public_key) != PUBLIC_KEY_BYTES:
            raise Refused("certificate names no router role or holds no Ed25519 key")
        return body, Ed25519PublicKey.from_public_bytes(body.public_key)


# ---------------------------------------------------------------------- LSA signatures


def lsa_signed_bytes(lsa: dmsc_pb2.LinkStateAdvertisement) -> bytes:
    """What an originator signs: the LSA without signature and certificate, and with its
    lifetime replaced by 0 for a purge or 1 for a live copy."""
    copy = dmsc_pb2.LinkStateAdvertisement()
    copy.CopyFrom(lsa)
    copy.ClearField("signature")
    copy.ClearField("certificate")
    copy.lifetime_ms = 0 if lsa.lifetime_ms == 0 else 1
    return copy.SerializeToString(deterministic=True)


@dataclass(frozen=True)
class RouterCredentials:
    """A router's own key and the certificate that enrols it."""

    node_id: str
    private_key: Ed25519PrivateKey
    certificate: dmsc_pb2.RouterCertificate

    def sign(self, lsa: dmsc_pb2.LinkStateAdvertisement) -> dmsc_pb2.LinkStateAdvertisement:
        if lsa.originator != self.node_id:
            raise ValueError(f"{self.node_id} cannot sign an LSA of {lsa.originator}")
        lsa.certificate.CopyFrom(self.certificate)
        lsa.signature = self.private_key.sign(lsa_signed_bytes(lsa))
        return lsa


class LsaVerifier:
    """Accepts an LSA only with a valid signature by its enrolled originator."""

    def __init__(self, certificates: CertificateChecker) -> None:
        self._certificates = certificates
        self._verified: collections.OrderedDict[bytes, None] = collections.OrderedDict()

    def check(self, lsa: dmsc_pb2.LinkStateAdvertisement, now: float) -> None:
        """Raise :class:`Refused` unless ``lsa`` is signed by its enrolled originator."""
        public_key = self._certificates.router_key(lsa.certificate, lsa.originator, now)
        signed = lsa_signed_bytes(lsa)
        memo = hashlib.blake2b(signed + lsa.signature, digest_size=16).digest()
        if memo in self._verified:
            self._verified.move_to_end(memo)
            return
        if not _signature_valid(public_key, lsa.signature, signed):
            raise Refused(f"LSA seq {lsa.sequence} not signed by {lsa.originator}'s enrolled key")
        self._verified[memo] = None
        if len(self._verified) > SIGNATURE_CACHE_SIZE:
            self._verified.popitem(last=False)


# ---------------------------------------------------------------------- per-link packets


class PacketAuthenticator:
    """HMAC-SHA-256 over every type 2 packet, and the replay check on its sequence number.

    The sender appends the authentication field last (protobuf concatenation), so the receiver
    checks the digest over exactly the bytes that were sent before it.
    """

    def __init__(self, keys: Mapping[int, bytes], send_key_id: int) -> None:
        for number, key in keys.items():
            if not 0 < number < 2**32 or len(key) < LINK_KEY_BYTES:
                raise ValueError(
                    f"link key {number}: need an id in 1..2^32-1 and at least "
                    f"{LINK_KEY_BYTES} bytes"
                )
        if send_key_id not in keys:
            raise ValueError(f"link key {send_key_id} to send with is not among the keys")
        self._keys = dict(keys)
        self._send_key_id = send_key_id
        self._sent_sequence = 0
        self._windows: dict[tuple[str, str], ReplayWindow] = {}  # (interface, sender)

    def seal(self, body: bytes, now: float) -> bytes:
        """``body`` (a serialized packet without authentication) with its trailer appended.

        The sequence number follows the clock in microseconds, so a restarted router carries on
        above what it sent before the restart (RFC 7166 uses a boot count for the same end).
        """
        self._sent_sequence = max(self._sent_sequence + 1, int(now * 1_000_000))
        trailer = dmsc_pb2.PacketAuthentication(
            key_id=self._send_key_id, sequence=self._sent_sequence
        )
        trailer.digest = self._digest(self._keys[self._send_key_id], body, trailer)
        return body + _as_field(trailer)

    def check(self, interface: str, data: bytes, packet: dmsc_pb2.LinkStatePacket) -> None:
        """Raise :class:`Refused` unless ``data`` carries a fresh, valid trailer."""
        if not packet.HasField("authentication"):
            raise Refused("no authentication trailer")
        trailer = packet.authentication
        key = self._keys.get(trailer.key_id)
        if key is None:
            raise Refused(f"unknown link key id {trailer.key_id}")
        tail = _as_field(trailer)
        if len(trailer.digest) != DIGEST_BYTES or not data.endswith(tail):
            raise Refused("malformed authentication trailer")
        expected = self._digest(key, data[: len(data) - len(tail)], trailer)
        if not hmac.compare_digest(expected, trailer.digest):
            raise Refused("HMAC does not verify under the link key")
        window = self._windows.setdefault((interface, packet.sender), ReplayWindow())
        window.accept(trailer.sequence)

    @staticmethod
    def _digest(key: bytes, body: bytes, trailer: dmsc_pb2.PacketAuthentication) -> bytes:
        header = dmsc_pb2.PacketAuthentication(key_id=trailer.key_id, sequence=trailer.sequence)
        return hmac.new(key, body + _as_field(header), hashlib.sha256).digest()


class ReplayWindow:
    """The highest sequence seen and which of the ``REPLAY_WINDOW`` below it were seen."""

    def __init__(self) -> None:
        self.highest = 0
        self.seen = 0  # bit i: sequence highest - i arrived

    def accept(self, sequence: int) -> None:
        if sequence > self.highest:
            shift = sequence - self.highest
            if shift >= REPLAY_WINDOW:
                self.seen = 1
            else:
                self.seen = ((self.seen << shift) | 1) & ((1 << REPLAY_WINDOW) - 1)
            self.highest = sequence
            return
        offset = self.highest - sequence
        if offset >= REPLAY_WINDOW:
            raise Refused(f"sequence {sequence} is older than the replay window ({self.highest})")
        if self.seen >> offset & 1:
            raise Refused(f"sequence {sequence} replayed")
        self.seen |= 1 << offset


def _as_field(trailer: dmsc_pb2.PacketAuthentication) -> bytes:
    """``trailer`` encoded as the ``authentication`` field of a LinkStatePacket."""
    return dmsc_pb2.LinkStatePacket(authentication=trailer).SerializeToString()


# ---------------------------------------------------------------------- one router's view


@dataclass(frozen=True)
class RouterSecurity:
    """What one router needs: its credentials, the anchors, the link keys."""

    credentials: RouterCredentials
    lsas: LsaVerifier
    packets: PacketAuthenticator

    @classmethod
    def create(
        cls,
        credentials: RouterCredentials,
        anchors: Iterable[Ed25519PublicKey],
        link_keys: Mapping[int, bytes],
        send_key_id: int | None = None,
    ) -> RouterSecurity:
        send = max(link_keys) if send_key_id is None else send_key_id
        return cls(
            credentials,
            LsaVerifier(CertificateChecker(anchors)),
            PacketAuthenticator(link_keys, send),
        )


def _signature_valid(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        return False
    return True
