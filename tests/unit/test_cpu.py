"""CPU accounting: /proc parsers, the runner's cpu.csv rows, the report's shares."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from dmsc.experiments import report
from dmsc.experiments.cpu_shares import COLUMNS, cpu_figure, cpu_shares
from dmsc.experiments.runner import CpuSnapshot, cpu_rows
from dmsc.measurement import cpu

TICK = 1 / cpu.TICKS_PER_S
DELAY = Path(__file__).parent / "data" / "results-delay"


def stat_line(pid: int, name: str, ppid: int, utime: int, stime: int) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime ...
    return f"{pid} ({name}) S {ppid} 1 1 0 -1 4194560 10 0 0 0 {utime} {stime} 0 0 20 0 1 0\n"


def test_a_process_stat_line_gives_its_parent_and_cpu_seconds():
    assert cpu.parse_process_stat(stat_line(42, "python3", 7, 150, 50)) == (7, 200 * TICK)


def test_a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields():
    line = stat_line(42, "a) b (c", 7, 3, 4)
    assert cpu.parse_process_stat(line) == (7, 7 * TICK)


@pytest.mark.parametrize("text", ["", "42 python3 S 1", "42 (x) S 1 2 3", "42 (x) S a b"])
def test_a_malformed_stat_line_is_a_value_error(text):
    with pytest.raises(ValueError):
        cpu.parse_process_stat(text)


def test_the_machine_line_splits_busy_from_idle_and_iowait():
    text = "cpu  100 5 20 800 30 1 2 3 9 9\ncpu0 50 2 10 400 15 0 1 1 0 0\nintr 1\n"
    times = cpu.parse_machine_stat(text)
    assert times.busy_s == pytest.approx((100 + 5 + 20 + 1 + 2 + 3) * TICK)  # guest is in user
    assert times.idle_s == pytest.approx((800 + 30) * TICK)
    with pytest.raises(ValueError, match="no 'cpu' line"):
        cpu.parse_machine_stat("intr 1\n")


def test_a_process_counts_with_its_descendants_and_nothing_else(tmp_path):
    tree = {10: (1, 100), 11: (10, 20), 12: (11, 3), 13: (1, 999)}  # 13 is not below 10
    for pid, (ppid, utime) in tree.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(stat_line(pid, "p", ppid, utime, 0))
    (tmp_path / "14").mkdir()  # gone between the listing and the read: skipped
    (tmp_path / "self").mkdir()
    assert cpu.read_process(10, tmp_path) == pytest.approx(123 * TICK)
    assert cpu.read_process(99, tmp_path) is None


def test_cpu_rows_add_up_to_the_machine_time_and_leave_restarted_programs_to_other():
    before = CpuSnapshot(
        100.0, cpu.MachineTimes(50.0, 10.0),
        {"sg2": ("sg", 5.0), "scsc": ("scsc", 8.0), "sr1": ("sr", 3.0)},
    )  # fmt: skip
    # sr1 restarted (its count went down): not a span of its own; pod1 was not running before
    after = CpuSnapshot(
        110.0, cpu.MachineTimes(56.0, 14.0),
        {"sg2": ("sg", 6.5), "scsc": ("scsc", 9.0), "sr1": ("sr", 0.2), "pod1": ("pod", 0.4)},
    )  # fmt: skip
    clients = [{"client": "pod2", "service": "/B", "cpu_s": 0.5}]
    rows = cpu_rows({"variant": "v", "repetition": 0}, before, after, clients)
    by_role = {(r["node"], r["role"]): r["cpu_s"] for r in rows}
    assert by_role == {("scsc", "scsc"): 1.0, ("sg2", "sg"): 1.5, ("pod2", "client"): 0.5,
                       ("", "other"): 3.0, ("", "idle"): 4.0}  # fmt: skip
    assert sum(by_role.values()) == pytest.approx(10.0)  # busy 6 + idle 4
    assert {r["wall_s"] for r in rows} == {10.0}


def test_other_is_never_negative_when_the_counts_overrun_the_machine():
    before = CpuSnapshot(0.0, cpu.MachineTimes(0.0, 0.0), {"sg1": ("sg", 0.0)})
    after = CpuSnapshot(1.0, cpu.MachineTimes(0.99, 0.01), {"sg1": ("sg", 1.0)})  # tick skew
    rows = cpu_rows({}, before, after, [])
    assert [r["cpu_s"] for r in rows if r["role"] == "other"] == [0.0]


def test_shares_per_variant_by_hand():
    run = report.load_run(DELAY)
    shares = cpu_shares(run.tables["cpu"], run.variants).set_index(["variant", "role"])
    # scsc: sg 2.4 and 3.2 of 16 s; scsc 1.6 and 2.4; idle 8.0 and 6.4
    assert shares.loc[("scsc", "sg"), "share_median"] == pytest.approx(0.175)
    assert shares.loc[("scsc", "sg"), "share_min"] == pytest.approx(0.15)
    assert shares.loc[("scsc", "sg"), "share_max"] == pytest.approx(0.2)
    assert shares.loc[("scsc", "scsc"), "cpu_per_s"] == pytest.approx(0.125)
    assert shares.loc[("scsc", "idle"), "share_median"] == pytest.approx(0.45)
    assert shares.loc[("scsc", "sg"), "repetitions"] == 2
    assert shares.loc[("routing-only", "sg"), "share_median"] == pytest.approx(0.1)
    assert ("routing-only", "scsc") not in shares.index
    roles = list(shares.loc["scsc"].index)
    assert roles == ["sg", "sr", "pod", "client", "scsc", "other", "idle"]  # stacking order


def test_older_results_without_cpu_csv_have_no_shares_and_no_figure(tmp_path):
    assert list(cpu_shares(None, ("a",)).columns) == list(COLUMNS)
    assert cpu_shares(pd.DataFrame(columns=list(report.TABLES["cpu"])), ("a",)).empty
    folder = Path(shutil.copytree(DELAY, tmp_path / "run"))
    (folder / "cpu.csv").unlink()
    written = [p.name for p in report.write_report(folder)]
    assert "cpu.png" not in written and "cpu_shares.csv" in written
    assert pd.read_csv(folder / "cpu_shares.csv").empty


def test_the_figure_stacks_the_roles_in_one_order_whatever_variant_comes_first():
    run = report.load_run(DELAY)  # routing-only has no scsc row, scsc has one
    shares = cpu_shares(run.tables["cpu"], ("routing-only", "scsc"))
    figure = cpu_figure(shares, "t")
    try:
        labels = figure.axes[0].get_legend_handles_labels()[1]
        assert labels == ["sg", "sr", "pod", "client", "scsc", "other", "idle"]
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)
