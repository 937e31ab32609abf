"""The SPA policy: which pod (identified by its Ed25519 key) may own which service prefixes.

A policy is a YAML file::

    attestation_validity_s: 3600     # optional, default 3600
    claim_window_s: 30               # optional, default 30
    pods:
      - pod_id: pod1
        public_key: 3q0QmY...=        # base64 of the raw 32-byte Ed25519 public key
        allowed: [/A, "/A/*"]         # exact names, or /X/* = any direct child of /X

It is validated the way faucet validates its configuration: an unknown key, a missing field, a
wrong type, a bad name or a bad key is a :class:`ConfigError` naming the file, the field and the
reason, never a silent default. Duplicate YAML keys are refused too (PyYAML would silently keep
the last one).
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from dmsc.errors import ConfigError, InvalidName
from dmsc.names import MAX_DEPTH, ServiceName, as_name
from dmsc.spa.claims import CLAIM_WINDOW_S
from dmsc.spa.keys import public_key_from_text, public_key_to_text

DEFAULT_ATTESTATION_VALIDITY_S = 3600.0
DEFAULT_CLAIM_WINDOW_S = CLAIM_WINDOW_S
WILDCARD = "/*"
TOP_LEVEL_KEYS = ("attestation_validity_s", "claim_window_s", "pods")
POD_KEYS = ("pod_id", "public_key", "allowed")
_POD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}\Z")


@dataclass(frozen=True)
class PodIdentity:
    """One pod: its id, its public key and the name patterns it may own."""

    pod_id: str
    public_key: Ed25519PublicKey
    allowed: tuple[str, ...]

    def allows(self, name: ServiceName | str) -> bool:
        """True if ``name`` equals an allowed name or is a direct child of a ``/X/*`` pattern."""
        name = as_name(name)
        text, parent = str(name), name.parent
        for pattern in self.allowed:
            if pattern == text:
                return True
            if parent is not None and pattern.endswith(WILDCARD) and pattern[:-2] == str(parent):
                return True
        return False


@dataclass(frozen=True)
class SpaPolicy:
    """The whole policy; build it with :func:`load_policy` or :func:`parse_policy`."""

    identities: Mapping[str, PodIdentity]
    attestation_validity_s: float = DEFAULT_ATTESTATION_VALIDITY_S
    claim_window_s: float = DEFAULT_CLAIM_WINDOW_S

    def allows(self, pod_id: str, name: ServiceName | str) -> bool:
        identity = self.identities.get(pod_id)
        return identity is not None and identity.allows(name)


# ---------------------------------------------------------------- loading


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping instead of keeping the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable key: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_policy(path: str | os.PathLike) -> SpaPolicy:
    """Read and validate a policy file; any problem is a ConfigError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else str(error)
        raise ConfigError(f"{path}: cannot read SPA policy: {reason}") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(error)}") from None
    return parse_policy(data, source=str(path))


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line with the position, instead of PyYAML's multi-line quote of the stream."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}" + (f" ({context})" if context else "")


def parse_policy(data: Any, source: str = "<policy>") -> SpaPolicy:
    """Validate already-parsed YAML/JSON data (a dict) into a :class:`SpaPolicy`."""
    if data is None:
        raise ConfigError(
            f"{source}: empty SPA policy (expected keys: {', '.join(TOP_LEVEL_KEYS)})"
        )
    _check_keys(data, TOP_LEVEL_KEYS, ("pods",), source, "top level")
    identities: dict[str, PodIdentity] = {}
    for index, entry in enumerate(_typed(data["pods"], list, source, "pods")):
        identity = _parse_pod(entry, source, f"pods[{index}]")
        if identity.pod_id in identities:
            raise ConfigError(
                f"{source}: pods[{index}].pod_id: duplicate pod id {identity.pod_id!r}"
            )
        identities[identity.pod_id] = identity
    return SpaPolicy(
        identities=MappingProxyType(identities),
        attestation_validity_s=_seconds(
            data, "attestation_validity_s", DEFAULT_ATTESTATION_VALIDITY_S, source
        ),
        claim_window_s=_seconds(data, "claim_window_s", DEFAULT_CLAIM_WINDOW_S, source),
    )


def dump_policy(policy: SpaPolicy) -> dict:
    """The plain-data form of ``policy``; ``parse_policy(dump_policy(p))`` equals ``p``."""
    return {
        "attestation_validity_s": policy.attestation_validity_s,
        "claim_window_s": policy.claim_window_s,
        "pods": [
            {
                "pod_id": identity.pod_id,
                "public_key": public_key_to_text(identity.public_key),
                "allowed": list(identity.allowed),
            }
            for identity in policy.identities.values()
        ],
    }


# ---------------------------------------------------------------- field validators


def _check_keys(
    data: Any, known: tuple[str, ...], required: tuple[str, ...], source: str, where: str
) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {where}: expected a mapping, got {_type_name(data)}")
    for key in data:
        if key not in known:
            hint = difflib.get_close_matches(str(key), known, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(
                f"{source}: {where}: unknown key {key!r} (expected: {', '.join(known)}){suggestion}"
            )
    for key in required:
        if key not in data:
            raise ConfigError(f"{source}: {where}: missing required key {key!r}")


def _type_name(value: Any) -> str:
    return "nothing (null)" if value is None else type(value).__name__


def _typed(value: Any, kind: type, source: str, field: str) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(
            f"{source}: {field}: expected {kind.__name__}, got {_type_name(value)} {value!r}"
        )
    return value


def _seconds(data: dict, key: str, default: float, source: str) -> float:
    if key not in data:
        return default
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"{source}: {key}: expected a number of seconds, got {_type_name(value)} {value!r}"
        )
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{source}: {key}: must be a positive number of seconds, got {value}")
    return float(value)


def _parse_pod(entry: Any, source: str, where: str) -> PodIdentity:
    _check_keys(entry, POD_KEYS, POD_KEYS, source, where)
    pod_id = _typed(entry["pod_id"], str, source, f"{where}.pod_id")
    if not _POD_ID.match(pod_id):
        raise ConfigError(
            f"{source}: {where}.pod_id: {pod_id!r} is not a pod id (1-64 characters: letters, "
            "digits, '_', '.', ':', '@', '-', starting with a letter or digit)"
        )
    key_text = _typed(entry["public_key"], str, source, f"{where}.public_key")
    try:
        public_key = public_key_from_text(key_text)
    except ConfigError as error:
        raise ConfigError(f"{source}: {where}.public_key (pod {pod_id}): {error}") from None
    patterns = _typed(entry["allowed"], list, source, f"{where}.allowed")
    allowed = tuple(
        _parse_pattern(pattern, source, f"{where}.allowed[{i}]")
        for i, pattern in enumerate(patterns)
    )
    return PodIdentity(pod_id=pod_id, public_key=public_key, allowed=allowed)


def _parse_pattern(pattern: Any, source: str, field: str) -> str:
    """An exact name, or ``/X/*`` (any direct child of /X), in canonical text form."""
    _typed(pattern, str, source, field)
    wildcard = pattern.endswith(WILDCARD)
    base = pattern[: -len(WILDCARD)] if wildcard else pattern
    if wildcard and not base:
        raise ConfigError(
            f"{source}: {field}: '/*' would give away every service; write /X/* for the "
            "children of one service /X"
        )
    try:
        name = ServiceName.parse(base)
    except InvalidName as error:
        raise ConfigError(f"{source}: {field}: {error} (patterns are /X or /X/*)") from None
    if wildcard and name.depth >= MAX_DEPTH:
        raise ConfigError(
            f"{source}: {field}: {pattern!r} can match nothing: names have at most "
            f"{MAX_DEPTH} components"
        )
    return f"{name}{WILDCARD}" if wildcard else str(name)
