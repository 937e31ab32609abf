"""The experiment file loader (docs/experiments.md): good files, variants, and every refusal."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from pathlib import Path

import networkx as nx
import pytest
import topohub

from dmsc.errors import ConfigError
from dmsc.experiments import (
    Calibration,
    Event,
    Impairment,
    WorkloadSpec,
    describe,
    detect_netem,
    experiment_from_mapping,
    load_experiment,
    thresholds_after,
)
from dmsc.nodes.config import CallsConfig
from dmsc.routing.config import LinkStateTimers

SHIPPED = sorted((Path(__file__).resolve().parents[2] / "experiments").glob("*.yaml"))


def write_abilene_graphml(path: Path) -> Path:
    """TopoHub's Abilene as a Topology Zoo style GraphML file (label, Latitude, Longitude)."""
    data = topohub.get("topozoo/Abilene")
    graph = nx.Graph(Network="Abilene")
    for node in data["nodes"]:
        lon, lat = node["pos"]
        graph.add_node(node["id"], label=node["name"], Latitude=lat, Longitude=lon)
    graph.add_edges_from((e["source"], e["target"]) for e in data["edges"])
    path.parent.mkdir(parents=True, exist_ok=True)
    nx.write_graphml(graph, path)
    return path


FULL = """\
name: delay-reroute
description: >
  A delay on the path to the nearest /B instance moves pod2's traffic to the other one.
topology: figure2
pods:
  - {name: pod1, gateway: sg1, instances: [/A/1, /B/1]}
  - {name: pod2, gateway: sg2, instances: [/C/2]}
  - {name: pod4, gateway: sg4, instances: [/A/4, /B/4]}
workload:
  - {client: pod2, service: /B, rate_hz: 50, protocol: http, timeout_s: 1.0}
  - {client: pod1, service: /C}
scsc:
  thresholds: {default: {max_delay_ms: 50, max_loss: 0.3}, services: {/B: {max_jitter_ms: null}}}
  scheduler: {hold_down_s: 10}
  probe_interval_ms: 100
  probe_window: 10
  telemetry_interval_ms: 500
  topology_settle_s: 6
  probe_services: {sg2: [/B]}
timers: {hello_interval: 1.0, dead_interval: 3.0}
duration_s: 40
repetitions: 10
seed: 1
timeline:
  - {at: 10, action: impair, link: [sr2, sg4], delay_ms: 100, jitter_ms: 0, loss: 0,
     rate_mbit: null, distribution: null, correlation: null, direction: both}
  - {at: 25, action: clear, link: [sr2, sg4]}
  - {at: 30, action: link_down, link: [sg1, sr1]}
  - {at: 32, action: link_up, link: [sg1, sr1]}
  - {at: 12, action: node_crash, node: sg4}
  - {at: 15, action: node_restart, node: sg4}
  - {at: 20, action: scsc_stop}
  - {at: 22, action: scsc_start}
  - {at: 18, action: thresholds, service: /B, max_delay_ms: 20}
variants:
  - {name: scsc}
  - {name: routing-only, scsc: null}
  - {name: probe-500ms, scsc: {probe_interval_ms: 500, thresholds: {default: {max_delay_ms: 20}}}}
  - {name: same, scsc: {probe_window: 10}}
"""

MIN = {
    "name": "mini",
    "topology": "figure2",
    "workload": [{"client": "pod2", "service": "/B"}],
    "duration_s": 40,
}
WITH_SCSC = {**MIN, "scsc": {}}
NETEM_MISSING = (
    "needs tc netem, which this kernel lacks: run it in the experiment VM (dmsc vm run delay.yaml)"
)
DROP = object()


def build(base: dict = MIN, **changes) -> dict:
    data = copy.deepcopy(base)
    for key, value in changes.items():
        if value is DROP:
            del data[key]
        else:
            data[key] = value
    return data


def load(data: dict, netem: bool = True, base_dir: Path = Path("/nonexistent")):
    return experiment_from_mapping(data, "delay.yaml", base_dir, netem)


def refused(data: dict, netem: bool = True, base_dir: Path = Path("/nonexistent")) -> str:
    with pytest.raises(ConfigError) as caught:
        load(data, netem, base_dir)
    return str(caught.value)


# ---------------------------------------------------------------- good files


def test_full_example_loads_with_every_setting(tmp_path):
    path = tmp_path / "delay.yaml"
    path.write_text(FULL)
    experiment = load_experiment(path, netem_available=True)

    assert experiment.name == "delay-reroute"
    assert experiment.description.startswith("A delay on the path") and "\n" not in (
        experiment.description
    )
    assert experiment.path == path.resolve()
    assert experiment.source_text == FULL
    assert experiment.source_sha256 == hashlib.sha256(FULL.encode()).hexdigest()
    spec = experiment.topology
    assert experiment.topology_source == "figure2" and experiment.topology_file is None
    assert [(p.name, p.gateway) for p in spec.pods] == [
        ("pod1", "sg1"),
        ("pod2", "sg2"),
        ("pod4", "sg4"),
    ]
    assert experiment.workload == (
        WorkloadSpec("pod2", "/B", 50, protocol="http", timeout_s=1.0),
        WorkloadSpec("pod1", "/C", 10.0, protocol="http", timeout_s=1.0),
    )
    assert [w.bound for w in experiment.workload] == [51, 11]  # rate x timeout + 1
    scsc = experiment.scsc
    assert scsc is not None
    assert scsc.thresholds["default"] == {"max_delay_ms": 50, "max_loss": 0.3}
    assert scsc.scheduler == {"hold_down_s": 10}
    assert (scsc.probe_interval_ms, scsc.probe_window, scsc.topology_settle_s) == (100, 10, 6)
    assert scsc.probe_services == {"sg2": ("/B",)}
    assert scsc.probe_timeout_ms == 1000  # not given: ScscOptions' default
    assert experiment.timers == LinkStateTimers(hello_interval=1.0, dead_interval=3.0)
    assert (experiment.duration_s, experiment.repetitions, experiment.seed) == (40, 10, 1)

    impair = experiment.timeline[0]
    assert impair == Event(
        10, "impair", link=("sr2", "sg4"), impairment=Impairment(100, 0, 0), index=0
    )
    assert impair.impairment.needs_netem and impair.target == "sr2-sg4"
    thresholds = next(e for e in experiment.timeline if e.action == "thresholds")
    assert (thresholds.service, thresholds.thresholds, thresholds.index) == (
        "/B",
        {"max_delay_ms": 20},
        8,
    )
    crash = next(e for e in experiment.timeline if e.action == "node_crash")
    assert (crash.node, crash.target, crash.link) == ("sg4", "sg4", None)


def test_events_are_in_time_order_ties_in_file_order():
    timeline = [
        {"at": 30, "action": "link_up", "link": ["sg1", "sr1"]},
        {"at": 5, "action": "link_down", "link": ["sg1", "sr1"]},
        {"at": 5, "action": "node_crash", "node": "pod3"},
        {"at": 5, "action": "impair", "link": ["sr1", "sr3"], "rate_mbit": 5},
    ]
    experiment = load(build(timeline=timeline), netem=False)
    order = [(e.at_s, e.action, e.index) for e in experiment.timeline]
    assert order == [
        (5, "link_down", 1),
        (5, "node_crash", 2),
        (5, "impair", 3),
        (30, "link_up", 0),
    ]


def test_minimal_file_takes_the_defaults():
    experiment = load(MIN)
    assert experiment.scsc is None
    assert experiment.timers == LinkStateTimers()
    assert (experiment.repetitions, experiment.seed, experiment.timeline) == (1, 0, ())
    assert experiment.description == "" and experiment.reuse_network is False
    assert load(build(MIN, reuse_network=True)).reuse_network is True
    assert experiment.calibration == Calibration(floor_s=3.0, impairment_s=3.0, interval_s=0.05)
    off = load(build(MIN, calibration={"floor_s": 0, "interval_s": 0.1})).calibration
    assert off == Calibration(floor_s=0, impairment_s=3.0, interval_s=0.1)
    assert load(build(MIN, calibration=None)).calibration == Calibration()
    quiet = Calibration(floor_s=0, impairment_s=0)
    assert quiet.describe() == "calibration off"
    assert [p.name for p in experiment.topology.pods] == ["pod1", "pod2", "pod3", "pod4"]
    assert experiment.workload == (WorkloadSpec("pod2", "/B"),)
    (variant,) = experiment.variants
    assert (variant.name, variant.is_base, variant.changes) == ("base", True, {})
    assert variant.workload == experiment.workload and variant.topology == experiment.topology


def test_variants_are_deep_merges_over_the_base(tmp_path):
    (tmp_path / "delay.yaml").write_text(FULL)
    experiment = load_experiment(tmp_path / "delay.yaml", netem_available=True)
    variants = {v.name: v for v in experiment.variants}
    assert list(variants) == ["scsc", "routing-only", "probe-500ms", "same"]

    assert variants["scsc"].is_base and variants["scsc"].scsc == experiment.scsc
    # a change to the value the base already has is no change
    assert variants["same"].is_base and variants["same"].changes == {"scsc": {"probe_window": 10}}

    routing = variants["routing-only"]
    assert routing.scsc is None and not routing.is_base
    assert routing.changes == {"scsc": None}

    probe = variants["probe-500ms"].scsc
    assert probe.probe_interval_ms == 500
    assert probe.probe_window == 10 and probe.scheduler == {"hold_down_s": 10}  # kept
    assert probe.thresholds == {  # nested keys merge, the rest is kept
        "default": {"max_delay_ms": 20, "max_loss": 0.3},
        "services": {"/B": {"max_jitter_ms": None}},
    }
    assert experiment.scsc.probe_interval_ms == 100  # the base is untouched


def test_a_variant_without_scsc_leaves_out_the_scsc_events_it_inherits(tmp_path):
    (tmp_path / "delay.yaml").write_text(FULL)
    experiment = load_experiment(tmp_path / "delay.yaml", netem_available=True)
    routing = next(v for v in experiment.variants if v.name == "routing-only")
    assert [e.action for e in routing.dropped] == ["scsc_stop", "scsc_start", "thresholds"]
    assert {e.action for e in routing.timeline} == {
        "impair",
        "clear",
        "link_down",
        "link_up",
        "node_crash",
        "node_restart",
    }
    assert len(experiment.variants[0].timeline) == 9


def test_lists_replace_and_a_variant_can_change_the_topology():
    data = build(
        WITH_SCSC,
        timeline=[{"at": 1, "action": "link_down", "link": ["sr1", "sr2"]}],
        variants=[
            {"name": "ring", "topology": "ring", "workload": [{"client": "pod1", "service": "/A"}]}
        ],
    )
    base = load(data)
    (ring,) = base.variants
    assert base.topology.name == "figure2" and ring.topology.name == "ring6"
    assert ring.workload == (WorkloadSpec("pod1", "/A"),)
    assert ring.timeline[0].link == ("sr1", "sr2") and ring.scsc is not None


def test_graphml_relative_to_the_file_and_pods_behind_any_of_its_nodes(tmp_path):
    write_abilene_graphml(tmp_path / "zoo" / "Abilene.graphml")
    named = load(build(topology="abilene"))
    pods = [
        {"name": "east", "gateway": "NewYork", "instances": ["/B/1"]},
        {"name": "west", "gateway": "Seattle", "instances": ["/B/2"]},
        {"name": "client", "gateway": "Chicago", "instances": ["/C/1"]},
    ]
    data = build(
        topology="zoo/Abilene.graphml",
        pods=pods,
        workload=[{"client": "client", "service": "/B"}],
        timeline=[{"at": 1, "action": "link_down", "link": ["Chicago", "Indianap"]}],
    )
    experiment = load(data, base_dir=tmp_path)
    spec = experiment.topology
    assert experiment.topology_file == (tmp_path / "zoo" / "Abilene.graphml").resolve()
    assert experiment.topology_source == "zoo/Abilene.graphml"
    assert spec.gateways == ("NewYork", "Seattle", "Chicago")
    assert len(spec.gateways) + len(spec.routers) == 11
    assert sorted(spec.spas.values()) == sorted(spec.gateways)
    assert named.topology_file is None and named.topology.name == "abilene"
    assert named.topology == load(build(topology="topohub:topozoo/Abilene")).topology
    # the GraphML copy has the same nodes and links (lengths: great circles, not TopoHub's)
    assert {frozenset((link.a, link.b)) for link in named.topology.links} == {
        frozenset((link.a, link.b)) for link in spec.links
    }


def test_a_topohub_network_takes_pods_behind_any_node_and_names_its_links():
    pods = [
        {"name": "fi", "gateway": "FI", "instances": ["/B/1"]},
        {"name": "pt", "gateway": "PT", "instances": ["/B/2"]},
    ]
    data = build(
        topology="topohub:topozoo/Geant2012",
        pods=pods,
        workload=[{"client": "fi", "service": "/B"}],
        timeline=[{"at": 1, "action": "link_down", "link": ["DK", "DE"]}],
    )
    experiment = load(data)
    assert experiment.topology_source == "topohub:topozoo/Geant2012"
    assert experiment.topology_file is None and experiment.topology.gateways == ("FI", "PT")
    assert len(experiment.topology.gateways) + len(experiment.topology.routers) == 37
    data["timeline"][0]["link"] = ["DK", "XX"]
    assert "timeline[0].link: XX is not a node of geant2012" in refused(data)


def test_pods_override_adds_an_spa_for_an_sg_without_one():
    data = build(
        topology="linear",
        pods=[
            {"name": "pod1", "gateway": "sg1", "instances": ["/A/1"]},
            {"name": "pod2", "gateway": "sg2", "instances": ["/B/2"]},
        ],
    )
    spec = load(data).topology
    assert spec.spas == {"spa1": "sg1", "spa2": "sg2"}
    pods = [{"name": "p", "gateway": "e2x1", "instances": ["/B/1"]}]
    data = build(topology="fattree", pods=pods, workload=[{"client": "p", "service": "/B"}])
    spec = load(data).topology
    # the built-in SGs stay SGs, and keep their SPAs; the new pod's SG gets one of its own
    assert spec.spas == {"spa1": "e1x1", "spa2": "e4x2", "spa3": "e2x1"}
    assert "e2x1" in spec.gateways and [p.gateway for p in spec.pods] == ["e2x1"]


# ---------------------------------------------------------------- netem


def test_netem_detection(tmp_path):
    assert detect_netem(sys_module=tmp_path, modinfo=("false",))
    assert not detect_netem(sys_module=tmp_path / "absent", modinfo=("false",))
    assert detect_netem(sys_module=tmp_path / "absent", modinfo=("true",))
    assert not detect_netem(sys_module=tmp_path / "absent", modinfo=("no-such-program-dmsc",))


@pytest.mark.parametrize("key", ["delay_ms", "loss"])
def test_delay_or_loss_without_netem_is_refused_naming_the_file(key):
    timeline = [{"at": 1, "action": "impair", "link": ["sg1", "sr1"], key: 0.1}]
    assert refused(build(timeline=timeline), netem=False) == (
        f"delay.yaml: timeline[0]: {NETEM_MISSING}"
    )
    assert load(build(timeline=timeline), netem=True).timeline[0].impairment.needs_netem


def test_a_rate_alone_needs_no_netem():
    timeline = [{"at": 1, "action": "impair", "link": ["sg1", "sr1"], "rate_mbit": 5}]
    impairment = load(build(timeline=timeline), netem=False).timeline[0].impairment
    assert impairment == Impairment(rate_mbit=5) and not impairment.needs_netem


def test_netem_is_checked_in_each_variant():
    variant = {
        "name": "slow",
        "timeline": [{"at": 1, "action": "impair", "link": ["sg1", "sr1"], "delay_ms": 5}],
    }
    assert refused(build(variants=[{"name": "base"}, variant]), netem=False) == (
        f"delay.yaml: variants[1].timeline[0]: {NETEM_MISSING}"
    )


# ---------------------------------------------------------------- helpers for the runner


def test_thresholds_after_merges_the_event_over_its_service():
    event = Event(1, "thresholds", service="/B", thresholds={"max_delay_ms": 20})
    current = {"default": {"max_delay_ms": 50}, "services": {"/B": {"max_loss": 0.5}}}
    assert thresholds_after(current, event) == {
        "default": {"max_delay_ms": 50},
        "services": {"/B": {"max_loss": 0.5, "max_delay_ms": 20}},
    }
    off = Event(1, "thresholds", service="default", thresholds={"max_jitter_ms": None})
    assert thresholds_after({}, off) == {"default": {"max_jitter_ms": None}}
    assert current["services"]["/B"] == {"max_loss": 0.5}  # not modified
    with pytest.raises(ValueError):
        thresholds_after(current, Event(1, "scsc_stop"))


def test_describe_names_the_essentials(tmp_path):
    (tmp_path / "delay.yaml").write_text(FULL)
    text = describe(load_experiment(tmp_path / "delay.yaml", netem_available=True))
    lines = text.splitlines()
    assert lines[0].startswith("delay-reroute: A delay on the path")
    assert "topology figure2: 4 SGs, 3 SRs, 9 links, 3 pods" in lines
    assert (
        "workload: pod2 -> /B at 50/s (http, constant arrivals, at most 51 in flight); "
        "pod1 -> /C at 10/s (http, constant arrivals, at most 11 in flight)"
    ) in lines
    assert "routing-only {scsc: null}" in text and "scsc (the base)" in text
    assert "10 repetitions of 40 s, seed 1; 26.7 min of workload in all" in lines
    assert "  10 s impair sr2-sg4: delay 100 ms ± 0 ms, loss 0" in lines
    assert "  20 s scsc_stop" in lines
    assert "reuse_network" not in text
    kept = load_experiment(tmp_path / "delay.yaml", netem_available=True)
    text = describe(dataclasses.replace(kept, reuse_network=True))
    assert "one network per variant, reset between repetitions (reuse_network)" in text


def test_a_call_graph_and_open_loop_settings_load_as_written():
    experiment = load(
        build(
            MIN,
            workload=[
                {"client": "pod2", "service": "/A", "rate_hz": 50, "arrivals": "poisson",
                 "protocol": "udp", "request_bytes": 100, "response_bytes": 1200},
                {"client": "pod3", "service": "/A/4", "arrivals": "closed", "connection": "new"},
            ],
            calls={"/A": {"calls": ["/B", "/C/3"], "parallel": True, "timeout_s": 0.25},
                   "/B": ["/C"]},
        )
    )  # fmt: skip
    variant = experiment.variants[0]
    udp, closed = variant.workload
    assert (udp.arrivals, udp.protocol, udp.request_bytes, udp.response_bytes) == (
        "poisson", "udp", 100, 1200,
    )  # fmt: skip
    assert udp.bound == 51 and closed.bound == 1 and closed.connection == "new"
    assert variant.calls == (
        CallsConfig("/A", ("/B", "/C/3"), parallel=True, timeout_ms=250),
        CallsConfig("/B", ("/C",), parallel=False, timeout_ms=1000),
    )
    text = describe(experiment)
    assert "  /A calls /B, /C/3 at once" in text and "  /B calls /C in turn" in text
    assert "pod3 -> /A/4 at 10/s (http, closed loop, at most 1 in flight)" in text


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_experiment_is_valid_described_and_listed(path):
    experiment = load_experiment(path, netem_available=True)
    assert experiment.name == path.stem
    assert len(experiment.description) > 40
    assert f"| `{path.name}` |" in (path.parent / "README.md").read_text()


def test_the_shipped_experiments_are_found():
    assert {"delay-reroute", "delay-baselines", "congestion-reroute"} <= {p.stem for p in SHIPPED}


# ---------------------------------------------------------------- files that are not YAML


def test_unreadable_and_malformed_files(tmp_path):
    missing = tmp_path / "none.yaml"
    with pytest.raises(ConfigError, match=r"none\.yaml: cannot read \(No such file or directory\)"):
        load_experiment(missing)
    duplicate = tmp_path / "dup.yaml"
    duplicate.write_text("name: a\nname: b\n")
    with pytest.raises(ConfigError) as caught:
        load_experiment(duplicate)
    assert (
        str(caught.value) == f"{duplicate}: not valid YAML: duplicate key 'name' (line 2, column 1)"
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [a\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML: .*\(line 2, column 1\)"):
        load_experiment(broken)
    assert refused([1, 2]) == "delay.yaml: expected a mapping, got a list"


def test_a_graphml_path_is_relative_to_the_experiment_file(tmp_path):
    write_abilene_graphml(tmp_path / "Abilene.graphml")
    assert load(build(topology="Abilene.graphml"), base_dir=tmp_path).topology.name == "abilene"
    assert refused(build(topology="zoo/Abilene.graphml"), base_dir=tmp_path) == (
        "delay.yaml: topology: no GraphML file zoo/Abilene.graphml "
        f"(relative to the experiment file: {tmp_path}/zoo/Abilene.graphml)"
    )


# ---------------------------------------------------------------- one test per rule

TOP = (
    "name, description, topology, pods, workload, calls, scsc, timers, duration_s, repetitions, "
    "seed"
)
ACTIONS = (
    "impair, clear, link_down, link_up, node_crash, node_restart, scsc_stop, scsc_start, thresholds"
)
OFFERED = "/A, /A/1, /A/4, /B, /B/1, /B/4, /C, /C/2, /C/3"
ROUTERS = "sg1, sg2, sg3, sg4, sr1, sr2, sr3"
SGS = "sg1, sg2, sg3, sg4"


def event(**keys) -> list[dict]:
    return [{"at": 5, **keys}]


def impair(**keys) -> list[dict]:
    return event(action="impair", link=["sg1", "sr1"], **keys)


CASES = [
    # top level: keys, types, ranges
    (
        {"sccs": {}},
        f"sccs: unknown key (known: {TOP}, timeline, reuse_network, calibration, variants)",
    ),
    (
        {"calibration": {"floor": 3}},
        "calibration.floor: unknown key (known: floor_s, impairment_s, interval_s)",
    ),
    ({"calibration": {"floor_s": -1}}, "calibration.floor_s: must be >= 0, got -1"),
    (
        {"calibration": {"impairment_s": "3 s"}},
        "calibration.impairment_s: expected a number, got '3 s'",
    ),
    (
        {"calibration": {"interval_s": 0.001}},
        "calibration.interval_s: must be in [0.01, 1], got 0.001",
    ),
    ({"calibration": [3]}, "calibration: expected a mapping, got a list"),
    ({"reuse_network": "yes please"}, "reuse_network: expected true or false, got 'yes please'"),
    ({"reuse_network": 1}, "reuse_network: expected true or false, got 1"),
    ({"duration_s": DROP}, "duration_s: required"),
    ({"duration_s": None}, "duration_s: required, not null"),
    (
        {"name": "Delay Reroute"},
        "name: 'Delay Reroute': use lowercase letters, digits and '-' only",
    ),
    ({"duration_s": "40s"}, "duration_s: expected a number, got '40s'"),
    (
        {"duration_s": "5e1"},
        "duration_s: expected a number, got '5e1' (YAML reads 5e1 as text: write 50 or 5.0e+01)",
    ),
    ({"duration_s": 0}, "duration_s: must be > 0, got 0"),
    ({"duration_s": float("inf")}, "duration_s: must be > 0, got inf"),
    ({"repetitions": 1.5}, "repetitions: expected an integer, got 1.5"),
    ({"repetitions": 0}, "repetitions: must be >= 1, got 0"),
    ({"seed": True}, "seed: expected an integer, got true"),
    ({"description": ["x"]}, "description: expected a string, got a list"),
    # topology and pods
    (
        {"topology": "figure3"},
        "topology: unknown topology 'figure3': use a built-in (figure2, linear, ring, fattree, "
        "abilene), topohub:<key> (e.g. topohub:topozoo/Geant2012) or a .graphml file relative "
        "to the experiment file",
    ),
    (
        {"topology": "topohub:topozoo/geant2012"},
        "topology: topohub:topozoo/geant2012: no such network in topohub 1.5.1; did you mean "
        "topohub:topozoo/Geant2012, topohub:topozoo/Geant2010, topohub:topozoo/Geant2001?",
    ),
    (
        {"topology": "zoo/none.graphml"},
        "topology: no GraphML file zoo/none.graphml "
        "(relative to the experiment file: /nonexistent/zoo/none.graphml)",
    ),
    (
        {"pods": [{"name": "pod2", "gateway": "sr1", "instances": ["/B/2"]}]},
        f"pods[0].gateway: sr1 is not an SG of figure2 (SGs: {SGS})",
    ),
    (
        {"pods": [{"name": "pod2", "gateway": "sg2", "instances": ["/B"]}]},
        "pods[0].instances[0]: /B is not an instance (needs /service/instance)",
    ),
    (
        {"pods": [{"name": "pod2", "gateway": "sg2", "instances": ["/B/1", "/B/1"]}]},
        "pods[0].instances[1]: /B/1 is already an instance of pod2",
    ),
    (
        {"pods": [{"name": "pod2", "gateway": "sg2", "instance": ["/B/1"]}]},
        "pods[0].instance: unknown key (known: name, gateway, instances, unauthorized)",
    ),
    (
        {"pods": [{"name": "sg1", "gateway": "sg2", "instances": ["/B/1"]}]},
        "pods: topology figure2: duplicate node names ['sg1']",
    ),
    ({"pods": []}, "pods: needs at least 1 entry"),
    # workload
    ({"workload": []}, "workload: needs at least 1 entry"),
    (
        {"workload": [{"client": "pod2", "service": "/B", "rate": 5}]},
        "workload[0].rate: unknown key (known: client, service, rate_hz, arrivals, protocol, "
        "connection, timeout_s, request_bytes, response_bytes, max_in_flight)",
    ),
    (
        {"workload": [{"client": "pod9", "service": "/B"}]},
        "workload[0].client: pod9 is not a pod of figure2 (pods: pod1, pod2, pod3, pod4)",
    ),
    (
        {"workload": [{"client": "pod2", "service": "/D"}]},
        f"workload[0].service: no pod of figure2 offers /D (offered: {OFFERED})",
    ),
    (
        {"workload": [{"client": "pod2", "service": "B"}]},
        "workload[0].service: service prefix 'B' must start with '/'",
    ),
    (
        {"workload": [{"client": "pod2", "service": "/B"}, {"client": "pod2", "service": "/B"}]},
        "workload[1]: pod2 already calls /B in workload[0]",
    ),
    (
        {"workload": [{"client": "pod2", "service": "/B", "protocol": "tcp"}]},
        "workload[0].protocol: must be one of http, udp, got 'tcp'",
    ),
    (
        {"workload": [{"client": "pod2", "service": "/B", "arrivals": "bursty"}]},
        "workload[0].arrivals: must be one of constant, poisson, closed, got 'bursty'",
    ),
    (
        {"workload": [{"client": "pod2", "service": "/B", "connection": "close"}]},
        "workload[0].connection: must be one of keep-alive, new, got 'close'",
    ),
    (
        {
            "workload": [
                {"client": "pod2", "service": "/B", "protocol": "udp", "response_bytes": 2000}
            ]
        },
        "workload[0].response_bytes: must be from 0 to 1200 (udp), got 2000",
    ),
    (
        {"workload": [{"client": "pod2", "service": "/B", "request_bytes": 1.5}]},
        "workload[0].request_bytes: expected an integer, got 1.5",
    ),
    (
        {"workload": [{"client": "pod2", "service": "/B", "max_in_flight": 0}]},
        "workload[0].max_in_flight: must be >= 1, got 0",
    ),
    # calls
    (
        {"calls": [["/A", "/B"]]},
        "calls: expected a mapping of services to what they call, got a list",
    ),
    ({"calls": {"/D": ["/B"]}}, f"calls[/D]: no pod of figure2 offers /D (offered: {OFFERED})"),
    ({"calls": {"/A/1": ["/B"]}}, "calls[/A/1]: /A/1 is an instance: name its service, as /A"),
    ({"calls": {"/A": []}}, "calls[/A].calls: needs at least 1 entry"),
    (
        {"calls": {"/A": ["/D"]}},
        f"calls[/A].calls[0]: no pod of figure2 offers /D (offered: {OFFERED})",
    ),
    (
        {"calls": {"/A": {"calls": ["/B"], "fanout": 2}}},
        "calls[/A].fanout: unknown key (known: calls, parallel, timeout_s)",
    ),
    (
        {"calls": {"/A": {"calls": ["/B"], "parallel": "yes"}}},
        "calls[/A].parallel: expected true or false, got 'yes'",
    ),
    (
        {"calls": {"/A": ["/B/4"], "/B": ["/C"], "/C": ["/A"]}},
        "calls: the call graph has a cycle: /A -> /B -> /C -> /A (a call would never end)",
    ),
    (
        {"calls": {"/A": ["/A/4"]}},
        "calls: the call graph has a cycle: /A -> /A (a call would never end)",
    ),
    (
        {"workload": [{"client": "pod2", "service": "/B", "rate_hz": -1}]},
        "workload[0].rate_hz: must be > 0, got -1",
    ),
    # scsc
    (
        {"scsc": {"probe_interval": 5}},
        "scsc.probe_interval: unknown key (known: thresholds, scheduler, decision_interval_s, "
        "topology_settle_s, probe_interval_ms, probe_timeout_ms, probe_window, "
        "telemetry_interval_ms, probe_services)",
    ),
    ({"scsc": {"probe_interval_ms": 0}}, "scsc.probe_interval_ms: must be > 0, got 0"),
    ({"scsc": {"probe_window": 2.5}}, "scsc.probe_window: expected an integer, got 2.5"),
    ({"scsc": [1]}, "scsc: expected a mapping, got a list"),
    (
        {"scsc": {"thresholds": {"services": {"/B": {"min_bandwidth_bps": "5e6"}}}}},
        "scsc.thresholds.services[/B].min_bandwidth_bps: expected a number, got '5e6' "
        "(YAML reads 5e6 as text: write 5000000 or 5.0e+06)",
    ),
    (
        {"scsc": {"thresholds": {"default": {"max_loss": 2}}}},
        "scsc.thresholds.default.max_loss: a fraction in (0, 1], got 2",
    ),
    (
        {"scsc": {"thresholds": {"default": {"max_delay": 2}}}},
        "scsc.thresholds.default.max_delay: unknown key (known: min_bandwidth_bps, "
        "max_delay_ms, max_jitter_ms, max_loss)",
    ),
    (
        {"scsc": {"thresholds": {"services": {"/D": {"max_delay_ms": 2}}}}},
        f"scsc.thresholds.services[/D]: no pod of figure2 offers /D (offered: {OFFERED})",
    ),
    (
        {"scsc": {"scheduler": {"hold_down_s": -1}}},
        "scsc.scheduler.hold_down_s: must be >= 0, got -1",
    ),
    (
        {"scsc": {"scheduler": {"hold": 1}}},
        "scsc.scheduler.hold: unknown key (known: hysteresis, hysteresis_floor_ms, hold_down_s, "
        "delay_weight, crossing_penalty, telemetry_max_age_s, policy_priority)",
    ),
    (
        {"scsc": {"probe_services": {"sr1": ["/B"]}}},
        f"scsc.probe_services.sr1: sr1 is not an SG of figure2 (SGs: {SGS})",
    ),
    (
        {"scsc": {"probe_services": {"sg2": ["/D"]}}},
        f"scsc.probe_services.sg2[0]: no pod of figure2 offers /D (offered: {OFFERED})",
    ),
    # timers
    (
        {"timers": {"hello": 1}},
        "timers.hello: unknown key (known: hello_interval, dead_interval, retransmit_interval, "
        "lsa_lifetime, lsa_refresh, min_lsa_interval, spf_initial_delay, spf_hold, "
        "spf_max_hold, purge_hold)",
    ),
    ({"timers": {"hello_interval": -1}}, "timers.hello_interval: must be positive, got -1"),
    # timeline: times, actions, keys
    (
        {"timeline": [{"at": 40, "action": "link_down", "link": ["sg1", "sr1"]}]},
        "timeline[0].at: must be in [0, duration_s) = [0, 40), got 40",
    ),
    (
        {"timeline": [{"at": -1, "action": "link_down", "link": ["sg1", "sr1"]}]},
        "timeline[0].at: must be in [0, duration_s) = [0, 40), got -1",
    ),
    (
        {"timeline": event(action="impare")},
        f"timeline[0].action: unknown action 'impare' (actions: {ACTIONS})",
    ),
    ({"timeline": event(node="sg1")}, f"timeline[0].action: required (actions: {ACTIONS})"),
    (
        {"timeline": event(action="clear", link=["sg1", "sr1"], delay_ms=5)},
        "timeline[0].delay_ms: unknown key (known: at, action, link)",
    ),
    ({"timeline": event(action="link_down")}, "timeline[0].link: required"),
    ({"timeline": [{"action": "scsc_stop"}]}, "timeline[0].at: required"),
    # timeline: names that exist
    (
        {
            "timeline": [
                *event(action="link_down", link=["sg1", "sr1"]),
                *event(action="link_up", link=["sg1", "sr1"]),
                *event(action="link_down", link=["sg1", "sr9"]),
            ]
        },
        f"timeline[2].link: sr9 is not a node of figure2 (nodes: {ROUTERS})",
    ),
    (
        {"timeline": event(action="link_down", link=["sg1", "pod1"])},
        f"timeline[0].link: pod1 is not a node of figure2 (nodes: {ROUTERS})",
    ),
    (
        {"timeline": event(action="link_down", link=["sg1", "sg2"])},
        "timeline[0].link: figure2 has no link between sg1 and sg2",
    ),
    (
        {"timeline": event(action="link_down", link="sg1-sr1")},
        "timeline[0].link: expected two node names, as [sg1, sr1], got 'sg1-sr1'",
    ),
    (
        {"timeline": event(action="node_crash", node="sg9")},
        f"timeline[0].node: sg9 is not a node of figure2 (nodes: {ROUTERS}, pod1, pod2, pod3, "
        "pod4, spa1, spa2, spa3, spa4)",
    ),
    (
        {"timeline": event(action="node_crash", node="scsc")},
        "timeline[0].node: the SCSC is stopped and started with scsc_stop and scsc_start",
    ),
    # timeline: impairments
    (
        {"timeline": impair()},
        "timeline[0]: impair needs at least one of delay_ms, jitter_ms, loss, rate_mbit",
    ),
    (
        {"timeline": impair(delay_ms=None, loss=None)},
        "timeline[0]: impair needs at least one of delay_ms, jitter_ms, loss, rate_mbit",
    ),
    ({"timeline": impair(jitter_ms=5)}, "timeline[0].jitter_ms: needs delay_ms"),
    ({"timeline": impair(loss=1.5)}, "timeline[0].loss: must be in [0, 1], got 1.5"),
    ({"timeline": impair(delay_ms=-5)}, "timeline[0].delay_ms: must be >= 0, got -5"),
    (
        {"timeline": impair(delay_ms="100ms")},
        "timeline[0].delay_ms: expected a number, got '100ms'",
    ),
    ({"timeline": impair(rate_mbit=0)}, "timeline[0].rate_mbit: must be > 0, got 0"),
    (
        {"timeline": impair(delay_ms=5, jitter_ms=1, distribution="gauss")},
        "timeline[0].distribution: must be one of normal, pareto, paretonormal, uniform, "
        "got 'gauss'",
    ),
    (
        {"timeline": impair(delay_ms=5, distribution="normal")},
        "timeline[0].distribution: needs jitter_ms",
    ),
    (
        {"timeline": impair(delay_ms=5, jitter_ms=1, correlation=2)},
        "timeline[0].correlation: must be in [0, 1], got 2",
    ),
    (
        {"timeline": impair(delay_ms=5, correlation=0.5)},
        "timeline[0].correlation: needs jitter_ms or loss",
    ),
    (
        {"timeline": impair(delay_ms=5, direction="up")},
        "timeline[0].direction: must be one of both, forward, backward, got 'up'",
    ),
    # timeline: SCSC events need an SCSC
    (
        {"timeline": event(action="scsc_stop")},
        "timeline[0].action: scsc_stop needs scsc, which is off (null or absent) here",
    ),
    (
        {"timeline": event(action="thresholds", service="/B", max_delay_ms=20)},
        "timeline[0].action: thresholds needs scsc, which is off (null or absent) here",
    ),
    # timeline: the order must make sense
    (
        {"timeline": event(action="link_up", link=["sg1", "sr1"])},
        "timeline[0]: link_up: sg1-sr1 is not down at 5 s",
    ),
    (
        {
            "timeline": [
                *event(action="node_crash", node="sg4"),
                *event(action="node_crash", node="sg4"),
            ]
        },
        "timeline[1]: node_crash: sg4 is already crashed (timeline[0], 5 s)",
    ),
    (
        {"timeline": event(action="node_restart", node="pod1")},
        "timeline[0]: node_restart: pod1 is not crashed at 5 s",
    ),
    (
        {"timeline": event(action="clear", link=["sg1", "sr1"])},
        "timeline[0]: clear: sg1-sr1 is not impaired at 5 s",
    ),
    # variants
    ({"variants": []}, "variants: needs at least 1 entry"),
    (
        {"variants": [{"name": "a"}, {"name": "a"}]},
        "variants[1].name: a is already variants[0]'s name",
    ),
    ({"variants": [{"scsc": None}]}, "variants[0].name: required"),
    (
        {"variants": [{"name": "long", "duration_s": 80}]},
        "variants[0].duration_s: unknown key (known: name, topology, pods, workload, calls, "
        "scsc, timers, timeline)",
    ),
    (
        {"variants": [{"name": "x", "scsc": {"probe_window": 0}}]},
        "variants[0].scsc.probe_window: must be > 0, got 0",
    ),
]
SCSC_CASES = [
    (
        {"timeline": event(action="thresholds", service="/B")},
        "timeline[0]: thresholds needs at least one of min_bandwidth_bps, max_delay_ms, "
        "max_jitter_ms, max_loss",
    ),
    (
        {"timeline": event(action="thresholds", service="/D", max_delay_ms=20)},
        f"timeline[0].service: no pod of figure2 offers /D (offered: {OFFERED})",
    ),
    (
        {"timeline": event(action="thresholds", service="/B", max_delay_ms=0)},
        "timeline[0].max_delay_ms: out of range, got 0",
    ),
    (
        {
            "timeline": [
                *event(action="scsc_stop"),
                *event(action="thresholds", service="default", max_loss=0.5),
            ]
        },
        "timeline[1]: thresholds: scsc is stopped (timeline[0], 5 s)",
    ),
    (
        {"timeline": event(action="scsc_start")},
        "timeline[0]: scsc_start: scsc is not stopped at 5 s",
    ),
    (
        {
            "variants": [
                {"name": "routing-only", "scsc": None, "timeline": event(action="scsc_stop")}
            ]
        },
        "variants[0].timeline[0].action: scsc_stop needs scsc, which is off (null or absent) here",
    ),
    (
        {
            "timeline": event(action="link_down", link=["sr1", "sr3"]),
            "variants": [{"name": "ring", "topology": "ring"}],
        },
        "variants[0].timeline[0].link: ring6 has no link between sr1 and sr3",
    ),
]


@pytest.mark.parametrize(("changes", "reason"), CASES)
def test_refused_with_file_field_and_reason(changes, reason):
    assert refused(build(MIN, **changes)) == f"delay.yaml: {reason}"


@pytest.mark.parametrize(("changes", "reason"), SCSC_CASES)
def test_refused_with_scsc(changes, reason):
    assert refused(build(WITH_SCSC, **changes)) == f"delay.yaml: {reason}"
