"""How reliably the SCSC sees a degradation: detection.csv and detection.png, from summary.csv.

A row per (variant, impairment) with an SCSC: what the variant set (``probe_interval_ms``,
``probe_window``, the limits of the first service its workload calls), what the impairment
set (``delay_ms``, ``jitter_ms``, ``loss``; one way, per direction impaired) and what the
link measured (``measured_rise_ms``: the echoes' RTT rise, twice the delay when both ways are
impaired; the median over repetitions of summary.csv's column), and over its repetitions:

- ``detected``: repetitions whose telemetry crossed a limit during the impairment
  (``detect_s`` not NaN), with ``detected_low`` and ``detected_high``, the 95 % Wilson interval
  of the detection probability (10 of 10 is at least 0.72);
- ``false_alarms``: repetitions with a crossing before the first event, nothing impaired yet;
- ``moved``: repetitions whose traffic moved (``reroute_s`` not NaN);
- ``detect_s_median`` and ``reroute_s_median``;
- ``reliable``: detected in every repetition, with no false alarm in any.

A sweep (experiments/detection-sweep.yaml) is a run whose variants differ in the probe interval,
the limit and the impairment: the figure draws the detected fraction against the impairment's
delay, a line per probe interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from dmsc import results
from dmsc.experiments.stats import wilson_interval

Z_95 = 1.959964
IMPAIRMENT = ("delay_ms", "jitter_ms", "loss")
LIMITS = ("max_delay_ms", "max_jitter_ms", "max_loss")
COLUMNS = (
    "variant", "event_index", "target", "probe_interval_ms", "probe_window", *LIMITS,
    *IMPAIRMENT, "measured_rise_ms", "repetitions", "detected", "detected_low", "detected_high",
    "false_alarms", "moved", "detect_s_median", "reroute_s_median", "reliable",
)  # fmt: skip


def build_detection(summary: pd.DataFrame, metadata: Mapping[str, Any]) -> pd.DataFrame:
    """detection.csv: a row per (variant with an SCSC, impair event) of summary.csv."""
    impairs = summary[summary["action"] == "impair"]
    rows = []
    for (variant, index), group in impairs.groupby(["variant", "event_index"], sort=False):
        settings = metadata["variants"].get(variant, {})
        if settings.get("scsc") is None:
            continue
        detected = int(group["detect_s"].notna().sum())
        alarms = int((group["false_alarms"] > 0).sum())
        low, high = wilson_interval(detected, len(group), Z_95)
        rows.append({
            "variant": variant, "event_index": index, "target": group["target"].iloc[0],
            **_probing(settings["scsc"]), **_limits(settings), **_impairment(settings, index),
            "measured_rise_ms": group["measured_rise_ms"].median(),
            "repetitions": len(group), "detected": detected,
            "detected_low": round(low, 3), "detected_high": round(high, 3),
            "false_alarms": alarms, "moved": int(group["reroute_s"].notna().sum()),
            "detect_s_median": group["detect_s"].median(),
            "reroute_s_median": group["reroute_s"].median(),
            "reliable": detected == len(group) and alarms == 0,
        })  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _probing(scsc: Mapping[str, Any]) -> dict[str, Any]:
    return {"probe_interval_ms": scsc.get("probe_interval_ms"),
            "probe_window": scsc.get("probe_window")}  # fmt: skip


def _limits(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The limits of the first service the workload calls (its own, else the default)."""
    thresholds = settings["scsc"].get("thresholds") or {}
    limits = dict(thresholds.get("default") or {})
    services = thresholds.get("services") or {}
    workload = settings.get("workload") or []
    if workload and workload[0].get("service") in services:
        limits |= services[workload[0]["service"]]
    return {key: _number(limits.get(key)) for key in LIMITS}


def _impairment(settings: Mapping[str, Any], index: int) -> dict[str, Any]:
    timeline = settings.get("timeline", [])
    events = [e for i, e in enumerate(timeline) if e.get("index", i) == index]
    impairment = (events[0].get("impairment") if events else None) or {}
    return {key: _number(impairment.get(key)) for key in IMPAIRMENT}


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def sweeps(detection: pd.DataFrame) -> bool:
    """Whether the run varies the impairment's delay: only then is there a curve to draw."""
    return detection["delay_ms"].dropna().nunique() > 1


def detection_figure(detection: pd.DataFrame, title: str):
    """The detected fraction (95 % Wilson interval as bars) against the impairment's delay, a
    line per probe interval; a hollow marker where some repetition had a false alarm."""
    plt = results.pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for colour, (interval, rows) in enumerate(detection.groupby("probe_interval_ms", sort=True)):
        rows = rows.sort_values("delay_ms")
        fraction = rows["detected"] / rows["repetitions"]
        errors = [fraction - rows["detected_low"], rows["detected_high"] - fraction]
        axis.errorbar(rows["delay_ms"], fraction, yerr=errors, color=f"C{colour}", marker="o",
                      capsize=3, label=f"probe every {interval:g} ms")  # fmt: skip
        alarmed = rows[rows["false_alarms"] > 0]
        axis.scatter(alarmed["delay_ms"], alarmed["detected"] / alarmed["repetitions"], s=110,
                     facecolors="none", edgecolors="red", zorder=3)  # fmt: skip
    axis.scatter([], [], s=110, facecolors="none", edgecolors="red", label="false alarm seen")
    axis.set_xscale("log")
    delays = sorted(detection["delay_ms"].dropna().unique())
    axis.set_xticks(delays, [f"{d:g}" for d in delays])  # the delays swept, not powers of 10
    axis.minorticks_off()
    axis.set_ylim(-0.05, 1.05)
    axis.set_xlabel("delay added to the link (ms, each way)")
    axis.set_ylabel("repetitions detected (fraction)")
    axis.legend(fontsize=8, loc="lower right")
    axis.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure
