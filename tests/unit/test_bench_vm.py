"""The pure part of benchmarks/bench_vm.py: the slowdown table (the steps need root and qemu)."""

import math

from benchmarks import bench_vm

HOST = {
    "kernel": {"tcp_gbps": 2.0, "udp_received_pps": 50000.0, "rtt_median_us": 80.0,
               "added_rtt_median_us": 20.0},
    "python": {"tcp_gbps": 0.5, "udp_received_pps": 30000.0, "rtt_median_us": 200.0,
               "added_rtt_median_us": 150.0},
}  # fmt: skip
VM = {
    "python": {"tcp_gbps": 0.025, "udp_received_pps": 2000.0, "rtt_median_us": 3000.0,
               "added_rtt_median_us": -5.0},
}  # fmt: skip


def test_slowdown_is_how_many_times_worse_in_the_vm():
    assert bench_vm.slowdown(0.5, 0.025, higher_is_better=True) == 20.0
    assert bench_vm.slowdown(200.0, 3000.0, higher_is_better=False) == 15.0
    assert math.isnan(bench_vm.slowdown(150.0, -5.0, higher_is_better=False))


def test_rows_cover_the_variants_measured_in_both():
    rows = bench_vm.slowdown_rows(HOST, VM)
    assert {row.variant for row in rows} == {"python"}
    assert len(rows) == len(bench_vm.METRICS)
    table = bench_vm.format_rows(rows)
    assert "20.0x" in table and "15.0x" in table and "n/a" in table


def test_median():
    assert bench_vm.median([3.0, 1.0, 2.0]) == 2.0
    assert bench_vm.median([4.0, 1.0, 2.0, 3.0]) == 2.5
