"""Configuration of the node programs: one JSON file per node, checked before anything starts.

The emulator writes these files; a person can too (`dmsc node sg --config sg1.json`). An unknown
key, a missing one or a wrong type is an error naming the file and the field.
"""

from __future__ import annotations

import json
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from dmsc.errors import ConfigError, InvalidName
from dmsc.names import ServiceName
from dmsc.routing.config import LinkStateTimers

#: On every edge link (SG-pod, SG-SPA) the SG side is fe80::1 and the other side fe80::2, so
#: pods and SGs find each other without discovery.
GATEWAY_LINK_LOCAL = "fe80::1"
EDGE_PEER_LINK_LOCAL = "fe80::2"
POD_GATEWAY_PORT = 50061
SPA_PORT = 50051


@dataclass(frozen=True)
class RouterInterface:
    name: str
    cost: int = 10
    capacity_bps: int = 0  # the link's configured capacity (0 = unknown): for available bandwidth


@dataclass(frozen=True)
class RouterConfig:
    """An SG or SR: link-state on its router interfaces; an SG also serves pods."""

    node_id: str
    role: str  # "sg" or "sr"
    interfaces: tuple[RouterInterface, ...]
    admin_socket: str
    trust_anchors: tuple[str, ...]  # SPA public keys (base64), every node holds them
    # --- enrolment in the routing domain (docs/security.md): no router runs without it
    router_key_file: str = ""  # this router's Ed25519 private key (PEM)
    certificate_file: str = ""  # its certificate from the domain's trust anchor
    link_key_file: str = ""  # the link key: HMAC on every type 2 packet
    routing_anchors: tuple[str, ...] = ()  # the domain's trust anchors (base64 public keys)
    timers: dict = field(default_factory=dict)
    pod_interfaces: tuple[str, ...] = ()  # SG only: one link per pod
    pod_links: dict = field(default_factory=dict)  # SG: interface -> the pod on it (optional)
    spa_target: str = ""  # SG only: gRPC target of its SPA
    lease_max_ms: int = 10_000
    forward: bool = True  # run the Python forwarder (off only for control-plane tests)
    # --- the SCSC (DESIGN.md §4-5); empty controller = no OpenFlow agent
    controller: str = ""  # "HOST:PORT" of the SCSC on the management network
    openflow_listen: str = ""  # "HOST:PORT" where ovs-ofctl may connect ("" = no listener)
    probe_services: tuple[str, ...] = ()  # SG: services whose instances it probes
    probe_interval_ms: int = 100
    probe_timeout_ms: int = 1000  # a probe unanswered this long is lost
    probe_window: int = 10  # probes per loss/delay window
    telemetry_interval_ms: int = 500  # how often telemetry goes to the SCSC

    def __post_init__(self) -> None:
        where = f"node {self.node_id}"
        for key in ("controller", "openflow_listen"):
            if getattr(self, key):
                host_port(getattr(self, key), f"{where}: {key}")
        if (self.openflow_listen or self.probe_services) and not self.controller:
            raise ConfigError(f"{where}: openflow_listen and probe_services need a controller")
        if self.probe_services and not self.forward:
            raise ConfigError(f"{where}: probe_services needs the forwarder (forward: true)")
        for service in self.probe_services:
            try:
                ServiceName.parse(service)
            except InvalidName as error:
                raise ConfigError(f"{where}: probe_services: {error}") from None
        for key in ("probe_interval_ms", "probe_timeout_ms", "probe_window",
                    "telemetry_interval_ms"):  # fmt: skip
            if getattr(self, key) <= 0:
                raise ConfigError(f"{where}: {key} must be > 0, not {getattr(self, key)}")
        for key in ("router_key_file", "certificate_file", "link_key_file", "routing_anchors"):
            if not getattr(self, key):
                raise ConfigError(
                    f"{where}: {key} is missing; a router speaks only once enrolled in its "
                    "routing domain (dmsc keys init DIR makes the keys; see docs/security.md)"
                )
        if self.role not in ("sg", "sr"):
            raise ConfigError(f"node {self.node_id}: role must be 'sg' or 'sr', not {self.role!r}")
        if self.pod_interfaces and not self.spa_target:
            raise ConfigError(f"node {self.node_id}: an SG with pods needs spa_target")
        stray = set(self.pod_links) - set(self.pod_interfaces)
        if stray:
            raise ConfigError(f"{where}: pod_links names links that are no pod_interfaces: "
                              f"{sorted(stray)}")  # fmt: skip
        if self.role == "sr" and self.pod_interfaces:
            raise ConfigError(f"node {self.node_id}: an SR has no pod_interfaces")
        LinkStateTimers.from_mapping(self.timers, f"node {self.node_id}: timers")

    @property
    def link_state_timers(self) -> LinkStateTimers:
        return LinkStateTimers.from_mapping(self.timers)


def host_port(text: str, where: str) -> tuple[str, int]:
    """ "10.255.0.1:6653" or "[fd00::1]:6653" -> (host, port); ConfigError naming ``where``."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: {text!r} is not HOST:PORT")
    return host, int(port)


@dataclass(frozen=True)
class InstanceConfig:
    name: str  # e.g. "/B/4": the pod also answers for the service "/B"
    services: tuple[str, ...] = ("udp-echo", "tcp-echo", "http")

    def __post_init__(self) -> None:
        try:
            parsed = ServiceName.parse(self.name)
        except InvalidName as error:
            raise ConfigError(f"instance: {error}") from None
        if parsed.depth < 2:
            raise ConfigError(f"instance {self.name}: needs a service and an instance, as /B/4")
        unknown = set(self.services) - set(POD_SERVICES)
        if unknown:
            raise ConfigError(
                f"instance {self.name}: unknown services {sorted(unknown)}; "
                f"known: {list(POD_SERVICES)}"
            )


POD_SERVICES = ("udp-echo", "tcp-echo", "http")


@dataclass(frozen=True)
class CallsConfig:
    """What a pod's instance of ``service`` calls before it answers (the experiment's call
    graph): ``calls`` in order, or all at once when ``parallel``; each may take ``timeout_ms``.
    The answer fails (HTTP 502) when one of them does."""

    service: str  # e.g. "/A": its instances here (/A/1) and its anycast name
    calls: tuple[str, ...]
    parallel: bool = False
    timeout_ms: int = 1000

    def __post_init__(self) -> None:
        for name in (self.service, *self.calls):
            try:
                ServiceName.parse(name)
            except InvalidName as error:
                raise ConfigError(f"calls of {self.service}: {error}") from None
        if not self.calls:
            raise ConfigError(f"calls of {self.service}: no call")
        if self.timeout_ms <= 0:
            raise ConfigError(f"calls of {self.service}: timeout_ms must be above 0")


@dataclass(frozen=True)
class PodConfig:
    pod_id: str
    interface: str
    gateway_node_id: str
    instances: tuple[InstanceConfig, ...]
    key_label: str = ""  # demo key derived from this label (see dmsc.spa.keys.demo_private_key)
    key_file: str = ""  # or a PEM private key
    lease_ms: int = 6_000
    admin_socket: str = ""
    extra_claims: tuple[str, ...] = ()  # claimed without hosting them (tests of the SPA)
    calls: tuple[CallsConfig, ...] = ()  # the services that call others (a call graph)
    hop_log: str = ""  # JSON lines, one per call this pod's services make ('': not written)

    def __post_init__(self) -> None:
        if bool(self.key_label) == bool(self.key_file):
            raise ConfigError(f"pod {self.pod_id}: give exactly one of key_label and key_file")
        if not self.instances:
            raise ConfigError(f"pod {self.pod_id}: no instances")


def _convert(value: Any, kind: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is tuple:
        (item,) = typing.get_args(kind)[:1]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return tuple(_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(kind, type) and hasattr(kind, "__dataclass_fields__"):
        return from_mapping(kind, value, where)
    expected = {int: int, str: str, bool: bool, dict: dict}.get(kind)
    if expected is None:
        return value
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {expected.__name__}, got {value!r}")
    return value


def from_mapping(cls: type, data: Any, where: str) -> Any:
    """A dataclass from a JSON mapping; unknown or missing keys are errors naming them."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    missing = [
        n
        for n, f in known.items()
        if n not in data and f.default is MISSING and f.default_factory is MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
    values = {k: _convert(v, hints[k], f"{where}: {k}") for k, v in data.items()}
    return cls(**values)


def read_json(path: str | Path) -> Any:
    """A JSON configuration file's content; ConfigError naming the file if unreadable."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not JSON ({error})") from None


def load(cls: type, path: str | Path) -> Any:
    return from_mapping(cls, read_json(path), str(path))


def to_mapping(config: Any) -> Any:
    """The JSON-ready form of a config dataclass (inverse of from_mapping)."""
    if hasattr(config, "__dataclass_fields__"):
        return {f.name: to_mapping(getattr(config, f.name)) for f in fields(config)}
    if isinstance(config, tuple | list):
        return [to_mapping(v) for v in config]
    return config


def write(config: Any, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(to_mapping(config), indent=2) + "\n")
    return path
