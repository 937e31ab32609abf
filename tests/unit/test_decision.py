"""The SCSC's pure decision: thresholds, instance and path, hysteresis, hold-down, policies."""

import dataclasses
import ipaddress
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmsc.controllers.decision import (
    COOKIE_TAG,
    COOKIE_TAG_MASK,
    POLICY_PRIORITY,
    Choice,
    DecisionInputs,
    LinkQuality,
    PolicyIntent,
    SchedulerConfig,
    Topology,
    decide,
    demand_from_telemetry,
    diff,
    link_weight,
    path_bandwidth,
    policy_cookie,
    policy_intents,
    shortest_routes,
    weighted_graph,
)
from dmsc.controllers.thresholds import (
    DEFAULT_THRESHOLDS,
    Thresholds,
    ThresholdTable,
    crossings,
    describe,
)
from dmsc.errors import ConfigError
from dmsc.measurement.estimators import PathQuality
from dmsc.names import name_address, name_prefix
from dmsc.proto import dmsc_pb2
from dmsc.topologies import figure2

NOW = 1000.0
PAIR = ("sg2", "/B")
VIA_B1 = ("sg2", "sr2", "sr1", "sg1")
VIA_B4 = ("sg2", "sr2", "sg4")


def quality(delay, jitter=1.0, loss=0.0, bandwidth=None, at=NOW):
    return PathQuality(delay, jitter, loss, bandwidth, 10, at)


def figure2_topology(withdrawn=(), one_way_cuts=()):
    """Figure 2 as data; ``one_way_cuts`` are (a, b): a stops listing b (b still lists a)."""
    advertised = {}
    for a, b, cost in figure2.LINKS:
        if (a, b) not in one_way_cuts:
            advertised.setdefault(a, []).append((b, cost))
        if (b, a) not in one_way_cuts:
            advertised.setdefault(b, []).append((a, cost))
    names = {
        pod.gateway: [name for name in pod.prefixes if name not in withdrawn]
        for pod in figure2.PODS
    }
    return Topology.from_adjacencies(advertised, names)


def figure2_inputs(telemetry, previous=None, topology=None, demand=(PAIR,), **config):
    return DecisionInputs(
        topology=topology or figure2_topology(),
        telemetry=telemetry,
        demand=frozenset(demand),
        previous=previous or {},
        config=SchedulerConfig(**config),
    )


def hops(intents):
    return {(intent.node, intent.next_hop) for intent in intents}


def chosen(instance, path, since=NOW - 100.0, all_bad=False):
    return {PAIR: Choice(instance, path, since, "earlier", all_bad)}


ANYCAST_B = ipaddress.IPv6Network(f"{name_address('/B')}/128")

# ---------------------------------------------------------------- thresholds


def test_crossing_texts_are_readable():
    limits = Thresholds(min_bandwidth_bps=5e6, max_delay_ms=50, max_jitter_ms=10, max_loss=0.2)
    found = crossings(quality(62.12, jitter=12.0, loss=0.3, bandwidth=2e6), limits)
    assert [c.metric for c in found] == ["bandwidth", "delay", "jitter", "loss"]
    assert describe(found) == (
        "bandwidth 2 Mbit/s ≤ 5 Mbit/s, delay 62.1 ms ≥ 50 ms, jitter 12.0 ms ≥ 10 ms, "
        "loss 30% ≥ 20%"
    )


def test_limits_are_inclusive_and_unknown_values_cross_nothing():
    limits = Thresholds(min_bandwidth_bps=1e6, max_delay_ms=50)
    assert [c.metric for c in crossings(quality(50.0, bandwidth=1e6), limits)] == [
        "bandwidth",
        "delay",
    ]
    assert crossings(quality(49.9, bandwidth=None), limits) == ()


def test_a_path_that_answers_nothing_always_crosses():
    found = crossings(quality(None, jitter=None, loss=1.0), Thresholds())
    assert [c.metric for c in found] == ["reply"]
    assert "no reply" in found[0].text


def test_threshold_table_merges_defaults_and_inherits_from_ancestors():
    table = ThresholdTable.from_mapping(
        {
            "default": {"max_delay_ms": 40},
            "services": {"/B": {"max_loss": 0.5}, "/shop": {"max_jitter_ms": None}},
        }
    )
    assert table.for_service("/A") == Thresholds(max_delay_ms=40, max_jitter_ms=10, max_loss=0.2)
    assert table.for_service("/B") == Thresholds(max_delay_ms=40, max_jitter_ms=10, max_loss=0.5)
    assert table.for_service("/shop/cart").max_jitter_ms is None
    assert ThresholdTable().for_service("/B") == DEFAULT_THRESHOLDS


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"default": {"max_dealy_ms": 5}}, r"default: unknown threshold\(s\) \['max_dealy_ms'\]"),
        ({"default": {"max_delay_ms": 0}}, "max_delay_ms: out of range, got 0"),
        ({"default": {"max_loss": 1.5}}, "max_loss: a fraction"),
        ({"services": {"/B": {"min_bandwidth_bps": "5e6"}}}, "services: /B: .*expected a number"),
        ({"services": {"B": {}}}, "must start with '/'"),
        ({"service": {}}, r"unknown key\(s\) \['service'\]"),
    ],
)
def test_bad_thresholds_are_refused_naming_the_field(data, message):
    with pytest.raises(ConfigError, match=message):
        ThresholdTable.from_mapping(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"hysteresis": 1.0}, "scheduler hysteresis: must be in"),
        ({"hold_down_s": -1}, "scheduler hold_down_s"),
        ({"policy_priority": 70000}, "scheduler policy_priority"),
        ({"telemetry_max_age_s": "10"}, "scheduler telemetry_max_age_s"),
        ({"hold_down": 5}, r"unknown key\(s\) \['hold_down'\]"),
    ],
)
def test_bad_scheduler_settings_are_refused_naming_the_field(data, message):
    with pytest.raises(ConfigError, match=message):
        SchedulerConfig.from_mapping(data)


def test_a_demand_for_a_bad_service_name_is_refused():
    with pytest.raises(ConfigError, match=r"demand \(sg2, B\)"):
        figure2_inputs({}, demand=[("sg2", "B")])


# ---------------------------------------------------------------- topology


def lsa(originator, sequence, neighbors, names=(), lifetime_ms=60_000):
    return dmsc_pb2.LinkStateAdvertisement(
        originator=originator,
        sequence=sequence,
        lifetime_ms=lifetime_ms,
        adjacencies=[dmsc_pb2.Adjacency(neighbor=n, cost=c) for n, c in neighbors],
        prefixes=[dmsc_pb2.AnnouncedPrefix(name=name) for name in names],
    )


def test_topology_from_lsa_copies_uses_two_way_adjacencies_and_the_newest_lsa():
    topology = Topology.from_lsas(
        [
            lsa("a", 1, [("b", 5)], ["/B/1", "/B"]),
            lsa("a", 2, [("b", 5), ("c", 5)], ["/B/1", "/B"]),  # newer: replaces the first
            lsa("b", 1, [("a", 5), ("c", 5)]),
            lsa("c", 1, [("b", 5)]),  # c does not list a: a-c is one-way
            lsa("d", 3, [("a", 1)], ["/B/9"], lifetime_ms=0),  # purged
        ]
    )
    assert topology.graph == {"a": {"b": 5}, "b": {"a": 5, "c": 5}, "c": {"b": 5}}
    assert topology.instances == {"/B/1"}
    assert topology.hosts("/B/1") == ("a",)
    assert topology.client_prefixes("a") == (name_prefix("/B/1"),)


def test_demand_follows_from_what_the_sgs_probe():
    telemetry = {("sg2", "/B/4"): None, ("sg2", "/B/1"): None, ("sg1", "/shop/cart/3"): None}
    assert demand_from_telemetry(telemetry) == {("sg2", "/B"), ("sg1", "/shop/cart")}


def test_instances_are_the_leaves_below_a_service():
    topology = figure2_topology()
    assert topology.instances_of("/B") == ("/B/1", "/B/4")
    assert topology.instances_of("/C") == ("/C/2", "/C/3")
    deep = Topology.from_adjacencies({"x": []}, {"x": ["/shop/cart/3", "/shop/cart"]})
    assert deep.instances_of("/shop/cart") == ("/shop/cart/3",)


# ---------------------------------------------------------------- routing decides until it fails


def test_no_telemetry_means_no_policy():
    decision = decide(figure2_inputs({}), NOW)
    assert decision.choices == {}
    assert decision.intents == frozenset()
    assert decision.records == ()
    assert "no telemetry for /B/4" in decision.notes[PAIR]


def test_routing_choice_within_thresholds_means_no_policy():
    telemetry = {("sg2", "/B/4"): quality(30.0), ("sg2", "/B/1"): quality(5.0)}
    decision = decide(figure2_inputs(telemetry), NOW)
    assert decision.intents == frozenset()
    assert decision.notes[PAIR] == "routing's choice /B/4 meets the thresholds"


def test_stale_telemetry_is_ignored():
    telemetry = {("sg2", "/B/4"): quality(62.1, at=NOW - 60), ("sg2", "/B/1"): quality(5.0)}
    assert decide(figure2_inputs(telemetry), NOW).intents == frozenset()


def test_threshold_crossed_gives_a_new_instance_path_and_policies_on_exactly_its_nodes():
    telemetry = {("sg2", "/B/4"): quality(62.1), ("sg2", "/B/1"): quality(12.0)}
    decision = decide(figure2_inputs(telemetry), NOW)
    choice = decision.choices[PAIR]
    assert (choice.instance, choice.path, choice.since) == ("/B/1", VIA_B1, NOW)
    assert hops(decision.intents) == {("sg2", "sr2"), ("sr2", "sr1"), ("sr1", "sg1")}
    for intent in decision.intents:
        assert intent.match_dst == ANYCAST_B
        assert intent.match_src == name_prefix("/C/2")  # pod2's instance: its source address
        assert intent.priority == POLICY_PRIORITY
        assert intent.cookie == policy_cookie("sg2", "/B")
    (record,) = decision.records
    assert record.trigger == "/B/4 (routing's choice): delay 62.1 ms ≥ 50 ms"
    assert (record.old_instance, record.old_path) == ("/B/4", VIA_B4)
    assert (record.new_instance, record.new_path) == ("/B/1", VIA_B1)
    assert record.as_row()["new_path"] == "sg2>sr2>sr1>sg1"


def test_a_narrow_link_on_routings_path_crosses_the_bandwidth_minimum_and_moves_the_pair():
    telemetry = {("sg2", "/B/4"): quality(5.0), ("sg2", "/B/1"): quality(12.0)}
    narrow = {("sr2", "sg4"): LinkQuality(bandwidth_bps=2e6)}  # reported by sr2, say
    thresholds = ThresholdTable.from_mapping({"services": {"/B": {"min_bandwidth_bps": 5e6}}})
    inputs = dataclasses.replace(figure2_inputs(telemetry), links=narrow, thresholds=thresholds)
    decision = decide(inputs, NOW)
    # /B/4 is still the best instance, on a path around the narrow link
    assert decision.choices[PAIR].instance == "/B/4"
    assert decision.choices[PAIR].path == ("sg2", "sr2", "sr3", "sg4")
    (record,) = decision.records
    assert record.trigger == "/B/4 (routing's choice): bandwidth 2 Mbit/s ≤ 5 Mbit/s"
    assert record.old_path == VIA_B4
    assert hops(decision.intents) == {("sg2", "sr2"), ("sr2", "sr3"), ("sr3", "sg4")}


def test_path_bandwidth_is_the_narrowest_measured_link_and_the_sgs_own_figure_wins():
    links = {("sg2", "sr2"): LinkQuality(bandwidth_bps=9e6), ("sg4", "sr2"): LinkQuality(
        bandwidth_bps=3e6)}  # fmt: skip
    assert path_bandwidth(links, VIA_B4) == 3e6
    assert path_bandwidth(links, ("sr1", "sg1")) is None
    telemetry = {("sg2", "/B/4"): quality(5.0, bandwidth=8e6), ("sg2", "/B/1"): quality(12.0)}
    thresholds = ThresholdTable.from_mapping({"default": {"min_bandwidth_bps": 5e6}})
    inputs = dataclasses.replace(figure2_inputs(telemetry), links=links, thresholds=thresholds)
    assert decide(inputs, NOW).choices == {}  # 8 Mbit/s measured end to end: routing stays


def test_one_policy_per_node_and_client_prefix_of_the_source_sg():
    pair = ("sg1", "/C")  # pod1 sends from /A/1 or /B/1
    telemetry = {("sg1", "/C/3"): quality(10.0, loss=0.5), ("sg1", "/C/2"): quality(20.0)}
    decision = decide(figure2_inputs(telemetry, demand=[pair]), NOW)
    assert decision.choices[pair].path == ("sg1", "sr1", "sr2", "sg2")
    sources = {name_prefix("/A/1"), name_prefix("/B/1")}
    assert {(i.node, i.next_hop, i.match_src) for i in decision.intents} == {
        (node, next_hop, source)
        for node, next_hop in [("sg1", "sr1"), ("sr1", "sr2"), ("sr2", "sg2")]
        for source in sources
    }


def test_decisions_are_deterministic():
    telemetry = {("sg2", "/B/4"): quality(62.1), ("sg2", "/B/1"): quality(12.0)}
    demand = [PAIR, ("sg3", "/B"), ("sg1", "/C")]
    first = decide(figure2_inputs(telemetry, demand=demand), NOW)
    again = decide(figure2_inputs(telemetry, demand=demand), NOW)
    assert first == again


# ---------------------------------------------------------------- hysteresis and hold-down


def test_within_the_hysteresis_margin_nothing_changes():
    previous = chosen("/B/1", VIA_B1)
    telemetry = {("sg2", "/B/1"): quality(20.0), ("sg2", "/B/4"): quality(17.0)}  # 15 % lower
    decision = decide(figure2_inputs(telemetry, previous), NOW)
    assert decision.choices == previous
    assert decision.records == ()


def test_beyond_the_hysteresis_margin_the_better_instance_wins():
    previous = chosen("/B/1", VIA_B1)
    telemetry = {("sg2", "/B/1"): quality(20.0), ("sg2", "/B/4"): quality(15.0)}  # 25 % lower
    decision = decide(figure2_inputs(telemetry, previous), NOW)
    assert decision.choices[PAIR].instance == "/B/4"
    assert decision.records[0].trigger == (
        "/B/4 delay 15.0 ms beats /B/1's 20.0 ms by more than 20%"
    )


def test_a_fraction_of_a_millisecond_is_noise_whatever_the_percentage():
    previous = chosen("/B/1", VIA_B1)
    telemetry = {("sg2", "/B/1"): quality(1.1), ("sg2", "/B/4"): quality(0.8)}  # 27 % lower
    assert decide(figure2_inputs(telemetry, previous), NOW).choices == previous
    moved = decide(figure2_inputs(telemetry, previous, hysteresis_floor_ms=0.2), NOW)
    assert moved.choices[PAIR].instance == "/B/4"


def test_during_hold_down_nothing_changes_then_the_switch_happens():
    previous = chosen("/B/1", VIA_B1, since=NOW - 5.0)
    telemetry = {("sg2", "/B/1"): quality(62.1), ("sg2", "/B/4"): quality(10.0)}
    held = decide(figure2_inputs(telemetry, previous, hold_down_s=10.0), NOW)
    assert held.choices == previous
    assert held.records == ()
    assert held.notes[PAIR].startswith("held down until 1005")
    later = decide(figure2_inputs(telemetry, previous, hold_down_s=10.0), NOW + 5.0)
    assert later.choices[PAIR].instance == "/B/4"
    assert later.records[0].trigger == "/B/1: delay 62.1 ms ≥ 50 ms"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(1, 120), st.floats(1, 120)), min_size=2, max_size=40))
def test_changes_of_a_pair_are_never_closer_than_the_hold_down(delays):
    previous, changes = {}, []
    for step, (d1, d4) in enumerate(delays):
        now = NOW + step
        telemetry = {("sg2", "/B/1"): quality(d1, at=now), ("sg2", "/B/4"): quality(d4, at=now)}
        decision = decide(figure2_inputs(telemetry, previous, hold_down_s=5.0), now)
        changes += [r.time for r in decision.records if r.old_path != r.new_path]
        previous = dict(decision.choices)
    assert all(b - a >= 5.0 for a, b in pairwise(changes))


# ---------------------------------------------------------------- all bad


def test_all_instances_bad_picks_the_least_bad_and_says_so():
    telemetry = {("sg2", "/B/4"): quality(80.0, loss=0.5), ("sg2", "/B/1"): quality(70.0)}
    decision = decide(figure2_inputs(telemetry), NOW)
    choice = decision.choices[PAIR]
    assert (choice.instance, choice.all_bad) == ("/B/1", True)
    (record,) = decision.records
    assert record.all_bad
    assert record.trigger == (
        "/B/4 (routing's choice): delay 80.0 ms ≥ 50 ms, loss 50% ≥ 20%; "
        "all instances cross thresholds, /B/1 chosen as the least bad"
    )


def test_all_bad_keeps_the_current_instance_and_records_it_once():
    previous = chosen("/B/1", VIA_B1)
    telemetry = {("sg2", "/B/1"): quality(70.0), ("sg2", "/B/4"): quality(90.0)}
    decision = decide(figure2_inputs(telemetry, previous), NOW)
    assert decision.choices[PAIR].instance == "/B/1"
    assert decision.choices[PAIR].all_bad
    (record,) = decision.records
    assert record.all_bad
    assert record.trigger == (
        "all instances cross thresholds (/B/1: delay 70.0 ms ≥ 50 ms; "
        "/B/4: delay 90.0 ms ≥ 50 ms); keeping /B/1"
    )
    again = decide(figure2_inputs(telemetry, dict(decision.choices)), NOW + 1)
    assert again.records == ()


# ---------------------------------------------------------------- instance gone


def test_withdrawn_instance_moves_the_choice_and_its_policies_even_in_hold_down():
    previous = chosen("/B/1", VIA_B1, since=NOW - 1.0)
    old_intents = policy_intents(figure2_topology(), "sg2", "/B", VIA_B1)
    telemetry = {("sg2", "/B/1"): quality(10.0), ("sg2", "/B/4"): quality(20.0)}
    topology = figure2_topology(withdrawn=("/B/1",))
    decision = decide(figure2_inputs(telemetry, previous, topology), NOW)
    assert decision.choices[PAIR].path == VIA_B4
    assert hops(decision.intents) == {("sg2", "sr2"), ("sr2", "sg4")}
    assert decision.records[0].trigger == "/B/1 withdrawn (no SG advertises it)"
    to_add, to_remove = diff(decision.intents, old_intents)
    assert hops(to_add) == {("sr2", "sg4")}  # overwrites sr2's old policy (same match)
    assert hops(to_remove) == {("sr1", "sg1")}


def test_unreachable_instance_moves_the_choice():
    previous = chosen("/B/1", VIA_B1, since=NOW - 1.0)
    telemetry = {("sg2", "/B/1"): quality(10.0), ("sg2", "/B/4"): quality(20.0)}
    topology = figure2_topology(one_way_cuts={("sr1", "sg1")})  # sg1's only link
    decision = decide(figure2_inputs(telemetry, previous, topology), NOW)
    assert decision.choices[PAIR].instance == "/B/4"
    assert decision.records[0].trigger == "/B/1 unreachable from sg2"


def test_gone_instance_without_a_measured_alternative_removes_the_policies():
    previous = chosen("/B/1", VIA_B1)
    topology = figure2_topology(withdrawn=("/B/1",))
    decision = decide(figure2_inputs({("sg2", "/B/1"): quality(10.0)}, previous, topology), NOW)
    assert decision.choices == {}
    assert decision.intents == frozenset()
    (record,) = decision.records
    assert (record.new_instance, record.new_path) == (None, ())
    assert record.trigger.endswith("policies removed, routing decides")


# ---------------------------------------------------------------- QoS-weighted paths

#        r1
#      /    \            /S/1 at t; /S/2 at u, next to s (the routing choice, impaired)
#   s         t
#   |  \    /
#   u    r2
DIAMOND = {
    "s": [("r1", 10), ("r2", 10), ("u", 5)],
    "r1": [("s", 10), ("t", 10)],
    "r2": [("s", 10), ("t", 10)],
    "t": [("r1", 10), ("r2", 10)],
    "u": [("s", 5)],
}


def diamond(cut=()):
    advertised = {n: [(m, c) for m, c in adj if (n, m) not in cut] for n, adj in DIAMOND.items()}
    names = {"s": ["/P/1", "/P"], "t": ["/S/1", "/S"], "u": ["/S/2", "/S"]}
    return Topology.from_adjacencies(advertised, names)


def diamond_inputs(links, previous=None, topology=None, **config):
    telemetry = {("s", "/S/2"): quality(70.0), ("s", "/S/1"): quality(20.0)}
    return DecisionInputs(
        topology=topology or diamond(),
        telemetry=telemetry,
        demand=frozenset({("s", "/S")}),
        links=links,
        previous=previous or {},
        config=SchedulerConfig(**config),
    )


def test_link_weight_is_cost_plus_weighted_delay_plus_a_penalty_when_crossing():
    config = SchedulerConfig(delay_weight=0.5)
    limits = Thresholds(max_delay_ms=50)
    assert link_weight(10, None, limits, config) == 10
    assert link_weight(10, LinkQuality(delay_ms=20.0), limits, config) == 20.0
    assert link_weight(10, LinkQuality(delay_ms=60.0), limits, config) == 40.0 + 1e6


def test_equal_paths_are_broken_by_node_order():
    routes = shortest_routes(diamond().graph, "s")
    assert routes["t"] == (20.0, ("s", "r1", "t"))


def test_qos_weighted_path_avoids_a_bad_link():
    links = {("t", "r1"): LinkQuality(delay_ms=80.0)}  # either direction's key works
    decision = decide(diamond_inputs(links), NOW)
    choice = decision.choices[("s", "/S")]
    assert (choice.instance, choice.path) == ("/S/1", ("s", "r2", "t"))
    assert hops(decision.intents) == {("s", "r2"), ("r2", "t")}
    assert {i.match_src for i in decision.intents} == {name_prefix("/P/1")}


def test_qos_weighted_path_prefers_lower_delay_below_thresholds_too():
    graph = weighted_graph(
        diamond().graph,
        {("r1", "t"): LinkQuality(delay_ms=5.0)},
        DEFAULT_THRESHOLDS,
        SchedulerConfig(),
    )
    assert shortest_routes(graph, "s")["t"] == (20.0, ("s", "r2", "t"))


def test_a_bad_link_is_still_used_when_there_is_no_other_path():
    links = {("r1", "t"): LinkQuality(loss=1.0)}
    topology = diamond(cut={("r2", "t")})
    decision = decide(diamond_inputs(links, topology=topology), NOW)
    assert decision.choices[("s", "/S")].path == ("s", "r1", "t")


def test_a_broken_path_is_replaced_at_once_even_in_hold_down():
    previous = {("s", "/S"): Choice("/S/1", ("s", "r1", "t"), NOW - 1.0, "earlier")}
    decision = decide(diamond_inputs({}, previous, diamond(cut={("r1", "t")})), NOW)
    choice = decision.choices[("s", "/S")]
    assert (choice.instance, choice.path, choice.since) == ("/S/1", ("s", "r2", "t"), NOW)
    assert decision.records[0].trigger == "/S/1: path s>r1>t broken (link r1-t down)"


def test_a_worse_path_is_left_only_beyond_the_margin_and_after_hold_down():
    previous = {("s", "/S"): Choice("/S/1", ("s", "r1", "t"), NOW - 5.0, "earlier")}
    slow = {("r1", "t"): LinkQuality(delay_ms=30.0)}  # weight 50 against 20: 60 % lower
    held = decide(diamond_inputs(slow, previous, hold_down_s=10.0), NOW)
    assert held.choices == previous
    moved = decide(diamond_inputs(slow, previous, hold_down_s=10.0), NOW + 5.0)
    assert moved.choices[("s", "/S")].path == ("s", "r2", "t")
    assert "beats s>r1>t (50) by more than 20%" in moved.records[0].trigger
    slightly = {("r1", "t"): LinkQuality(delay_ms=3.0)}  # weight 23 against 20: within margin
    assert decide(diamond_inputs(slightly, previous), NOW + 20).choices == previous


# ---------------------------------------------------------------- policies, cookies, diff


def intent(node, next_hop, source="/C/2", cookie=1):
    return PolicyIntent(node, POLICY_PRIORITY, ANYCAST_B, name_prefix(source), next_hop, cookie)


def test_diff_adds_removes_and_lets_an_add_overwrite_the_same_match():
    keep, old, gone = intent("sg2", "sr2"), intent("sr2", "sr1"), intent("sr1", "sg1")
    new, extra = intent("sr2", "sg4"), intent("sg2", "sr2", source="/A/1")
    to_add, to_remove = diff({keep, new, extra}, {keep, old, gone})
    assert to_add == tuple(sorted([new, extra], key=PolicyIntent.sort_key))
    assert to_remove == (gone,)  # `old` is overwritten by `new`, not deleted after it
    assert diff({keep}, {keep}) == ((), ())
    assert diff(set(), {keep, old}) == ((), (keep, old))  # sorted by node


def test_cookies_are_deterministic_tagged_and_distinct_per_pair():
    cookie = policy_cookie("sg2", "/B")
    assert cookie == policy_cookie("sg2", "/B")
    assert cookie & COOKIE_TAG_MASK == COOKIE_TAG
    assert cookie < 2**64
    pairs = [(f"sg{i}", s) for i in range(1, 5) for s in ("/A", "/B", "/C")]
    assert len({policy_cookie(*pair) for pair in pairs}) == len(pairs)


def test_install_order_puts_the_end_of_the_path_first():
    telemetry = {("sg2", "/B/4"): quality(62.1), ("sg2", "/B/1"): quality(12.0)}
    decision = decide(figure2_inputs(telemetry), NOW)
    ordered = decision.install_order(decision.intents)
    assert [i.node for i in ordered] == ["sr1", "sr2", "sg2"]
