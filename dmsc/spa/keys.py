"""Ed25519 keys of pods and SPAs: generation, stable ids, text and file forms.

Public keys travel as text (base64 of the raw 32 bytes) because they sit in YAML policy files and
on command lines; private keys live in PEM files (PKCS8, unencrypted, mode 0600) so that standard
tools (``openssl pkey``) can read them. Every bad input becomes a :class:`ConfigError` naming what
was wrong, since keys are configuration that must be refused before anything starts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tempfile
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from dmsc.errors import ConfigError

SEED_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
KEY_ID_HEX_CHARS = 16
#: Prefix of the seeds behind :func:`demo_private_key`; anyone can rebuild those keys.
DEMO_SEED_LABEL = b"dmsc demo key, never for real use: "


def generate_private_key() -> Ed25519PrivateKey:
    """A fresh random key (what ``dmsc spa keygen`` writes without ``--seed``)."""
    return Ed25519PrivateKey.generate()


def private_key_from_seed(seed: bytes) -> Ed25519PrivateKey:
    """The key whose 32-byte private seed is ``seed``: reproducible keys for tests and demos."""
    if not isinstance(seed, bytes | bytearray) or len(seed) != SEED_BYTES:
        size = len(seed) if isinstance(seed, bytes | bytearray) else type(seed).__name__
        raise ConfigError(f"an Ed25519 seed is exactly {SEED_BYTES} bytes, got {size}")
    return Ed25519PrivateKey.from_private_bytes(bytes(seed))


def demo_private_key(label: str) -> Ed25519PrivateKey:
    """A DEMO-ONLY key derived from a public label (``"pod1"``, ``"spa1"``).

    The shipped example policies use these so that no private key is committed; since anyone can
    derive them, they prove nothing outside a testbed.
    """
    return private_key_from_seed(hashlib.sha256(DEMO_SEED_LABEL + label.encode()).digest())


def raw_public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short stable id: the first 16 hex digits of SHA-256 over the raw public key."""
    return hashlib.sha256(raw_public_bytes(public_key)).hexdigest()[:KEY_ID_HEX_CHARS]


def public_key_to_text(public_key: Ed25519PublicKey) -> str:
    """Base64 of the raw 32 bytes: the form used in policy files and printed by the CLI."""
    return base64.b64encode(raw_public_bytes(public_key)).decode("ascii")


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """Inverse of :func:`public_key_to_text`; strict, so a truncated paste is caught."""
    if not isinstance(text, str):
        raise ConfigError(f"public key must be base64 text, not {type(text).__name__}")
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ConfigError(f"public key {text[:48]!r} is not valid base64 ({error})") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ConfigError(
            f"public key {text[:48]!r} decodes to {len(raw)} bytes; an Ed25519 public key is "
            f"{PUBLIC_KEY_BYTES} bytes"
        )
    return Ed25519PublicKey.from_public_bytes(raw)


def load_private_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    """Read a PEM (PKCS8, unencrypted) Ed25519 private key."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read private key: {error.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as error:  # encrypted, or a password problem
        raise ConfigError(f"{path}: {error}; DMSC keys are unencrypted PEM") from None
    except (ValueError, UnsupportedAlgorithm):
        # OpenSSL's own message is a tuple of decoder errors that helps nobody.
        raise ConfigError(
            f"{path}: not an unencrypted PEM private key; "
            "create one with `dmsc spa keygen --out FILE`"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        kind = type(key).__name__.lstrip("_").removesuffix("PrivateKey")
        raise ConfigError(f"{path}: holds an {kind} key, not an Ed25519 private key")
    return key


def save_private_key(key: Ed25519PrivateKey, path: str | os.PathLike) -> None:
    """Write ``key`` as PEM with mode 0600, atomically (a crash never leaves half a key).

    The temporary file is created 0600 from the start, so the key is never readable by others,
    and replaces ``path`` (including any looser mode it had) in one rename.
    """
    path = Path(path)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as error:
        raise ConfigError(f"{path}: cannot write private key: {error.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        os.chmod(tmp_name, 0o600)
        os.replace(tmp_name, path)
    except OSError as error:
        Path(tmp_name).unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write private key: {error.strerror}") from None
