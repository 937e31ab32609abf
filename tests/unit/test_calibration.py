"""The noise floor and the impairments' accuracy, computed from pings.csv (no emulation): the
statistics, what netem should do, the intervals that judge it, and the report's columns and
notes on the hand-made results-delay folder (tests/unit/data: 20 echoes per measurement;
path floor 1.0..2.9 ms with scsc #0's last lost, link floor 0.2 ms, impaired 100.2..100.39 ms
for ``delay_ms: 100, direction: forward``)."""

from __future__ import annotations

import math
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dmsc.errors import DmscError
from dmsc.experiments import calibration, report
from dmsc.experiments.calibration import Configured
from dmsc.experiments.stats import percentile_interval, wilson_interval
from dmsc.measurement.ping import requests

DELAY = Path(__file__).parent / "data" / "results-delay"


# ---------------------------------------------------------------- ping output


STREAM = """\
PING fe80::1%sr2-eth1(fe80::1%sr2-eth1) 56 data bytes
[100.010500] 64 bytes from fe80::1%sr2-eth1: icmp_seq=1 ttl=64 time=0.500 ms
[100.111000] 64 bytes from fe80::1%sr2-eth1: icmp_seq=3 ttl=64 time=1.000 ms
[100.160000] 64 bytes from fe80::1%sr2-eth1: icmp_seq=4 ttl=64 time=10.000 ms

--- fe80::1%sr2-eth1 ping statistics ---
5 packets transmitted, 3 received, 40% packet loss, time 200ms
"""


def test_every_request_is_a_row_with_lost_ones_interpolated_in_time():
    sent = requests(STREAM, 0.05, started_at=99.0)
    assert [r.seq for r in sent] == [1, 2, 3, 4, 5]
    assert [r.rtt_ms for r in sent] == [0.5, None, 1.0, 10.0, None]
    assert sent[0].sent_at == pytest.approx(100.01)
    assert sent[1].sent_at == pytest.approx(100.06)  # halfway between seq 1 and 3
    assert sent[4].sent_at == pytest.approx(100.20)  # one interval after the last answered


def test_a_ping_without_replies_still_counts_its_requests():
    output = "PING x\n\n--- x ping statistics ---\n3 packets transmitted, 0 received\n"
    sent = requests(output, 0.1, started_at=5.0)
    assert [(r.sent_at, r.rtt_ms) for r in sent] == [(5.0, None), (5.1, None), (5.2, None)]


def test_a_killed_ping_counts_up_to_its_last_reply():
    truncated = STREAM.split("\n\n")[0]
    assert [r.seq for r in requests(truncated, 0.05, started_at=0)] == [1, 2, 3, 4]
    assert requests("connect: Network is unreachable\n", 0.05, started_at=0) == []


# ---------------------------------------------------------------- statistics


def test_measure_is_nearest_rank_and_counts_lost_requests():
    stats = calibration.measure([*(float(v) for v in range(1, 11)), None, math.nan])
    assert stats["sent"] == 12 and stats["received"] == 10
    assert stats["loss"] == pytest.approx(2 / 12)
    assert (stats["p10_ms"], stats["p50_ms"], stats["p90_ms"], stats["p99_ms"]) == (1, 5, 9, 10)
    assert stats["spread_ms"] == 8


def test_percentile_intervals_cover_the_true_percentile_as_often_as_promised():
    rng = random.Random(7)
    for q in (10, 50, 90):
        covered = 0
        for _ in range(400):
            samples = [rng.random() for _ in range(100)]
            low, high = percentile_interval(samples, q, calibration.Z)
            covered += low <= q / 100 <= high
        assert covered / 400 >= 0.97, q  # promised 99 %; the ranks are rounded outward


def test_wilson_interval_is_exact_at_the_ends_and_contains_the_observed_fraction():
    assert wilson_interval(0, 100, 2.576)[0] == 0.0
    assert wilson_interval(100, 100, 2.576)[1] == 1.0
    low, high = wilson_interval(20, 100, 2.576)
    assert low < 0.2 < high and high - low < 0.25
    assert all(math.isnan(v) for v in wilson_interval(0, 0, 2.576))


# ---------------------------------------------------------------- what netem should do


def test_the_expected_effect_counts_the_directions_an_echo_crosses():
    both = Configured.from_metadata({"delay_ms": 10, "loss": 0.1})
    forward = Configured.from_metadata({"delay_ms": 10, "loss": 0.1, "direction": "forward"})
    assert (both.ways, both.rise_ms, both.round_trip_loss) == (2, 20, pytest.approx(0.19))
    assert (forward.ways, forward.rise_ms, forward.round_trip_loss) == (1, 10, pytest.approx(0.1))
    assert not Configured.from_metadata({"jitter_ms": 5, "distribution": "normal"}).modelled_jitter
    assert not Configured.from_metadata({"jitter_ms": 5, "correlation": 0.25}).modelled_jitter


@pytest.mark.parametrize(
    ("ways", "spread"),
    [
        (1, 1.6 * 10),
        (2, 2 * (2 - 2 * math.sqrt(0.2)) * 10),
    ],  # uniform; triangular: p90 = 2J(1 - sqrt 0.2)
)
def test_the_expected_spread_of_uniform_jitter_on_a_still_link(ways, spread):
    still = [1.0] * 50
    configured = Configured(delay_ms=20, jitter_ms=10, ways=ways)
    assert calibration.expected_spread(still, configured) == pytest.approx(spread, abs=0.01)


def test_jitter_with_a_distribution_table_is_not_modelled():
    configured = Configured(jitter_ms=10, modelled_jitter=False)
    assert math.isnan(calibration.expected_spread([1.0] * 10, configured))


def _uniform(rng: random.Random, n: int, base: float, jitter: float, ways: int) -> list[float]:
    return [base + sum(rng.uniform(-jitter, jitter) for _ in range(ways)) for _ in range(n)]


def test_netem_doing_what_it_was_told_agrees_and_a_different_setting_does_not():
    rng = random.Random(3)
    floor = [0.2 + rng.uniform(0, 0.1) for _ in range(100)]
    told = Configured(delay_ms=50, jitter_ms=20, ways=2)
    done = [f + 100 + rng.uniform(-20, 20) + rng.uniform(-20, 20) for f in floor]
    assert calibration.compare(floor, done, told)["agrees"] is True
    other = calibration.compare(floor, done, Configured(delay_ms=45, jitter_ms=20, ways=2))
    assert other["agrees"] is False and "RTT rise" in other["disagreement"]
    narrower = calibration.compare(floor, done, Configured(delay_ms=50, jitter_ms=5, ways=2))
    assert narrower["agrees"] is False and "spread" in narrower["disagreement"]


def test_loss_is_judged_by_its_interval():
    floor = [0.2] * 100
    lost_a_fifth = [None] * 36 + [0.2] * 64  # 1 - 0.8^2 = 0.36 expected both ways
    assert calibration.compare(floor, lost_a_fifth, Configured(loss=0.2, ways=2))["agrees"]
    none_lost = calibration.compare(floor, [0.2] * 100, Configured(loss=0.2, ways=2))
    assert none_lost["agrees"] is False and "loss 0/100" in none_lost["disagreement"]
    nothing = calibration.compare(floor, [None] * 10, Configured(delay_ms=5))
    assert nothing["agrees"] is False and "no echo answered" in nothing["disagreement"]


# ---------------------------------------------------------------- a results folder


def copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DELAY, tmp_path / DELAY.name))


def test_calibration_csv_has_a_row_per_measurement_with_the_floor_first():
    table = report.build_calibration(DELAY)
    assert tuple(table.columns) == calibration.COLUMNS
    assert len(table) == 9  # three repetitions: path floor, link floor, the impairment
    first = table.iloc[0]
    assert (first["measurement"], first["kind"], first["source"], first["target"]) == (
        "floor",
        "path",
        "pod2",
        "/B",
    )
    assert (first["sent"], first["received"], first["loss"]) == (20, 19, 0.05)
    assert (first["p50_ms"], first["p99_ms"], first["spread_ms"]) == (1.9, 2.8, pytest.approx(1.6))
    impaired = table[table["measurement"] == "impairment"]
    assert (impaired["expected_rise_ms"] == 100).all()
    assert impaired["measured_rise_ms"].tolist() == pytest.approx([100.09] * 3)
    assert impaired["agrees"].tolist() == [True, True, True]


def test_summary_carries_the_floor_and_the_impairment_as_set_and_as_measured():
    summary = report.build_summary(DELAY).set_index(["variant", "repetition"])
    row = summary.loc[("scsc", 0)]
    assert (row["floor_p50_ms"], row["floor_p99_ms"], row["floor_loss"]) == (1.9, 2.8, 0.05)
    assert row["floor_spread_ms"] == pytest.approx(1.6)
    assert (row["expected_rise_ms"], row["measured_rise_ms"]) == (100, pytest.approx(100.09))
    assert (row["expected_loss"], row["measured_loss"]) == (0, 0)
    assert summary.loc[("scsc", 1), "floor_p99_ms"] == 2.9


def test_an_impairment_measured_unlike_its_setting_is_noted(tmp_path):
    folder = copy(tmp_path)
    pings = pd.read_csv(folder / "pings.csv")
    impaired = (pings["variant"] == "routing-only") & (pings["measurement"] == "impairment")
    pings.loc[impaired, "rtt_ms"] -= 10  # 90 ms where 100 was set
    pings.to_csv(folder / "pings.csv", index=False)
    notes = report.load_run(folder).notes
    assert any(
        n.startswith("routing-only: impair sr2-sg4 at 10 s: measured unlike its configuration "
                     "in 1 of 1 repetitions (RTT rise 90.09 ms") for n in notes
    ), notes  # fmt: skip
    assert not any(n.startswith("scsc:") for n in notes)


def test_an_effect_within_the_floor_is_noted():
    table = report.build_calibration(DELAY)
    floor = (table["measurement"] == "floor") & (table["kind"] == "path")
    table.loc[floor, ["p50_ms", "p99_ms", "spread_ms"]] = [5.0, 150.0, 120.0]
    table.loc[floor, "loss"] = 0.5
    notes = calibration.notes(table)
    assert len(notes) == 2  # per variant
    assert (
        "not clearly above the noise floor: its RTT rise of 100 ms is within the path "
        in (notes[0])
    )
    assert "p50-p99 (145.00 ms)" in notes[0]


def test_a_missing_pings_table_is_noted_and_leaves_the_columns_empty(tmp_path):
    folder = copy(tmp_path)
    (folder / "pings.csv").unlink()
    run = report.load_run(folder)
    assert f"pings.csv is missing: {report.OPTIONAL_TABLES['pings']}" in run.notes
    summary = report.build_summary(run)
    assert summary[list(calibration.SUMMARY_METRICS)].isna().all().all()
    assert calibration.format_table(report.build_calibration(run)).startswith("no calibration")


def test_a_bad_pings_row_is_refused_with_file_line_and_column(tmp_path):
    folder = copy(tmp_path)
    with (folder / "pings.csv").open("a") as stream:
        stream.write("scsc,0,warmup,path,pod2,/B,,1,0.1,0.3\n")
    with pytest.raises(DmscError, match=r"pings.csv: line 182: column measurement: 'warmup'"):
        report.load_run(folder)


def test_the_table_for_a_terminal_pools_the_repetitions():
    text = calibration.format_table(report.build_calibration(DELAY))
    assert "floor path pod2 -> /B" in text and "floor link sr2-sg4" in text
    assert "rise 100 -> 100.09" in text and ", 2/2" in text and ", 1/1" in text
