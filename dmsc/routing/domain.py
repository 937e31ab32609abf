"""The operator's side of a routing domain: the trust anchor that enrols routers, the link key.

An emulated network makes a fresh domain for every run (random keys in the run directory), or
uses one a user supplies (``dmsc keys init DIR``, then ``--keys DIR``): keys that exist in that
directory are used, missing ones are created. The files::

    operator.key      the trust anchor's private key (PEM); only enrolment needs it
    link.key          the link key: key id and 32 random bytes in hex, "1 0a1b..." (mode 0600)
    NODE.key          a router's private key (PEM)
    NODE.cert         its certificate (base64 of a RouterCertificate)

The simulator derives a domain from its seed instead, so its runs repeat exactly; that is a
model's convenience and never how a node program gets its keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.message import DecodeError as ProtobufDecodeError

from dmsc.errors import ConfigError
from dmsc.proto import dmsc_pb2
from dmsc.routing.auth import (
    LINK_KEY_BYTES,
    CertificateChecker,
    Refused,
    RouterCredentials,
    RouterSecurity,
    enrol_router,
)
from dmsc.spa.keys import (
    generate_private_key,
    load_private_key,
    private_key_from_seed,
    public_key_from_text,
    public_key_to_text,
    raw_public_bytes,
    save_private_key,
)

#: An enrolment outlives any run; an operator re-enrols with ``dmsc keys init`` after a year.
CERTIFICATE_LIFETIME_S = 365 * 24 * 3600.0
LINK_KEY_ID = 1


@dataclass
class RoutingDomain:
    anchor: Ed25519PrivateKey
    link_keys: dict[int, bytes]
    _router_keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)

    @classmethod
    def generate(cls) -> RoutingDomain:
        return cls(generate_private_key(), {LINK_KEY_ID: secrets.token_bytes(LINK_KEY_BYTES)})

    @classmethod
    def from_seed(cls, seed: int) -> RoutingDomain:
        """A reproducible domain for the simulator (never for node programs)."""
        return cls(
            private_key_from_seed(_derive(seed, "anchor")),
            {LINK_KEY_ID: _derive(seed, "link")},
            _router_keys={},
        )

    @property
    def anchor_text(self) -> str:
        return public_key_to_text(self.anchor.public_key())

    def router_key(self, node_id: str, seed: int | None = None) -> Ed25519PrivateKey:
        key = self._router_keys.get(node_id)
        if key is None:
            key = (
                generate_private_key()
                if seed is None
                else private_key_from_seed(_derive(seed, f"router {node_id}"))
            )
            self._router_keys[node_id] = key
        return key

    def enrol(self, node_id: str, role: str, now: float, seed: int | None = None):
        key = self.router_key(node_id, seed)
        certificate = enrol_router(
            self.anchor, node_id, role, key.public_key(), now, CERTIFICATE_LIFETIME_S
        )
        return RouterCredentials(node_id, key, certificate)

    def security_for(self, credentials: RouterCredentials) -> RouterSecurity:
        return RouterSecurity.create(credentials, [self.anchor.public_key()], self.link_keys)

    # ------------------------------------------------------------------ files

    @classmethod
    def open_directory(cls, directory: Path) -> RoutingDomain:
        """The domain kept in ``directory``, with whatever is missing created there."""
        directory.mkdir(parents=True, exist_ok=True)
        anchor_path = directory / "operator.key"
        if not anchor_path.exists():
            save_private_key(generate_private_key(), anchor_path)
        link_path = directory / "link.key"
        if not link_path.exists():
            write_secret(link_path, f"{LINK_KEY_ID} {secrets.token_hex(LINK_KEY_BYTES)}\n")
        domain = cls(load_private_key(anchor_path), read_link_keys(link_path))
        for key_path in directory.glob("*.key"):
            if key_path.name not in ("operator.key", "link.key"):
                domain._router_keys[key_path.stem] = load_private_key(key_path)
        return domain

    def write_router(self, directory: Path, node_id: str, role: str, now: float) -> Path:
        """Enrol ``node_id`` (its key kept if present) and write NODE.key and NODE.cert."""
        credentials = self.enrol(node_id, role, now)
        key_path = directory / f"{node_id}.key"
        if not key_path.exists():
            save_private_key(credentials.private_key, key_path)
        certificate = base64.b64encode(credentials.certificate.SerializeToString()).decode()
        (directory / f"{node_id}.cert").write_text(certificate + "\n")
        return key_path


def write_secret(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only, from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def read_link_keys(path: Path) -> dict[int, bytes]:
    """``ID HEX`` per line; every problem a ConfigError naming the file and line."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the link key: {error.strerror}") from None
    keys: dict[int, bytes] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            key_number, key = int(parts[0]), bytes.fromhex(parts[1])
        except ValueError:
            raise ConfigError(f"{path}:{number}: expected 'KEY_ID HEX_KEY'") from None
        if not 0 < key_number < 2**32 or len(key) < LINK_KEY_BYTES:
            raise ConfigError(
                f"{path}:{number}: key id must be 1..2^32-1 and the key at least "
                f"{LINK_KEY_BYTES} bytes ({len(key)} given)"
            )
        keys[key_number] = key
    if not keys:
        raise ConfigError(f"{path}: no link key in it")
    return keys


def read_certificate(path: Path) -> dmsc_pb2.RouterCertificate:
    try:
        raw = base64.b64decode(path.read_text().strip(), validate=True)
        return dmsc_pb2.RouterCertificate.FromString(raw)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the certificate: {error.strerror}") from None
    except (binascii.Error, ValueError, ProtobufDecodeError) as error:
        raise ConfigError(f"{path}: not a router certificate ({error})") from None


def load_router_security(
    node_id: str,
    key_file: str,
    certificate_file: str,
    link_key_file: str,
    anchors: tuple[str, ...],
    now: float,
) -> RouterSecurity:
    """A node program's credentials, checked before it speaks: the certificate must enrol this
    node with this key, under one of the anchors, now."""
    key = load_private_key(key_file)
    certificate = read_certificate(Path(certificate_file))
    anchor_keys = [public_key_from_text(text) for text in anchors]
    try:
        enrolled = CertificateChecker(anchor_keys).router_key(certificate, node_id, now)
    except Refused as refusal:
        raise ConfigError(f"{certificate_file}: {refusal}") from None
    if raw_public_bytes(enrolled) != raw_public_bytes(key.public_key()):
        raise ConfigError(f"{certificate_file}: enrols another key than {key_file} holds")
    credentials = RouterCredentials(node_id, key, certificate)
    return RouterSecurity.create(credentials, anchor_keys, read_link_keys(Path(link_key_file)))


def _derive(seed: int, label: str) -> bytes:
    return hashlib.sha256(f"dmsc simulator domain {seed}: {label}".encode()).digest()
