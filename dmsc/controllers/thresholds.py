"""QoS thresholds per service, and which of them a measured quality crosses.

The draft (§5, "preset conditions") names three: the path's bandwidth is less than or equal to
a minimum, its delay greater than or equal to a maximum, its jitter greater than or equal to a
maximum. We add a fourth, loss greater than or equal to a maximum, because a path that drops
probes is unusable long before its delay shows it. Each condition is off when its limit is None.
One more condition is always on: a path that answered none of the probes in its window.

Configuration (YAML-ready), per service name with defaults; a service's entry overrides the
defaults field by field, and a service without an entry inherits its nearest configured
ancestor's (``/shop`` applies to ``/shop/cart``)::

    default: {max_delay_ms: 50, max_jitter_ms: 10, max_loss: 0.2}
    services:
      /B: {max_delay_ms: 20, min_bandwidth_bps: 5000000}
      /C: {max_jitter_ms: null}        # jitter does not matter to /C
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Protocol

from dmsc.errors import ConfigError, InvalidName
from dmsc.names import ServiceName


class Measured(Protocol):
    """What a threshold looks at: a PathQuality, or the quality of one link."""

    @property
    def delay_ms(self) -> float | None: ...
    @property
    def jitter_ms(self) -> float | None: ...
    @property
    def loss(self) -> float | None: ...
    @property
    def bandwidth_bps(self) -> float | None: ...


@dataclass(frozen=True)
class Thresholds:
    """Limits for one service; None switches a condition off."""

    min_bandwidth_bps: float | None = None
    max_delay_ms: float | None = None
    max_jitter_ms: float | None = None
    max_loss: float | None = None

    def __post_init__(self) -> None:
        for each in fields(self):
            value = getattr(self, each.name)
            if value is None:
                continue
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigError(f"threshold {each.name}: expected a number, got {value!r}")
            # A maximum of 0 would be crossed by every path ("delay >= 0"): refuse it.
            low_ok = value >= 0 if each.name == "min_bandwidth_bps" else value > 0
            if not low_ok or value == float("inf"):
                raise ConfigError(f"threshold {each.name}: out of range, got {value!r}")
        if self.max_loss is not None and self.max_loss > 1:
            raise ConfigError(f"threshold max_loss: a fraction in (0, 1], got {self.max_loss!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "thresholds") -> Thresholds:
        return DISABLED.merged(data, source)

    def merged(self, overrides: Mapping[str, Any], source: str = "thresholds") -> Thresholds:
        """These thresholds with ``overrides`` applied; an unknown key is an error naming it."""
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"{source}: expected a mapping, got {type(overrides).__name__}")
        known = {each.name for each in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown threshold(s) {unknown}; known: {sorted(known)}")
        try:
            return dataclasses.replace(self, **overrides)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None


#: Every condition off.
DISABLED = Thresholds()
#: For a LAN-like testbed: well above an idle emulated path, well below a netem-impaired one.
#: A loss limit of 0.2 needs two lost probes in a window of ten, so one unlucky probe does not
#: move a service. Bandwidth is off: link capacities are only known when configured.
DEFAULT_THRESHOLDS = Thresholds(max_delay_ms=50.0, max_jitter_ms=10.0, max_loss=0.2)


@dataclass(frozen=True)
class ThresholdTable:
    """Thresholds per service name, with defaults."""

    default: Thresholds = DEFAULT_THRESHOLDS
    services: Mapping[str, Thresholds] = field(default_factory=dict)

    def __post_init__(self) -> None:
        normal = {}
        for name, limits in self.services.items():
            try:
                key = str(ServiceName.parse(name))
            except InvalidName as error:
                raise ConfigError(f"thresholds: services: {error}") from None
            if not isinstance(limits, Thresholds):
                raise ConfigError(f"thresholds: services: {name}: not a Thresholds")
            normal[key] = limits
        object.__setattr__(self, "services", MappingProxyType(normal))

    def for_service(self, service: str) -> Thresholds:
        """The thresholds of ``service``, else of its nearest configured ancestor, else default."""
        name: ServiceName | None = ServiceName.parse(service)
        while name is not None:
            limits = self.services.get(str(name))
            if limits is not None:
                return limits
            name = name.parent
        return self.default

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "thresholds") -> ThresholdTable:
        """Build from ``{default: {...}, services: {name: {...}}}``; both keys optional."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - {"default", "services"})
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown}; known: default, services")
        default = DEFAULT_THRESHOLDS.merged(data.get("default") or {}, f"{source}: default")
        services = data.get("services") or {}
        if not isinstance(services, Mapping):
            raise ConfigError(f"{source}: services: expected a mapping of service names")
        return cls(
            default,
            {
                name: default.merged(limits or {}, f"{source}: services: {name}")
                for name, limits in services.items()
            },
        )


@dataclass(frozen=True)
class Crossing:
    """One condition a quality meets: ``metric`` is bandwidth, delay, jitter, loss or reply."""

    metric: str
    value: float | None
    limit: float | None
    text: str


def crossings(quality: Measured, limits: Thresholds) -> tuple[Crossing, ...]:
    """The conditions ``quality`` meets, in the draft's order, with readable text."""
    found: list[Crossing] = []
    if quality.loss is not None and quality.loss >= 1.0:
        found.append(Crossing("reply", quality.loss, None, "no reply to any probe in the window"))
    bandwidth, delay, jitter = quality.bandwidth_bps, quality.delay_ms, quality.jitter_ms
    if _at_most(bandwidth, limits.min_bandwidth_bps):
        text = f"bandwidth {_rate(bandwidth)} ≤ {_rate(limits.min_bandwidth_bps)}"
        found.append(Crossing("bandwidth", bandwidth, limits.min_bandwidth_bps, text))
    if _at_least(delay, limits.max_delay_ms):
        text = f"delay {delay:.1f} ms ≥ {limits.max_delay_ms:g} ms"
        found.append(Crossing("delay", delay, limits.max_delay_ms, text))
    if _at_least(jitter, limits.max_jitter_ms):
        text = f"jitter {jitter:.1f} ms ≥ {limits.max_jitter_ms:g} ms"
        found.append(Crossing("jitter", jitter, limits.max_jitter_ms, text))
    if _at_least(quality.loss, limits.max_loss):
        text = f"loss {quality.loss:.0%} ≥ {limits.max_loss:.0%}"
        found.append(Crossing("loss", quality.loss, limits.max_loss, text))
    return tuple(found)


def describe(found: tuple[Crossing, ...]) -> str:
    """``"delay 62.1 ms ≥ 50 ms, loss 30% ≥ 20%"``; empty when nothing is crossed."""
    return ", ".join(crossing.text for crossing in found)


def _at_least(value: float | None, limit: float | None) -> bool:
    return value is not None and limit is not None and value >= limit


def _at_most(value: float | None, limit: float | None) -> bool:
    return value is not None and limit is not None and value <= limit


def _rate(bps: float | None) -> str:
    if bps is None:
        return "?"
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.3g} bit/s"
