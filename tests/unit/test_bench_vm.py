"""The pure part of benchmarks/bench_vm.py: the slowdown table, netem's accuracy and their
formatting (the steps need root and a VM)."""

import argparse
import math

import pytest

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


def forwarded_netem_report(base, delay, jitter, received=320) -> dict:
    rounds = lambda rtts: {"rounds": [rtts[: len(rtts) // 2], rtts[len(rtts) // 2 :]]}  # noqa: E731
    return {
        "parameters": {"delay_ms": 50.0, "jitter_ms": 20.0, "loss": 0.2},
        "samples": {"base": rounds(base), "delay": rounds(delay), "jitter": rounds(jitter)},
        "checks": [
            {"name": "delay", "ok": True, "measured": {}},
            {"name": "loss", "ok": True, "measured": {"sent": 400, "received": received}},
        ],
        "seconds": {"started": 4.2},
    }


def test_netem_accuracy_compares_configured_and_measured():
    base = [1.0 + i / 100 for i in range(100)]  # 1.00 .. 1.99 ms
    delay = [rtt + 50 for rtt in base]
    jitter = [rtt - 20 + 40 * i / 99 for i, rtt in enumerate(delay)]  # widened by 40 ms
    accuracy = bench_vm.netem_accuracy(forwarded_netem_report(base, delay, jitter))
    assert accuracy["base_rtt_ms"][50] == 1.49 and accuracy["base_rtt_ms"][99] == 1.98
    assert accuracy["delay_rise_ms"] == pytest.approx(50.0)
    assert 30 < accuracy["jitter_spread_ms"] < 34  # p10-p90 of a +-20 ms ramp widens by ~32
    assert accuracy["loss_measured"] == pytest.approx(0.2) and accuracy["ok"]
    table = bench_vm.format_netem({"uml": accuracy, "qemu": accuracy})
    assert "delay: median rise, ms" in table and "20.0%" in table and "NO" not in table


def test_backend_list_names_only_known_backends():
    assert bench_vm.backend_list("uml, qemu") == ["uml", "qemu"]
    for bad in ("", "uml,xen"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench_vm.backend_list(bad)
