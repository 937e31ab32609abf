"""netem delay, jitter and loss on a link of a DMSC topology, measured inside the VM end to end
through the Python forwarders (sg1 — sr1 — sg2, pod1 pinging pod2's instance /B/2, netem on
sr1's end of sr1 — sg2; no netem, delay and delay with jitter take turns during one ping
stream). One boot runs ``python3 -m dmsc.vm.guest.forwarded_netem``; its report
lands in the results folder and every test reads it.

The tolerances, and the measurements that justify them, are stated in
``dmsc/vm/guest/forwarded_netem.py``; the tests repeat the main bounds so that a change there is
seen here.
"""

from __future__ import annotations

import itertools

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.slow]


def describe(report: dict, name: str) -> str:
    check = report["checks"].get(name) or report["checks"].get("network", {})
    return f"{check.get('detail')}\nseconds: {report['seconds']}\nmeasured: {check.get('measured')}"


def test_every_check_ran_and_the_exit_status_says_whether_all_passed(forwarded_netem):
    names = set(forwarded_netem["checks"])
    assert names == {"delay", "jitter", "loss", "forwarders"}, describe(forwarded_netem, "network")
    all_ok = all(check["ok"] for check in forwarded_netem["checks"].values())
    assert (forwarded_netem["exit_status"] == 0) == all_ok


def test_delay_raises_the_median_rtt_by_the_configured_delay(forwarded_netem):
    check = forwarded_netem["checks"]["delay"]
    assert check["ok"], describe(forwarded_netem, "delay")
    measured = check["measured"]
    assert measured["samples"] >= 250  # 24 windows of ~14 pings
    assert 40 <= measured["median_rise"] <= 62
    assert 48 <= measured["floor_rise"] <= 55


def test_jitter_spreads_rtts_as_the_configured_jitter_predicts(forwarded_netem):
    check = forwarded_netem["checks"]["jitter"]
    assert check["ok"], describe(forwarded_netem, "jitter")
    measured = check["measured"]
    assert abs(measured["median"] - measured["predicted_median"]) <= 10
    assert abs(measured["lower_spread"] - measured["predicted_lower_spread"]) <= 6
    assert measured["lower_spread"] > measured["delay_lower_spread"]
    assert 10 <= measured["lower_edge"] <= 24  # netem delay 50ms 20ms


def test_loss_is_within_a_binomial_band(forwarded_netem):
    check = forwarded_netem["checks"]["loss"]
    assert check["ok"], describe(forwarded_netem, "loss")
    assert check["measured"]["sent"] == 400
    assert 0.12 <= check["measured"]["lost_fraction"] <= 0.28


def test_the_echoes_crossed_every_python_forwarder_on_the_path(forwarded_netem):
    check = forwarded_netem["checks"]["forwarders"]
    assert check["ok"], describe(forwarded_netem, "forwarders")
    assert forwarded_netem["path"] == ["sg1", "sr1", "sg2"]
    grown = check["measured"]["tx_packets_grown"]
    assert set(grown) == {"sg1", "sr1", "sg2"}
    answered = check["measured"]["answered"]
    assert answered >= 3 * 250 + 0.7 * 400
    assert all(grown[router][way] >= answered for router in grown for way in grown[router])
    # sr1 sent the requests that its own netem then dropped: more than were answered
    assert grown["sr1"]["requests"] > answered


def test_the_report_records_the_exact_tc_commands(forwarded_netem):
    impaired = forwarded_netem["impaired"]
    assert impaired["link"] == ["sr1", "sg2"] and impaired["host"] == "sr1"
    tc = [c["argv"] for c in forwarded_netem["commands"] if c["argv"][0] == "tc"]
    prefix = ["tc", "qdisc", "replace", "dev", impaired["interface"], "root", "netem"]
    assert [*prefix, "delay", "50ms"] in tc
    assert [*prefix, "delay", "50ms", "20ms"] in tc
    assert [*prefix, "loss", "20%"] in tc
    assert tc[-1] == ["tc", "qdisc", "del", "dev", impaired["interface"], "root"]
    assert all(c["host"] == "sr1" for c in forwarded_netem["commands"] if c["argv"][0] == "tc")


def test_the_phases_took_turns_through_one_ping_stream(forwarded_netem):
    windows = forwarded_netem["windows"]
    assert [w["phase"] for w in windows[:3]] == ["base", "delay", "jitter"]
    assert len(windows) == 3 * forwarded_netem["parameters"]["cycles"]
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(windows))
    streams = [c for c in forwarded_netem["commands"] if "-D" in c["argv"]]
    assert len(streams) == 1 and streams[0]["host"] == "pod1"
    for name in ("base", "delay", "jitter"):
        phase = forwarded_netem["samples"][name]
        assert len(phase["rounds"]) == forwarded_netem["parameters"]["cycles"]
