"""Service measurement (sans-I/O): STAMP probes and the path-quality estimators.

- :mod:`dmsc.measurement.stamp`       RFC 8762 packets, :class:`StampSender`, :class:`Reflector`
- :mod:`dmsc.measurement.estimators`  delay, RFC 3550 jitter, loss, available bandwidth,
  :class:`PathQuality` (the QosSample an SG reports)

See ``docs/scheduling.md``.
"""

from dmsc.measurement.estimators import (
    BandwidthEstimator,
    JitterEstimator,
    LossWindow,
    PathEstimator,
    PathQuality,
    one_way_delay_ms,
    round_trip_ms,
    telemetry_entries,
)
from dmsc.measurement.stamp import STAMP_PORT, ProbeResult, Reflector, StampSender

__all__ = [
    "STAMP_PORT",
    "BandwidthEstimator",
    "JitterEstimator",
    "LossWindow",
    "PathEstimator",
    "PathQuality",
    "ProbeResult",
    "Reflector",
    "StampSender",
    "one_way_delay_ms",
    "round_trip_ms",
    "telemetry_entries",
]
