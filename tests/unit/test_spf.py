import random

import networkx as nx
import pytest

from dmsc.routing.spf import SpfThrottle, shortest_paths, two_way_graph


def random_weighted_graph(nodes: int, seed: int) -> nx.Graph:
    graph = nx.connected_watts_strogatz_graph(nodes, 4, 0.3, seed=seed)
    rng = random.Random(seed)
    for u, v in graph.edges:
        graph[u][v]["weight"] = rng.randint(1, 5)  # small range: many equal-cost paths
    return nx.relabel_nodes(graph, {n: f"n{n}" for n in graph})


def as_adjacency(graph: nx.Graph) -> dict[str, dict[str, int]]:
    return {u: {v: graph[u][v]["weight"] for v in graph[u]} for u in graph}


def local_hops_of(graph, source):
    return {v: frozenset({(f"to-{v}", v)}) for v in graph[source]}


@pytest.mark.parametrize("seed", range(5))
def test_distances_and_every_equal_cost_first_hop_match_networkx(seed):
    graph = random_weighted_graph(40, seed)
    source = "n0"
    result = shortest_paths(as_adjacency(graph), source, local_hops_of(graph, source))
    expected = nx.single_source_dijkstra_path_length(graph, source)
    assert result.distance == expected
    for target in graph:
        if target == source:
            continue
        first_hops = {
            path[1] for path in nx.all_shortest_paths(graph, source, target, weight="weight")
        }
        assert {neighbor for _, neighbor in result.first_hops[target]} == first_hops


def test_parallel_links_of_equal_cost_are_both_first_hops():
    graph = {"a": {"b": 5}, "b": {"a": 5, "c": 1}, "c": {"b": 1}}
    hops = {"b": frozenset({("eth0", "b"), ("eth1", "b")})}
    result = shortest_paths(graph, "a", hops)
    assert result.first_hops["c"] == hops["b"]
    assert result.distance["c"] == 6


def test_one_way_adjacencies_are_not_used():
    advertised = {"a": [("b", 1), ("c", 1)], "b": [("a", 1)], "c": []}  # c no longer lists a
    assert two_way_graph(advertised) == {"a": {"b": 1}, "b": {"a": 1}, "c": {}}


def test_unreachable_nodes_have_no_distance():
    result = shortest_paths(
        {"a": {"b": 1}, "b": {"a": 1}, "c": {}}, "a", {"b": frozenset({("e", "b")})}
    )
    assert "c" not in result.distance


def test_throttle_waits_then_backs_off_under_churn_and_resets_when_quiet():
    throttle = SpfThrottle(initial_delay=0.05, hold=0.2, max_hold=1.0)
    throttle.request(10.0)
    assert throttle.pending_at == pytest.approx(10.05)
    throttle.request(10.01)  # coalesced into the pending run
    assert throttle.pending_at == pytest.approx(10.05)
    throttle.ran(10.05)
    waits = []
    now = 10.05
    for _ in range(5):  # continuous churn: each run waits longer, up to max_hold
        throttle.request(now + 0.01)
        waits.append(round(throttle.pending_at - now, 3))
        now = throttle.pending_at
        throttle.ran(now)
    assert waits == [0.2, 0.4, 0.8, 1.0, 1.0]
    throttle.request(now + 2.5)  # quiet for more than 2 x max_hold: back to the short wait
    assert throttle.pending_at == pytest.approx(now + 2.55)
