"""The testbed's own noise floor in every run; each impairment measured against its settings.

The runner measures (pings.csv: one row per ICMPv6 echo request, its send time and RTT, empty
when no reply came); everything here is computed from that table and metadata.json alone:

- **floor**, per repetition, before the timeline (``calibration.floor_s``): echoes from every
  workload client to its service's address, the path its calls take through the forwarders
  (``kind`` ``path``), and across every link the timeline impairs, first node to the second's
  link-local address, one hop of kernel and nothing else (``kind`` ``link``);
- **impairment**, once an ``impair`` took effect on every end: echoes across that link for
  ``calibration.impairment_s``, or less when the next event on that link or the run's end
  comes sooner. Not for an impairment with a ``rate``: there the echoes would wait in the
  workload's queue and lengthen it, and the queue's delay depends on the load, not on a
  setting.

Per measurement: requests ``sent``, ``received``, ``loss``; nearest-rank ``p10_ms``,
``p50_ms``, ``p90_ms``, ``p99_ms`` of the RTTs; ``spread_ms`` = p90 - p10.

What netem should do to an echo across the link. The request leaves the link's first node
(``forward``), the reply its second (``backward``); ``both`` impairs both, so ``ways`` is 2, else
1. Expected: an RTT rise of delay x ways; a loss of 1 - (1 - loss)^ways; and the spread of the
link's floor RTTs each moved by the sum of ``ways`` independent uniform draws of +-jitter
(netem without a distribution table draws uniformly). A distribution table or a correlation
is not modelled: the expected spread is NaN and only the measurement is reported.

Measured against expected, at 99 % (``Z``), distribution-free: the rise is the impaired
median less the floor's, inside [low(p50) - high(floor p50), high(p50) - low(floor p50)] from
the order-statistic intervals of both; the spread inside [low(p90) - high(p10), high(p90) -
low(p10)]; the loss inside Wilson's interval. Each interval is widened by ``SLACK_MS`` (netem's
timers fire late by up to ~1.5 ms under the VM's emulation; ping prints three significant
digits, so an RTT of 100 ms or more is read to the millisecond). ``agrees`` is false when an
expected value lies outside; the report says in how many repetitions.

The floor is what the workload's own path does without any impairment. An effect is *not
clearly above it* when the configured RTT rise is at most the path floor's p99 - p50 (the
impaired median would not clear the floor's tail), the configured widening of the spread at
most the floor's spread, or the configured loss at most the floor loss's upper bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from dmsc.experiments.stats import (
    jittered_percentile,
    percentile_interval,
    percentiles,
    wilson_interval,
)

Z = 2.576  # 99 %: ten repetitions of three checks would raise a false alarm too often at 95 %
SLACK_MS = 1.0
QUANTILES = {"p10_ms": 10, "p50_ms": 50, "p90_ms": 90, "p99_ms": 99}
MEASURE_COLUMNS = ("sent", "received", "loss", *QUANTILES, "spread_ms")
EXPECT_COLUMNS = (
    "expected_rise_ms", "measured_rise_ms", "rise_low_ms", "rise_high_ms",
    "expected_spread_ms", "expected_widening_ms", "spread_low_ms", "spread_high_ms",
    "expected_loss", "loss_low", "loss_high", "agrees", "disagreement",
)  # fmt: skip
KEY = ("variant", "repetition", "measurement", "kind", "source", "target", "at_s")
COLUMNS = (*KEY, *MEASURE_COLUMNS, *EXPECT_COLUMNS)
#: summary.csv's columns from here: the repetition's path floor (paths pooled) on every row,
#: the impairment's expected and measured effect on the rows of ``impair`` events
SUMMARY_FLOOR = ("floor_p50_ms", "floor_p99_ms", "floor_spread_ms", "floor_loss")
SUMMARY_IMPAIRMENT = (
    "expected_rise_ms", "measured_rise_ms", "expected_spread_ms", "measured_spread_ms",
    "expected_loss", "measured_loss",
)  # fmt: skip
SUMMARY_METRICS = (*SUMMARY_FLOOR, *SUMMARY_IMPAIRMENT)
LABELS = {
    "floor_p50_ms": "floor p50 RTT (ms)", "floor_p99_ms": "floor p99 RTT (ms)",
    "floor_spread_ms": "floor p10-p90 (ms)", "floor_loss": "floor loss",
    "expected_rise_ms": "netem RTT rise, set (ms)", "measured_rise_ms": "netem RTT rise (ms)",
    "expected_spread_ms": "netem p10-p90, set (ms)", "measured_spread_ms": "netem p10-p90 (ms)",
    "expected_loss": "netem loss, set", "measured_loss": "netem loss",
}  # fmt: skip


@dataclass(frozen=True)
class Configured:
    """An impairment as metadata.json records it (``variants.<v>.timeline[i].impairment``)."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    modelled_jitter: bool = True  # uniform, uncorrelated
    ways: int = 2

    @classmethod
    def from_metadata(cls, impairment: Mapping) -> Configured:
        return cls(
            delay_ms=impairment.get("delay_ms") or 0.0,
            jitter_ms=impairment.get("jitter_ms") or 0.0,
            loss=impairment.get("loss") or 0.0,
            modelled_jitter=impairment.get("distribution") in (None, "uniform")
            and impairment.get("correlation") is None,
            ways=2 if impairment.get("direction", "both") == "both" else 1,
        )

    @property
    def rise_ms(self) -> float:
        return self.delay_ms * self.ways

    @property
    def round_trip_loss(self) -> float:
        return 1 - (1 - self.loss) ** self.ways


# ---------------------------------------------------------------- one measurement


def measure(rtts: Sequence[float | None]) -> dict:
    """The statistics of one measurement's requests (None or NaN: no reply)."""
    answered = [r for r in rtts if r is not None and not math.isnan(r)]
    sent = len(rtts)
    stats = {"sent": sent, "received": len(answered)}
    stats["loss"] = (sent - len(answered)) / sent if sent else math.nan
    stats |= percentiles(answered, QUANTILES)
    stats["spread_ms"] = stats["p90_ms"] - stats["p10_ms"]
    return stats


def expected_spread(floor: Sequence[float], configured: Configured) -> float:
    if not floor:
        return math.nan
    if not configured.jitter_ms:
        stats = percentiles(floor, {"p10": 10, "p90": 90})
        return stats["p90"] - stats["p10"]
    if not configured.modelled_jitter:
        return math.nan
    p10, p90 = (jittered_percentile(floor, configured.jitter_ms, configured.ways, q)
                for q in (10, 90))  # fmt: skip
    return p90 - p10


def compare(
    floor: Sequence[float], impaired: Sequence[float | None], configured: Configured
) -> dict:
    """The expected columns of one impairment measurement against the link's floor RTTs."""
    answered = [r for r in impaired if r is not None and not math.isnan(r)]
    row = dict.fromkeys(EXPECT_COLUMNS, math.nan) | {"disagreement": ""}
    row["expected_rise_ms"] = configured.rise_ms
    row["expected_spread_ms"] = expected_spread(floor, configured)
    if floor:
        row["expected_widening_ms"] = row["expected_spread_ms"] - measure(floor)["spread_ms"]
    row["expected_loss"] = configured.round_trip_loss
    lost = len(impaired) - len(answered)
    row["loss_low"], row["loss_high"] = wilson_interval(lost, len(impaired), Z)
    problems = []
    if not (row["loss_low"] <= row["expected_loss"] <= row["loss_high"]):
        problems.append(
            f"loss {lost}/{len(impaired)} outside what {row['expected_loss']:.3g} allows"
        )
    if floor and answered:
        base_low, base_high = percentile_interval(floor, 50, Z)
        low, high = percentile_interval(answered, 50, Z)
        row["measured_rise_ms"] = (
            percentiles(answered, {"m": 50})["m"] - percentiles(floor, {"m": 50})["m"]
        )
        row["rise_low_ms"], row["rise_high_ms"] = low - base_high, high - base_low
        if not (
            row["rise_low_ms"] - SLACK_MS <= configured.rise_ms <= row["rise_high_ms"] + SLACK_MS
        ):
            problems.append(
                f"RTT rise {row['measured_rise_ms']:.2f} ms (99 % interval "
                f"{row['rise_low_ms']:.2f}-{row['rise_high_ms']:.2f}), set {configured.rise_ms:g}"
            )
        p10_low, p10_high = percentile_interval(answered, 10, Z)
        p90_low, p90_high = percentile_interval(answered, 90, Z)
        row["spread_low_ms"], row["spread_high_ms"] = p90_low - p10_high, p90_high - p10_low
        wanted = row["expected_spread_ms"]
        if not math.isnan(wanted) and not (
            row["spread_low_ms"] - SLACK_MS <= wanted <= row["spread_high_ms"] + SLACK_MS
        ):
            problems.append(f"p10-p90 spread outside its 99 % interval around {wanted:.2f} ms")
    elif not answered:
        problems.append("no echo answered")
    else:
        problems.append("no floor measured on the link")
    row["agrees"] = not problems
    row["disagreement"] = "; ".join(problems)
    return row


# ---------------------------------------------------------------- a whole run


def impairments(metadata: Mapping) -> dict[tuple[str, float, str], Configured]:
    """(variant, at_s, "a-b") -> the configured impairment, from metadata.json's timelines."""
    found = {}
    for variant, settings in metadata.get("variants", {}).items():
        for event in settings.get("timeline") or ():
            impairment = event.get("impairment") or {}
            if event.get("action") == "impair" and impairment and not impairment.get("rate_mbit"):
                link = "-".join(event["link"])
                found[variant, float(event["at_s"]), link] = Configured.from_metadata(impairment)
    return found


def calibration_table(pings: pd.DataFrame | None, metadata: Mapping) -> pd.DataFrame:
    """calibration.csv: a row per measurement (see the module), floors first."""
    if pings is None or pings.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    configured = impairments(metadata)
    rows = []
    groups = pings.groupby(list(KEY), sort=False, dropna=False)
    # a floor by (variant, repetition, kind, source, target): its at_s is NaN, never equal
    floors = {
        (variant, repetition, kind, source, target): group["rtt_ms"].dropna().tolist()
        for (variant, repetition, measurement, kind, source, target, _), group in groups
        if measurement == "floor"
    }
    for key, group in groups:
        row = dict(zip(KEY, key, strict=True)) | measure(group["rtt_ms"].tolist())
        variant, repetition, measurement, _, source, target, at_s = key
        impairment = configured.get((variant, float(at_s), f"{source}-{target}"))
        if measurement == "impairment" and impairment is not None:
            floor = floors.get((variant, repetition, "link", source, target), [])
            row |= compare(floor, group["rtt_ms"].tolist(), impairment)
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.reindex(columns=list(COLUMNS))


def summary_columns(table: pd.DataFrame, variant: str, repetition: int, event) -> dict:
    """summary.csv's floor and impairment columns for one (variant, repetition, event) row."""
    mine = table[(table["variant"] == variant) & (table["repetition"] == repetition)]
    paths = mine[(mine["measurement"] == "floor") & (mine["kind"] == "path")]
    row = dict.fromkeys(SUMMARY_METRICS, math.nan)
    if not paths.empty:
        row |= _pooled_floor(paths)
    if event.action == "impair":
        measured = mine[(mine["measurement"] == "impairment") & (mine["at_s"] == event.at_s)
                        & (mine["source"] + "-" + mine["target"] == event.target)]  # fmt: skip
        if not measured.empty:
            first = measured.iloc[0]
            row |= {
                "expected_rise_ms": first["expected_rise_ms"],
                "measured_rise_ms": first["measured_rise_ms"],
                "expected_spread_ms": first["expected_spread_ms"],
                "measured_spread_ms": first["spread_ms"],
                "expected_loss": first["expected_loss"],
                "measured_loss": first["loss"],
            }
    return row


def _pooled_floor(paths: pd.DataFrame) -> dict:
    """The paths of one repetition together: the worst of each (a floor is as high as its
    highest path): the largest p50, p99, spread and loss."""
    return {
        "floor_p50_ms": paths["p50_ms"].max(),
        "floor_p99_ms": paths["p99_ms"].max(),
        "floor_spread_ms": paths["spread_ms"].max(),
        "floor_loss": paths["loss"].max(),
    }


# ---------------------------------------------------------------- what the report says


def notes(table: pd.DataFrame) -> list[str]:
    """Warnings for the report: impairments measured unlike their configuration, and effects
    not clearly above the workload path's floor."""
    if table.empty:
        return []
    lines = []
    for variant, mine in table.groupby("variant", sort=False):
        paths = mine[(mine["measurement"] == "floor") & (mine["kind"] == "path")]
        measured = mine[mine["measurement"] == "impairment"]
        for (source, target, at_s), group in measured.groupby(["source", "target", "at_s"]):
            what = f"{variant}: impair {source}-{target} at {at_s:g} s"
            lines += _disagreements(what, group)
            lines += _below_floor(what, group.iloc[0], paths)
    return lines


def _disagreements(what: str, group: pd.DataFrame) -> list[str]:
    bad = group[group["agrees"] == False]  # noqa: E712 (NaN, where nothing was configured, is not False)
    if bad.empty:
        return []
    return [
        f"{what}: measured unlike its configuration in {len(bad)} of {len(group)} "
        f"repetitions ({bad.iloc[0]['disagreement']})"
    ]


def _below_floor(what: str, row: pd.Series, paths: pd.DataFrame) -> list[str]:
    if paths.empty or pd.isna(row["expected_rise_ms"]):
        return []
    tail = (paths["p99_ms"] - paths["p50_ms"]).median()
    spread = paths["spread_ms"].median()
    lost = paths["loss"] * paths["sent"]
    _, floor_loss = wilson_interval(int(lost.sum()), int(paths["sent"].sum()), Z)
    problems = []
    if 0 < row["expected_rise_ms"] <= tail:
        problems.append(
            f"its RTT rise of {row['expected_rise_ms']:g} ms is within the path floor's "
            f"p50-p99 ({tail:.2f} ms)"
        )
    widening = row["expected_widening_ms"]
    if widening > SLACK_MS and widening <= spread:
        problems.append(
            f"its p10-p90 widening of ~{widening:.2f} ms is within the path floor's spread "
            f"({spread:.2f} ms)"
        )
    if 0 < row["expected_loss"] <= floor_loss:
        problems.append(
            f"its loss of {row['expected_loss']:.3g} is within the floor's "
            f"({floor_loss:.3g} at most)"
        )
    return [f"{what}: not clearly above the noise floor: {'; '.join(problems)}"] if problems else []


# ---------------------------------------------------------------- for a terminal


def pooled(table: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, measurement, path or link, event): the median over repetitions of each
    statistic, and in how many repetitions the impairment agreed with its settings."""
    columns = ["variant", "measurement", "kind", "source", "target", "at_s"]
    numbers = ["p50_ms", "p99_ms", "spread_ms", "loss", "expected_rise_ms", "measured_rise_ms",
               "expected_spread_ms", "expected_loss"]  # fmt: skip
    rows = []
    for key, group in table.groupby(columns, sort=False, dropna=False):
        row = dict(zip(columns, key, strict=True)) | {"repetitions": len(group)}
        row |= {column: group[column].astype(float).median() for column in numbers}
        judged = group["agrees"].dropna()
        row["agrees"] = f"{int(judged.astype(bool).sum())}/{len(judged)}" if len(judged) else ""
        rows.append(row)
    return pd.DataFrame(rows, columns=[*columns, "repetitions", *numbers, "agrees"])


def format_table(table: pd.DataFrame) -> str:
    """calibration.csv pooled over repetitions, a line per measurement; RTTs in ms."""
    if table.empty:
        return "no calibration pings (calibration off, or results from before it)"
    frame = pooled(table)
    lines = []
    for variant, rows in frame.groupby("variant", sort=False):
        lines.append(f"{variant}: RTT p50, p99, p10-p90 spread (ms), loss; for an impairment the")
        lines.append("  RTT rise, spread and loss as set -> as measured, repetitions agreeing")
        for row in rows.itertuples():
            where = f"{row.source} -> {row.target}" if row.kind == "path" else (
                f"{row.source}-{row.target}")  # fmt: skip
            when = "floor" if row.measurement == "floor" else f"at {row.at_s:g} s"
            text = (f"  {when:>9} {row.kind:4} {where:18} {row.p50_ms:8.3f} {row.p99_ms:8.3f} "
                    f"{row.spread_ms:8.3f} {row.loss:6.1%}")  # fmt: skip
            if row.measurement == "impairment":
                text += (
                    f" | rise {row.expected_rise_ms:g} -> {row.measured_rise_ms:.2f}, spread "
                    f"{row.expected_spread_ms:.2f} -> {row.spread_ms:.2f}, loss "
                    f"{row.expected_loss:.1%} -> {row.loss:.1%}, {row.agrees}"
                )
            lines.append(text)
    return "\n".join(lines)
