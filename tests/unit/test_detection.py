"""detection.csv and its figure: from the hand-made results-delay and a synthetic sweep."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from dmsc.experiments import report
from dmsc.experiments.detection import build_detection, detection_figure, sweeps

DELAY = Path(__file__).parent / "data" / "results-delay"


def test_results_delay_scsc_detected_twice_with_one_false_alarm():
    run = report.load_run(DELAY)
    table = build_detection(report.build_summary(run), run.metadata)
    assert list(table["variant"]) == ["scsc"]  # routing-only has no SCSC to detect anything
    row = table.iloc[0]
    assert (row["repetitions"], row["detected"], row["moved"]) == (2, 2, 2)
    assert row["false_alarms"] == 1  # #0: sg5->/B/1 without replies before the impairment
    assert not row["reliable"]
    assert row["detect_s_median"] == pytest.approx(0.4)  # 0.3 and 0.5
    assert row["reroute_s_median"] == pytest.approx(1.0)  # 0.8 and 1.2
    assert row["max_delay_ms"] == 50 and math.isnan(row["max_jitter_ms"])
    assert row["delay_ms"] == 100 and row["probe_interval_ms"] == 100
    # two of two: Wilson's 95 % interval still reaches down to a third
    assert row["detected_low"] == pytest.approx(0.342, abs=1e-3) and row["detected_high"] == 1


def sweep_summary() -> tuple[pd.DataFrame, dict]:
    rows, variants = [], {}
    for interval in (50, 200):
        for delay in (2, 10):
            name = f"p{interval}-d{delay}"
            variants[name] = {
                "scsc": {"probe_interval_ms": interval, "probe_window": 10,
                         "thresholds": {"default": {"max_delay_ms": delay / 2},
                                        "services": {"/B": {"max_loss": 0.5}}}},
                "workload": [{"service": "/B"}],
                "timeline": [{"index": 0, "action": "impair", "impairment": {"delay_ms": delay}}],
            }  # fmt: skip
            for repetition in range(10):
                missed = delay == 2 and repetition < 3 + (interval == 50) * 4
                rows.append({
                    "variant": name, "repetition": repetition, "event_index": 0,
                    "action": "impair", "target": "sr2-sg4", "at_s": 5.0,
                    "detect_s": math.nan if missed else 0.5, "reroute_s": 0.9,
                    "false_alarms": int(interval == 50 and repetition == 0),
                    "measured_rise_ms": 2 * delay,
                })  # fmt: skip
    variants["no-scsc"] = {"scsc": None}
    rows.append({**rows[0], "variant": "no-scsc"})
    return pd.DataFrame(rows), {"variants": variants}


def test_a_sweep_gives_a_row_per_setting_with_its_knobs_and_counts():
    summary, metadata = sweep_summary()
    table = build_detection(summary, metadata).set_index("variant")
    assert list(table.index) == ["p50-d2", "p50-d10", "p200-d2", "p200-d10"]
    assert table.loc["p200-d2", "detected"] == 7 and table.loc["p50-d2", "detected"] == 3
    assert table.loc["p200-d10", "reliable"] and not table.loc["p200-d2", "reliable"]
    assert not table.loc["p50-d10", "reliable"]  # detected 10 of 10, but one false alarm
    assert table.loc["p200-d10", "detected_low"] == pytest.approx(0.722, abs=1e-3)
    assert table.loc["p50-d2", "max_delay_ms"] == 1.0
    assert table.loc["p50-d2", "max_loss"] == 0.5  # /B's own limit over the default
    assert table.loc["p50-d10", "measured_rise_ms"] == 20
    assert sweeps(table.reset_index())


def test_the_figure_draws_a_line_per_probe_interval():
    summary, metadata = sweep_summary()
    table = build_detection(summary, metadata)
    figure = detection_figure(table, "sweep")
    try:
        curves = figure.axes[0].containers  # one errorbar per probe interval
        assert [c.get_label() for c in curves] == ["probe every 50 ms", "probe every 200 ms"]
        lines = [curve.lines[0] for curve in curves]
        assert [list(line.get_xdata()) for line in lines] == [[2, 10], [2, 10]]
        assert list(lines[1].get_ydata()) == pytest.approx([0.7, 1.0])  # every 200 ms
        labels = figure.axes[0].get_legend_handles_labels()[1]
        assert labels == ["false alarm seen", "probe every 50 ms", "probe every 200 ms"]
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)


def test_one_delay_is_no_sweep_and_draws_no_figure(tmp_path):
    run = report.load_run(DELAY)
    assert not sweeps(build_detection(report.build_summary(run), run.metadata))
