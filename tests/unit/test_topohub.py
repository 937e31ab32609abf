"""TopoHub networks (``topohub:<key>``): the whole Topology Zoo set imports or is refused with a
reason, every imported network converges in the simulator to networkx's shortest paths, and
unusable networks are refused by name."""

from __future__ import annotations

import math

import networkx as nx
import pytest
import topohub

from benchmarks import bench_routing as bench
from dmsc.errors import ConfigError
from dmsc.routing.config import LinkStateTimers
from dmsc.sim import network_from_graph
from dmsc.topologies import zoo
from dmsc.topologies.builders import build_topology
from dmsc.topologies.zoo import load_topohub, topohub_keys

ZOO_KEYS = topohub_keys("topozoo")
BIG = 60  # nodes: marked slow (they still run); TataNld, the largest, has 143


def test_the_pinned_topohub_ships_the_whole_topology_zoo_set():
    assert topohub.__version__ == "1.5.1"  # setup.py pins it: the networks are part of a run
    assert len(ZOO_KEYS) == 203
    assert {"topozoo/Abilene", "topozoo/Geant2012", "topozoo/Garr201201"} <= set(ZOO_KEYS)


def _size(key: str) -> int:
    return len(topohub.get(key)["nodes"])


@pytest.mark.parametrize(
    "key",
    [pytest.param(key, marks=pytest.mark.slow) if _size(key) > BIG else key for key in ZOO_KEYS],
)
def test_every_zoo_network_is_refused_with_a_reason_or_converges_to_shortest_paths(key):
    network = f"topohub:{key}"
    try:
        spec = build_topology(network)
    except ConfigError as error:
        assert str(error).startswith(f"{network}: ")
        assert len(str(error)) > len(network) + 10  # and a reason
        return
    # the import keeps the data set's network: its nodes, links and their lengths
    data = topohub.get(key)
    graph = load_topohub(key)
    assert graph.graph["source"] == f"topohub 1.5.1:{key}"
    assert graph.number_of_nodes() == len(data["nodes"])
    links = {frozenset((e["source"], e["target"])) for e in data["edges"]}
    assert graph.number_of_edges() == len({link for link in links if len(link) == 2})
    for _, _, link in graph.edges(data=True):
        assert link["delay_s"] == pytest.approx(link["distance_km"] / zoo.FIBRE_KM_PER_S)
        assert link["cost"] == max(1, math.ceil(link["delay_s"] / zoo.COST_UNIT_S))
    assert spec.router_graph().number_of_edges() == graph.number_of_edges()
    # every router's routes equal a fresh SPF by cost (networkx), to every node and pod name
    routers = spec.router_graph()
    simulated = network_from_graph(routers, bench.verifier_for(bench.spa_key()), LinkStateTimers())
    announced = bench.announce(simulated, {pod.gateway: list(pod.prefixes) for pod in spec.pods})
    bench.wait_settled(simulated, announced, bench.CONVERGENCE_TIMEOUT_S)
    router = simulated.routers[spec.gateways[0]]
    lengths = nx.single_source_dijkstra_path_length(routers, spec.gateways[0], weight="cost")
    assert {e.label: e.distance for e in router.routes.values() if e.label in lengths} == lengths


def test_the_alias_abilene_is_topohubs_abilene():
    spec = build_topology("abilene")
    assert spec == build_topology("topohub:topozoo/Abilene")
    assert spec.name == "abilene" and len(spec.gateways) + len(spec.routers) == 11
    assert {"NewYork", "Chicago", "Indianap"} <= set(spec.routers) | set(spec.gateways)


def test_other_topohub_groups_work_too():
    spec = build_topology("topohub:sndlib/polska")
    assert spec.name == "polska" and len(spec.gateways) + len(spec.routers) == 12


# ---------------------------------------------------------------- refusals


def refused(key: str) -> str:
    with pytest.raises(ConfigError) as caught:
        build_topology(key)
    return str(caught.value)


def test_an_unknown_key_is_refused_with_close_matches():
    assert refused("topohub:topozoo/Geant2013") == (
        "topohub:topozoo/Geant2013: no such network in topohub 1.5.1; did you mean "
        "topohub:topozoo/Geant2012, topohub:topozoo/Geant2010, topohub:topozoo/Geant2001?"
    )
    assert refused("topohub:nowhere/x") == "topohub:nowhere/x: no such network in topohub 1.5.1"
    for bad in ("topohub:Geant2012", "topohub:topozoo/../gabriel/5/0", "topohub:"):
        assert refused(bad) == (
            f"{bad}: not a topohub key (group/name, e.g. topohub:topozoo/Geant2012)"
        )


def fake(nodes, edges):
    """A node-link dict as topohub.get returns: nodes (name, pos or None), edges (u, v, km)."""
    return {
        "directed": False,
        "multigraph": False,
        "graph": {"name": "fake", "demands": {}},
        "nodes": [
            {"id": str(i), "name": name, **({"pos": pos} if pos else {})}
            for i, (name, pos) in enumerate(nodes)
        ],
        "edges": [{"source": str(u), "target": str(v), "dist": km} for u, v, km in edges],
    }


@pytest.fixture
def hub(monkeypatch):
    """Serve ``hub["topozoo/Fake"] = fake(...)`` from topohub.get."""
    served: dict = {}

    def get(key, use_names=False):
        if key not in served:
            raise KeyError(key)
        return served[key]

    monkeypatch.setattr(topohub, "get", get)
    return served


CITIES = [("Oslo", [10.75, 59.91]), ("Bergen", [5.32, 60.39]), ("Trondheim", [10.39, 63.43])]


def test_unusable_networks_are_refused_with_the_reason(hub, monkeypatch):
    hub["topozoo/Split"] = fake([*CITIES, ("Tromso", [18.96, 69.65])], [(0, 1, 305), (2, 3, 1)])
    assert refused("topohub:topozoo/Split") == (
        "topohub:topozoo/Split: the network is not connected "
        "(2 parts; Tromso, Trondhei cannot reach Bergen)"
    )
    hub["topozoo/Lost"] = fake([*CITIES, ("Nowhere", None)], [(0, 1, 305), (1, 2, 430), (2, 3, 1)])
    assert refused("topohub:topozoo/Lost") == (
        "topohub:topozoo/Lost: node(s) 'Nowhere' have no position"
    )
    hub["topozoo/Empty"] = fake([], [])
    assert refused("topohub:topozoo/Empty") == "topohub:topozoo/Empty: the network has no nodes"
    hub["topozoo/Odd"] = fake(CITIES, [(0, 1, "far"), (1, 2, 430)])
    assert refused("topohub:topozoo/Odd") == (
        "topohub:topozoo/Odd: link Oslo-Bergen has length 'far'"
    )
    hub["topozoo/Mars"] = fake([*CITIES[:2], ("Olympus", [300.0, 18.65])], [(0, 1, 3), (1, 2, 4)])
    assert refused("topohub:topozoo/Mars") == (
        "topohub:topozoo/Mars: node(s) 'Olympus' are off the globe"
    )
    hub["topozoo/Line"] = fake(CITIES, [(0, 1, 305), (1, 2, 430)])
    monkeypatch.setattr(zoo, "MAX_NODES", 2)
    assert refused("topohub:topozoo/Line") == (
        "topohub:topozoo/Line: 3 nodes; the management network addresses at most 2 SGs/SRs"
    )


def test_a_node_whose_interface_names_would_not_fit_linux_is_refused(hub):
    leaves = [(f"Leaf{i}", [10.0, 50.0 + i / 1000]) for i in range(98)]
    twins = [("Hubtown12", [10.0, 49.0]), ("Hubtown12", [10.1, 49.0])]  # Hubtown1, Hubtown12
    edges = [(0, 1, 7.3)] + [(1, i, 1.0) for i in range(2, 100)]
    hub["topozoo/Star"] = fake([*twins, *leaves], edges)
    assert refused("topohub:topozoo/Star") == (
        "topohub:topozoo/Star: node Hubtown12 has 99 links: its interface Hubtown12-eth100 "
        "would exceed Linux's 15 characters"
    )
    hub["topozoo/Star"] = fake([("Hubtown", [10.0, 49.0]), *twins[1:], *leaves], edges)
    assert len(build_topology("topohub:topozoo/Star").routers) == 98  # Hubtown1-eth100 fits


def test_duplicate_and_unusable_names_are_renamed_loudly(hub, caplog):
    hub["topozoo/Twins"] = fake(
        [("Milan", [9.19, 45.46]), ("Milan", [9.2, 45.47]), ("???", [9.0, 45.0])],
        [(0, 1, 1.2), (1, 2, 20.0), (2, 0, 20.5)],
    )
    graph = load_topohub("topozoo/Twins")
    assert sorted(graph) == ["Milan", "Milan2", "n2"]
    assert graph.graph["renamed"] == {"Milan2": "Milan", "n2": "???"}
    assert "topohub:topozoo/Twins: node 1 labelled 'Milan' is called Milan2 (Milan is taken)" in (
        caplog.text
    )
    assert "node 2 labelled '???' is called n2 (no letters or digits in its label)" in caplog.text
    assert graph["Milan"]["Milan2"]["cost"] == 1  # 1.2 km: 6 µs, the least cost


def test_zero_length_links_get_the_least_cost(hub):
    hub["topozoo/Campus"] = fake(CITIES, [(0, 1, 0), (1, 2, 0.0)])
    graph = load_topohub("topohub:topozoo/Campus")
    assert {d["cost"] for _, _, d in graph.edges(data=True)} == {1}
    assert {d["delay_s"] for _, _, d in graph.edges(data=True)} == {0.0}
