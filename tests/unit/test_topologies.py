import dataclasses
import math

import networkx as nx
import pytest

from dmsc.errors import ConfigError
from dmsc.nodes.mncli import substitute_names
from dmsc.topologies import figure2
from dmsc.topologies.builders import build_topology, fat_tree, linear, ring
from dmsc.topologies.spec import LinkSpec, PodSpec, TopologySpec
from dmsc.topologies.zoo import DEFAULT_DELAY_S, great_circle_km, load_graphml


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


GRAPHML = """<?xml version="1.0" encoding="utf-8"?>
<graphml xmlns="http://graphml.graphdrawing.org/xmlns">
  <key attr.name="Network" attr.type="string" for="graph" id="g0" />
  <key attr.name="label" attr.type="string" for="node" id="d0" />
  <key attr.name="Latitude" attr.type="double" for="node" id="d1" />
  <key attr.name="Longitude" attr.type="double" for="node" id="d2" />
  <graph edgedefault="undirected">
    <data key="g0">Tiny</data>
    <node id="0"><data key="d0">Amsterdam</data>
      <data key="d1">52.37</data><data key="d2">4.89</data></node>
    <node id="1"><data key="d0">Paris</data>
      <data key="d1">48.86</data><data key="d2">2.35</data></node>
    <node id="2"><data key="d0">Paris</data>
      <data key="d1">48.85</data><data key="d2">2.36</data></node>
    <node id="3"><data key="d0">New York</data></node>
    <node id="4"><data key="d0">2nd site</data>
      <data key="d1">50.85</data><data key="d2">4.35</data></node>
    <edge source="0" target="1" />
    <edge source="0" target="1" />
    <edge source="1" target="2" />
    <edge source="2" target="3" />
    <edge source="3" target="3" />
    <edge source="4" target="0" />
  </graph>
</graphml>
"""


def test_graphml_import_records_distance_delay_and_cost(tmp_path, caplog):
    path = tmp_path / "Tiny.graphml"
    path.write_text(GRAPHML)
    graph = load_graphml(path)
    # labels made safe and short, a duplicate numbered (loudly), a digit first prefixed
    assert sorted(graph) == ["Amsterda", "NewYork", "Paris", "Paris2", "n2ndsite"]
    assert graph.graph["renamed"] == {"Paris2": "Paris"}
    assert f"{path}: node 2 labelled 'Paris' is called Paris2 (Paris is taken)" in caplog.text
    assert graph.graph["name"] == "Tiny" and graph.nodes["NewYork"]["label"] == "New York"
    assert graph.number_of_edges() == 4  # the parallel edge collapsed, the self-loop dropped
    km = great_circle_km(52.37, 4.89, 48.86, 2.35)
    ams_par = graph["Amsterda"]["Paris"]
    assert ams_par["distance_km"] == pytest.approx(km)
    assert ams_par["delay_s"] == pytest.approx(km / 200_000)
    assert ams_par["cost"] == math.ceil(km / 200_000 / 100e-6)
    assert graph["Paris2"]["NewYork"] == {  # New York has no position: the default delay
        "distance_km": None,
        "delay_s": DEFAULT_DELAY_S,
        "cost": 10,
    }
    spec = build_topology(str(path))
    assert spec.name == "tiny" and spec.gateways == ("NewYork", "n2ndsite")
    assert len(spec.pods) == 2 and {link.cost for link in spec.links} >= {1, 10}


def test_a_disconnected_graphml_file_is_refused_with_its_name(tmp_path):
    path = tmp_path / "split.graphml"
    nx.write_graphml(nx.Graph([("a", "b"), ("c", "d"), ("d", "e")]), path)
    with pytest.raises(ConfigError) as caught:
        build_topology(str(path))
    assert str(caught.value) == (
        f"{path}: the network is not connected (2 parts; a, b cannot reach c)"
    )
    bad = tmp_path / "bad.graphml"
    bad.write_text("<graphml>")
    with pytest.raises(ConfigError, match=f"{bad}: cannot read GraphML"):
        load_graphml(bad)


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
