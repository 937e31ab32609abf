import dataclasses
from pathlib import Path

import networkx as nx
import pytest

from dmsc.errors import ConfigError
from dmsc.nodes.mncli import substitute_names
from dmsc.topologies import figure2
from dmsc.topologies.builders import build_topology, fat_tree, linear, ring
from dmsc.topologies.spec import LinkSpec, PodSpec, TopologySpec
from dmsc.topologies.zoo import great_circle_km, load_graphml

ZOO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "topology-zoo"


def test_figure2_survives_any_core_link_failure():
    graph = figure2.router_graph()
    assert nx.is_connected(graph)
    bridges = {frozenset(edge) for edge in nx.bridges(graph)}
    assert bridges == {frozenset(("sg1", "sr1")), frozenset(("sg2", "sr2"))}  # access links
    assert figure2.spec().announced()["/B"] == {"sg1", "sg4"}
    without_sg4 = figure2.spec().announced(down={"sg4"})
    assert without_sg4["/B"] == {"sg1"} and "/B/4" not in without_sg4
    assert "/B/1" not in figure2.spec().announced(down={"pod1"})


@pytest.mark.parametrize(
    ("spec", "nodes", "links"),
    [(linear(3), 5, 4), (ring(6), 8, 8), (fat_tree(4), 20, 32)],
)
def test_builders_make_connected_networks(spec, nodes, links):
    graph = spec.router_graph()
    assert (graph.number_of_nodes(), graph.number_of_edges()) == (nodes, links)
    assert nx.is_connected(graph)
    assert all(pod.gateway in spec.gateways for pod in spec.pods)


def test_fat_tree_degrees():
    graph = fat_tree(4).router_graph()
    assert {graph.degree(n) for n in graph if n.startswith(("c", "a"))} == {4}
    assert {graph.degree(n) for n in graph if n.startswith("e")} == {2}


@pytest.mark.skipif(not ZOO.exists(), reason=f"Topology Zoo samples not found at {ZOO}")
def test_graphml_import_records_distance_delay_and_cost():
    graph = load_graphml(ZOO / "Geant2012.graphml")
    assert graph.number_of_nodes() == 40 and nx.is_connected(graph)
    for _, _, data in graph.edges(data=True):
        assert data["cost"] >= 1 and data["delay_s"] > 0
    spec = build_topology(str(ZOO / "Abilene.graphml"))
    assert len(spec.gateways) == 2 and len(spec.pods) == 2


def test_great_circle_distance():
    assert great_circle_km(52.37, 4.90, 48.86, 2.35) == pytest.approx(430, rel=0.02)  # AMS-PAR


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"links": (LinkSpec("sg1", "nowhere"),)}, "'nowhere' is not an SG or SR"),
        ({"gateways": ("sg1", "sg1")}, "duplicate node names"),
        ({"pods": (PodSpec("pod1", "sr1", ("/B/1",)),)}, "gateway 'sr1' is not an SG"),
        ({"pods": (PodSpec("pod1", "sg1", ("/B",)),)}, "not an instance"),
        ({"spas": {}}, "SGs with pods but no SPA"),
        ({"routers": ("sr1-with-a-long-name",)}, "at most 10 characters"),
    ],
)
def test_bad_topologies_are_refused_with_a_reason(change, message):
    base = dict(
        name="t",
        gateways=("sg1",),
        routers=("sr1",),
        links=(LinkSpec("sg1", "sr1"),),
        pods=(PodSpec("pod1", "sg1", ("/B/1",)),),
        spas={"spa1": "sg1"},
    )
    base.update(change)
    with pytest.raises(ConfigError, match=message):
        TopologySpec(**base)


def test_unknown_topology_names_the_choices():
    with pytest.raises(ConfigError, match=r"unknown topology 'mesh'.*figure2"):
        build_topology("mesh")
    with pytest.raises(ConfigError, match="ring: routers must be an integer of at least 3"):
        build_topology("ring", routers=2)


def test_unauthorized_claims_are_not_expected_anywhere():
    pods = tuple(
        dataclasses.replace(p, unauthorized=("/B/4",)) if p.name == "pod3" else p
        for p in figure2.PODS
    )
    spec = dataclasses.replace(figure2.spec(), pods=pods)
    assert spec.announced()["/B/4"] == {"sg4"}


def test_cli_substitutes_service_names_only():
    line = substitute_names("ping -6 -c 1 /B/4")
    assert line.startswith("ping -6 -c 1 fd64:6d73:63:")
    assert substitute_names("ls /tmp//x") == "ls /tmp//x"
