"""The pure parts of the in-VM netem check through the forwarders (dmsc.vm.guest.forwarded_netem):
commands, path and verdicts, on synthetic RTTs shaped like the VM's (a floor plus bursty noise)."""

from __future__ import annotations

import itertools
import random

import pytest

from dmsc.experiments.stats import jittered_percentile
from dmsc.topologies import figure2
from dmsc.topologies.builders import linear
from dmsc.vm.guest import forwarded_netem as fn

ROUNDS, PER_ROUND = 10, 30


def path_noise(rng: random.Random) -> float:
    """The forwarded path's own RTT: a 4 ms floor, mostly a few ms more, sometimes a stall."""
    return 4.0 + rng.expovariate(1 / 5.0) + (rng.uniform(20, 100) if rng.random() < 0.05 else 0)


def rounds(rng: random.Random, added=lambda rng: 0.0) -> fn.PhaseSamples:
    rtts = [[path_noise(rng) + added(rng) for _ in range(PER_ROUND)] for _ in range(ROUNDS)]
    return fn.PhaseSamples(rtts, ROUNDS * PER_ROUND)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(7)


def test_commands_are_argument_lists():
    assert fn.netem_command("sr1-eth1", ("delay", "50ms", "20ms")) == [
        "tc", "qdisc", "replace", "dev", "sr1-eth1", "root", "netem", "delay", "50ms", "20ms",
    ]  # fmt: skip
    assert fn.netem_command("sr1-eth1", ()) == ["tc", "qdisc", "del", "dev", "sr1-eth1", "root"]
    assert fn.ping_command("fd00::1", 30, 0.05) == [
        "ping", "-6", "-n", "-c", "30", "-i", "0.05", "-W", "5", "fd00::1",
    ]  # fmt: skip
    assert "-q" in fn.ping_command("fd00::1", 400, 0.01, quiet=True)


def test_the_stream_prints_arrival_times_and_runs_until_interrupted():
    argv = fn.stream_command("fd00::1")
    assert "-D" in argv and "-c" not in argv
    assert argv[argv.index("-i") + 1] == "0.05"


STREAM = """PING fd00::1(fd00::1) 56 data bytes
[1000.100000] 64 bytes from fd00::1: icmp_seq=1 ttl=62 time=100 ms
[1000.060000] 64 bytes from fd00::1: icmp_seq=2 ttl=62 time=10.0 ms
[1000.070000] 64 bytes from fd00::1: icmp_seq=2 ttl=62 time=20.0 ms (DUP!)
[1000.210000] 64 bytes from fd00::1: icmp_seq=5 ttl=62 time=10.0 ms

--- fd00::1 ping statistics ---
6 packets transmitted, 3 received, +1 duplicates, 50% packet loss, time 250ms
"""


def test_timed_replies_carry_their_send_time():
    replies = fn.parse_timed_replies(STREAM)
    assert sorted(replies) == [1, 2, 5]
    assert replies[1].sent_at == pytest.approx(1000.0)
    assert replies[2] == fn.Reply(2, pytest.approx(1000.05), 10.0)  # the duplicate ignored
    assert fn.parse_ping_counts(STREAM) == (6, 3)


def test_send_times_of_lost_requests_are_interpolated():
    times = fn.send_times(fn.parse_timed_replies(STREAM), 6, 0.05)
    assert times == pytest.approx([1000.0, 1000.05, 1000.1, 1000.15, 1000.2, 1000.25])
    assert fn.send_times({}, 6, 0.05) == []


def test_requests_count_for_the_phase_that_held_the_link_when_they_left():
    # one request every 0.05 s from t=0.05; windows of 1 s; requests within the guards skipped
    replies = {n: fn.Reply(n, 0.05 * n, float(n)) for n in range(1, 60) if n != 10}
    windows = [fn.Window("base", 0.0, 1.0), fn.Window("delay", 1.1, 2.1),
               fn.Window("base", 2.2, 3.0)]  # fmt: skip
    samples = fn.attribute(replies, 60, windows)
    assert set(samples) == {"base", "delay"}
    first, second = samples["base"].rounds
    assert first == [float(n) for n in range(1, 16) if n != 10]  # 0.05..0.75 s
    assert second == [float(n) for n in range(45, 56)]  # 2.25..2.75 s
    assert samples["base"].sent == 15 + 11  # the lost request 10 was sent, in the first
    assert samples["delay"].rounds == [[float(n) for n in range(23, 38)]]  # 1.15..1.85 s
    assert samples["delay"].pooled == samples["delay"].rounds[0]


def test_phases_alternate_none_delay_jitter():
    assert [phase.netem for phase in fn.PHASES] == [
        (), ("delay", "50ms"), ("delay", "50ms", "20ms"),
    ]  # fmt: skip
    assert fn.LOSS_PHASE.netem == ("loss", "20%")


def test_the_path_crosses_the_impaired_link():
    path = fn.path_routers(linear(1), "pod1", "/B/2")
    assert path == ["sg1", "sr1", "sg2"]
    assert fn.IMPAIRED_LINK in set(itertools.pairwise(path))
    assert fn.path_routers(figure2.spec(), "pod2", "/B/4") == ["sg2", "sr2", "sg4"]


def test_a_faithful_delay_passes(rng):
    base, delay = rounds(rng), rounds(rng, lambda rng: 50.0 + 1.5)  # netem's timer is late
    check = fn.delay_verdict(base, delay)
    assert check.ok, check.detail
    assert 48 < check.measured["median_rise"] < 56
    assert check.measured["median_rise_se"] > 0


@pytest.mark.parametrize("added", [30.0, 70.0])
def test_a_wrong_delay_fails(rng, added):
    check = fn.delay_verdict(rounds(rng), rounds(rng, lambda rng: added))
    assert not check.ok
    assert "median rise" in check.detail and "fastest RTT's rise" in check.detail


def test_lost_replies_fail_the_delay_check(rng):
    base, delay = rounds(rng), rounds(rng, lambda rng: 50.0)
    delay.rounds[0] = delay.rounds[0][:10]  # 20 of 300 missing
    check = fn.delay_verdict(base, delay)
    assert not check.ok and "only 280 of 300 replies" in check.detail


def test_uniform_jitter_of_the_configured_size_passes(rng):
    delay = rounds(rng, lambda rng: 50.0)
    jitter = rounds(rng, lambda rng: 50.0 + rng.uniform(-20, 20))
    check = fn.jitter_verdict(delay, jitter)
    assert check.ok, check.detail
    measured = check.measured
    assert abs(measured["lower_spread"] - measured["predicted_lower_spread"]) < 3
    assert measured["delay_lower_spread"] < measured["lower_spread"]
    assert 10 <= measured["lower_edge"] <= 24


@pytest.mark.parametrize(
    ("size", "problems"),
    [(0.0, ["p10-median spread", "lower edge"]), (5.0, ["p10-median spread", "lower edge"]),
     (45.0, ["p10-median spread", "lower edge"])],
)  # fmt: skip
def test_jitter_of_another_size_fails(rng, size, problems):
    delay = rounds(rng, lambda rng: 50.0)
    jitter = rounds(rng, lambda rng: 50.0 + rng.uniform(-size, size))
    check = fn.jitter_verdict(delay, jitter)
    assert not check.ok
    assert all(problem in check.detail for problem in problems), check.detail


def test_a_shifted_jitter_phase_fails_on_its_median(rng):
    delay = rounds(rng, lambda rng: 50.0)
    check = fn.jitter_verdict(delay, rounds(rng, lambda rng: 80.0 + rng.uniform(-20, 20)))
    assert not check.ok and "median" in check.detail


def test_jittered_quantiles_of_a_constant_are_those_of_the_uniform():
    constant = [50.0] * 10
    assert jittered_percentile(constant, 20.0, 1, 50) == pytest.approx(50.0)
    assert jittered_percentile(constant, 20.0, 1, 10) == pytest.approx(34.0)
    assert jittered_percentile([40.0, 60.0], 10.0, 1, 50) == pytest.approx(50.0, abs=1e-6)


def test_the_ports_on_the_path_each_way():
    link_ends = {("sg1", "sr1"): ("sg1-eth0", "sr1-eth0"), ("sr1", "sg2"): ("sr1-eth1", "sg2-eth0")}
    ports = fn.path_ports(["sg1", "sr1", "sg2"], link_ends, ("sg1-eth2", "sg2-eth2"))
    assert ports == {
        "sg1": {"requests": "sg1-eth0", "replies": "sg1-eth2"},
        "sr1": {"requests": "sr1-eth1", "replies": "sr1-eth0"},
        "sg2": {"requests": "sg2-eth2", "replies": "sg2-eth0"},
    }
    assert fn.path_ports(["sg1"], {}, ("a", "b")) == {"sg1": {"requests": "b", "replies": "a"}}


def test_the_client_pings_from_its_first_instance():
    (pod1,) = [pod for pod in fn.SPEC.pods if pod.name == fn.CLIENT]
    assert pod1.instances[0] == fn.CLIENT_SOURCE
    assert any(fn.TARGET in pod.instances for pod in fn.SPEC.pods if pod.name != fn.CLIENT)


def dataplane(running: bool = True, **tx: int) -> dict:
    return {
        "running": running,
        "ports": {port: {"tx_packets": n} for port, n in tx.items()},
        "routes": {"fd64:6d73:63:92eb:2::/80": {"packets": sum(tx.values())}},
    }


PORTS = {"sg1": {"requests": "a", "replies": "b"}, "sr1": {"requests": "c", "replies": "d"}}


def test_forwarders_must_each_send_every_answered_echo_both_ways():
    before = {"sg1": dataplane(a=10, b=10), "sr1": dataplane(c=0, d=5)}
    after = {"sg1": dataplane(a=1310, b=1210), "sr1": dataplane(c=1300, d=1205)}
    check = fn.forwarders_verdict(before, after, PORTS, answered=1200)
    assert check.ok, check.detail
    assert check.measured["tx_packets_grown"]["sr1"] == {"requests": 1300, "replies": 1200}
    after["sr1"] = dataplane(c=1300, d=600)
    check = fn.forwarders_verdict(before, after, PORTS, answered=1200)
    assert not check.ok and "sr1 d (replies): +595" in check.detail


def test_a_stopped_forwarder_or_no_traffic_fails():
    ports = {"sg1": {"requests": "a", "replies": "b"}}
    before = {"sg1": dataplane(a=0, b=0)}
    assert not fn.forwarders_verdict(before, {"sg1": dataplane(False, a=9, b=9)}, ports, 5).ok
    assert not fn.forwarders_verdict(before, {"sg1": dataplane(a=0, b=0)}, ports, 0).ok


def test_route_growth_is_reported_per_name():
    before, after = {"sg1": dataplane(a=10)}, {"sg1": dataplane(a=110)}
    assert fn.routes_grown(before, after, ["/B/2", "/A/1"]) == {"sg1": {"/B/2": 100, "/A/1": 0}}
