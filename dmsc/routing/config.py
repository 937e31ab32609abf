"""Timers of the link-state protocol: defaults and checks side by side, refused loudly."""

from __future__ import annotations

from dataclasses import dataclass, fields

from dmsc.errors import ConfigError
from dmsc.proto.codec import MAX_DEAD_INTERVAL_MS, MAX_LIFETIME_MS


@dataclass(frozen=True)
class LinkStateTimers:
    """All in seconds. The defaults aim at sub-second recovery on an emulated testbed: carrier
    loss is reported by the node program at once, so the dead interval only catches silent
    failures (a crashed process)."""

    hello_interval: float = 1.0
    dead_interval: float = 4.0
    retransmit_interval: float = 1.0
    lsa_lifetime: float = 1800.0
    lsa_refresh: float = 900.0
    min_lsa_interval: float = 0.05
    spf_initial_delay: float = 0.05
    spf_hold: float = 0.2
    spf_max_hold: float = 5.0
    purge_hold: float = 60.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigError(f"timer {field.name}: expected seconds, got {value!r}")
            if value < 0 or (value == 0 and field.name != "min_lsa_interval"):
                raise ConfigError(f"timer {field.name}: must be positive, got {value}")
        self._require(self.hello_interval < self.dead_interval, "hello_interval < dead_interval")
        # hellos and LSAs carry whole milliseconds, which neighbors check against the wire's
        # bounds (dmsc.proto.codec): a value they would refuse is refused here first
        hello_ms, dead_ms = _ms(self.hello_interval), _ms(self.dead_interval)
        self._require(
            1 <= hello_ms < dead_ms <= MAX_DEAD_INTERVAL_MS,
            f"1 ms <= hello_interval < dead_interval <= {MAX_DEAD_INTERVAL_MS // 1000} s "
            "in whole ms",
        )
        self._require(self.lsa_refresh < self.lsa_lifetime, "lsa_refresh < lsa_lifetime")
        self._require(
            1 <= _ms(self.lsa_lifetime) <= MAX_LIFETIME_MS,
            f"1 ms <= lsa_lifetime <= {MAX_LIFETIME_MS // 1000} s (MAX_LIFETIME_MS)",
        )
        self._require(self.spf_hold <= self.spf_max_hold, "spf_hold <= spf_max_hold")

    def _require(self, condition: bool, rule: str) -> None:
        if not condition:
            raise ConfigError(f"link-state timers: need {rule} ({self})")

    @classmethod
    def from_mapping(cls, data: dict, source: str = "timers") -> LinkStateTimers:
        """Build from a config mapping; an unknown key is an error naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown timer(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


def _ms(seconds: float) -> int:
    """As the router puts a timer on the wire."""
    return int(seconds * 1000)
