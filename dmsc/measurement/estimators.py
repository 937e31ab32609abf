"""From probe results and port counters to path quality: delay, jitter, loss, bandwidth.

- **Delay** is one-way, T2 - T1: every namespace of the testbed reads the same kernel clock, so
  the reflector's receive timestamp and the sender's send timestamp are on one time base and
  the difference is exact (to the 2**-32 s of NTP format). Round-trip time is kept too, as
  RFC 8762 §4 defines it: (T4 - T1) - (T3 - T2), the reflector's turnaround left out.
- **Jitter** is RFC 3550 §6.4.1's interarrival jitter, on one-way delay (the "transit time"):
  ``J += (|D| - J) / 16`` with D the change of transit between consecutive replies.
- **Loss** is the fraction of lost probes among the last N resolved (answered or timed out).
- **Available bandwidth** is the configured capacity minus the rate of bytes sent on the egress
  port over the last counter interval.

A :class:`PathQuality` is the snapshot the SG reports, and the SCSC decides on.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from dmsc.errors import DecodeError, InvalidName
from dmsc.measurement.stamp import ProbeResult, ntp_delta
from dmsc.names import ServiceName
from dmsc.proto import dmsc_pb2

DEFAULT_WINDOW = 10


def one_way_delay_ms(probe: ProbeResult) -> float:
    """Sender to reflector: reflector receive timestamp minus sender timestamp."""
    return ntp_delta(probe.t2, probe.t1) * 1000.0


def round_trip_ms(probe: ProbeResult) -> float:
    """RFC 8762 §4 round trip: (T4 - T1) - (T3 - T2)."""
    return (ntp_delta(probe.t4, probe.t1) - ntp_delta(probe.t3, probe.t2)) * 1000.0


class JitterEstimator:
    """RFC 3550 §6.4.1 interarrival jitter over a series of transit times (ms).

    The gain 1/16 is the RFC's: it smooths noise while converging in a few dozen packets.
    """

    def __init__(self) -> None:
        self.jitter_ms = 0.0
        self._last_transit: float | None = None

    def update(self, transit_ms: float) -> float:
        if self._last_transit is not None:
            difference = abs(transit_ms - self._last_transit)
            self.jitter_ms += (difference - self.jitter_ms) / 16.0
        self._last_transit = transit_ms
        return self.jitter_ms


class LossWindow:
    """Loss as a fraction of the last ``size`` probes (True = lost)."""

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"loss window size must be a positive integer, got {size!r}")
        self._outcomes: deque[bool] = deque(maxlen=size)

    def record(self, lost: bool) -> None:
        self._outcomes.append(lost)

    @property
    def samples(self) -> int:
        return len(self._outcomes)

    @property
    def loss(self) -> float:
        """0.0 before any probe: no evidence of loss yet."""
        return sum(self._outcomes) / len(self._outcomes) if self._outcomes else 0.0


class BandwidthEstimator:
    """Available bandwidth on a link of known capacity, from a byte counter read at times.

    OpenFlow port counters are cumulative; the rate is the difference between two readings over
    the time between them. A counter that goes backwards (the port or node restarted) restarts
    the measurement instead of producing a negative rate.
    """

    def __init__(self, capacity_bps: float) -> None:
        if not capacity_bps > 0:
            raise ValueError(f"link capacity must be > 0 bit/s, got {capacity_bps!r}")
        self.capacity_bps = float(capacity_bps)
        self.available_bps: float | None = None
        self._last: tuple[int, float] | None = None

    def update(self, byte_count: int, now: float) -> float | None:
        """The available bandwidth after this reading; None until two readings are known."""
        last, self._last = self._last, (byte_count, now)
        if last is None or byte_count < last[0]:
            self.available_bps = None
        elif now <= last[1]:
            self._last = last  # same instant again: keep the older baseline
        else:
            used = 8.0 * (byte_count - last[0]) / (now - last[1])
            self.available_bps = max(0.0, self.capacity_bps - used)
        return self.available_bps


@dataclass(frozen=True)
class PathQuality:
    """The quality of one path (an SG to a target instance, or one link) at ``last_update``.

    ``None`` means unknown: no reply in the window (delay, jitter, round trip) or no capacity
    configured or fewer than two counter readings (bandwidth). ``samples`` is the number of
    probes the loss is computed over.
    """

    delay_ms: float | None
    jitter_ms: float | None
    loss: float
    bandwidth_bps: float | None
    samples: int
    last_update: float
    rtt_ms: float | None = None

    def to_qos_sample(self, sg_node_id: str, target: str) -> dmsc_pb2.QosSample:
        """The type-4 telemetry message; unknown values travel as NaN (proto3 doubles have no
        presence), ``samples`` and ``rtt_ms`` do not travel (QosSample has no field for them)."""
        return dmsc_pb2.QosSample(
            sg_node_id=sg_node_id,
            target=target,
            timestamp=self.last_update,
            delay_ms=_or_nan(self.delay_ms),
            jitter_ms=_or_nan(self.jitter_ms),
            loss=self.loss,
            bandwidth_bps=_or_nan(self.bandwidth_bps),
        )

    @classmethod
    def from_qos_sample(cls, sample: dmsc_pb2.QosSample) -> PathQuality:
        """The quality a QosSample reports; DecodeError naming the field if it is meaningless.
        ``samples`` is 0 (not carried), ``rtt_ms`` None."""
        what = f"QoS sample from {sample.sg_node_id or '?'} for {sample.target or '?'}"
        try:
            ServiceName.parse(sample.target)
        except InvalidName as error:
            raise DecodeError(f"{what}: target: {error}") from None
        if not sample.sg_node_id:
            raise DecodeError(f"{what}: empty sg_node_id")
        if not math.isfinite(sample.timestamp):
            raise DecodeError(f"{what}: timestamp {sample.timestamp} is not finite")
        if not 0.0 <= sample.loss <= 1.0:
            raise DecodeError(f"{what}: loss {sample.loss} not in [0, 1]")
        return cls(
            delay_ms=_known(sample.delay_ms, "delay_ms", what),
            jitter_ms=_known(sample.jitter_ms, "jitter_ms", what),
            loss=sample.loss,
            bandwidth_bps=_known(sample.bandwidth_bps, "bandwidth_bps", what),
            samples=0,
            last_update=sample.timestamp,
        )


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _known(value: float, field: str, what: str) -> float | None:
    if math.isnan(value):
        return None
    if not 0.0 <= value < math.inf:
        raise DecodeError(f"{what}: {field} {value} must be finite and >= 0")
    return value


def telemetry_entries(
    samples: Iterable[dmsc_pb2.QosSample],
) -> dict[tuple[str, str], PathQuality]:
    """The newest quality per (SG, target) among ``samples`` (e.g. ``Telemetry.samples``);
    DecodeError for the first meaningless one."""
    latest: dict[tuple[str, str], PathQuality] = {}
    for sample in samples:
        quality = PathQuality.from_qos_sample(sample)
        key = (sample.sg_node_id, str(ServiceName.parse(sample.target)))
        known = latest.get(key)
        if known is None or quality.last_update >= known.last_update:
            latest[key] = quality
    return latest


class PathEstimator:
    """Everything the SG measures about its path to one target, fed as events arrive.

    Delay and round trip are means over the replies among the last ``window`` probes, so a
    step change shows after a few probes and one outlier moves the mean by 1/window only.
    """

    def __init__(self, window: int = DEFAULT_WINDOW, capacity_bps: float | None = None) -> None:
        self._loss = LossWindow(window)
        self._replies: deque[tuple[float, float] | None] = deque(maxlen=window)
        self._jitter = JitterEstimator()
        self._bandwidth = None if capacity_bps is None else BandwidthEstimator(capacity_bps)
        self.last_update: float | None = None

    def add_reply(self, probe: ProbeResult) -> None:
        delay = one_way_delay_ms(probe)
        self._loss.record(False)
        self._replies.append((delay, round_trip_ms(probe)))
        self._jitter.update(delay)
        self.last_update = probe.received_at

    def add_loss(self, now: float) -> None:
        self._loss.record(True)
        self._replies.append(None)
        self.last_update = now

    def add_port_bytes(self, byte_count: int, now: float) -> None:
        """A reading of the egress port's transmitted-bytes counter."""
        if self._bandwidth is not None:
            self._bandwidth.update(byte_count, now)

    def snapshot(self) -> PathQuality | None:
        """The current quality; None before the first probe was answered or lost."""
        if self.last_update is None:
            return None
        answered = [reply for reply in self._replies if reply is not None]
        return PathQuality(
            delay_ms=_mean(delay for delay, _ in answered),
            jitter_ms=self._jitter.jitter_ms if answered else None,
            loss=self._loss.loss,
            bandwidth_bps=None if self._bandwidth is None else self._bandwidth.available_bps,
            samples=self._loss.samples,
            last_update=self.last_update,
            rtt_ms=_mean(rtt for _, rtt in answered),
        )


def _mean(values: Iterable[float]) -> float | None:
    items = list(values)
    return sum(items) / len(items) if items else None
