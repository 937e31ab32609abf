"""Smoke test of benchmarks/bench_routing.py on tiny inputs: well-formed results, no timings."""

import json
import random

import networkx as nx
import pytest

from benchmarks import bench_routing as bench
from dmsc.topologies.zoo import load_topohub

ABILENE = "topohub:topozoo/Abilene"


def assert_timing(timing: bench.Timing, reps: int) -> None:
    assert timing.reps == reps
    assert 0 < timing.min_s <= timing.median_s <= timing.max_s


def assert_converged(result: bench.ConvergenceBench, trials: int) -> None:
    assert result.converged is True
    assert len(result.trials) == trials
    assert result.initial_s > 0 and result.wall_s > 0
    for trial in result.trials:
        assert trial.down_s > 0 and trial.up_s > 0
        assert trial.routers_changed >= 2  # at least both ends of the failed link
    assert result.down_max_s >= result.down_median_s > 0
    json.dumps(bench.to_json(result))


def test_spf_bench_on_a_50_node_graph():
    result = bench.bench_spf(nodes=50, reps=2, cold_reps=1, seed=3)
    assert (result.nodes, result.edges) == (50, 100)
    assert result.announcing_nodes == 5 and result.prefixes >= 5
    assert result.rib_routes > 50
    for key, _ in bench.SPF_ROWS:
        assert_timing(getattr(result, key), 1 if key == "route_cold" else 2)
    assert set(result.ratios) == {"dijkstra_only", "spf", "route_warm", "route_cold"}
    assert all(r["median"] > 0 and r["min"] > 0 for r in result.ratios.values())
    assert "50 nodes" in bench.format_spf(result)


def test_codec_bench_round_trips_realistic_lsas():
    result = bench.bench_codec(lsas=20, reps=2, seed=3)
    assert result.lsas == 20 and 1 <= result.packets < 20
    assert result.mean_packet_bytes <= bench.MAX_PACKET_BYTES
    for timing in (result.encode, result.decode, result.parse_baseline):
        assert_timing(timing, 2)
    assert min(result.encode_lsas_per_s, result.decode_lsas_per_s, result.parse_lsas_per_s) > 0
    assert "decode_packet" in bench.format_codec(result)


def test_packed_updates_respect_the_datagram_limit():
    lsas = bench.realistic_lsas(30, seed=1)
    packets = bench.pack_updates(lsas, sender="sr1")
    assert sum(len(p.update.lsas) for p in packets) == 30
    for packet in packets:
        assert sum(lsa.ByteSize() + 4 for lsa in packet.update.lsas) <= bench.MAX_PACKET_BYTES


def test_convergence_after_one_link_failure_on_abilene():
    graph = load_topohub(ABILENE)
    plan = bench.service_plan(graph.nodes, random.Random(2))
    result = bench.bench_convergence(graph, "Abilene", plan, failures=1, seed=2)
    assert_converged(result, trials=1)
    assert result.nodes == 11 and result.prefixes >= 1
    assert "Abilene" in bench.format_convergence(result)


def test_convergence_on_the_figure2_shape_fails_each_link_that_is_not_a_bridge():
    plan = bench.figure2_plan()
    graph = bench.figure2_graph()
    survivable = {frozenset(e) for e in graph.edges} - {frozenset(e) for e in nx.bridges(graph)}
    result = bench.bench_convergence(graph, "fig2", plan, failures=10, seed=1)
    assert_converged(result, trials=len(survivable))  # 7: all but the top SGs' access links
    assert {frozenset(t.link) for t in result.trials} == survivable


def test_reference_routes_use_every_equal_cost_first_hop_and_nearest_origin():
    graph = nx.DiGraph()
    for u, v in (("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")):
        graph.add_edge(u, v, weight=1)
        graph.add_edge(v, u, weight=1)
    routes = bench.reference_routes(graph, {"/B": {"d", "b"}})
    assert routes["a"]["d"] == (2, frozenset({"b", "c"}), False)
    assert routes["a"]["/B"] == (1, frozenset({"b"}), False)
    assert routes["b"]["/B"] == (0, frozenset(), True)


def test_missing_topology_is_refused_before_anything_runs(tmp_path, capsys):
    missing = tmp_path / "nope.graphml"
    assert bench.main(["--quick", "--topology", str(missing)]) == 2
    assert f"topology {missing} not found" in capsys.readouterr().err
    assert bench.main(["--quick", "--topology", "topohub:topozoo/Nope"]) == 1
    assert "topohub:topozoo/Nope: no such network in topohub" in capsys.readouterr().err


def test_the_default_topology_is_topohubs_geant2012():
    assert bench.parse_args([]).topology == "topohub:topozoo/Geant2012"
    assert bench.load_topology(bench.DEFAULT_TOPOLOGY).number_of_nodes() == 37


def test_routes_that_never_match_the_reference_are_reported(spa):
    network = bench.network_from_graph(bench.figure2_graph(), spa.verifier)
    never_announced = {"/X": {"sg1"}}
    with pytest.raises(bench.BenchmarkError, match="differ from a fresh SPF"):
        bench.wait_settled(network, never_announced, timeout=30.0)


def test_a_tree_topology_is_refused_before_anything_runs(tmp_path, capsys):
    tree = tmp_path / "tree.graphml"
    nx.write_graphml(nx.path_graph(4), tree)
    assert bench.main(["--quick", "--topology", str(tree)]) == 1
    assert "every link is a bridge" in capsys.readouterr().err


def test_whole_run_on_tiny_sizes_is_json_serialisable(tmp_path):
    config = bench.BenchConfig((30,), 1, 1, 10, 1, 1, seed=1, topology=ABILENE)
    lines: list[str] = []
    results = bench.run(config, quick=True, emit=lines.append)
    assert [r.converged for r in results["convergence"]] == [True, True]
    assert json.loads(json.dumps(bench.to_json(results)))["config"]["topology"] == ABILENE
    assert any("Figure 2" in line for line in lines)


# ---------------------------------------------------------------- bench_scsc_decision


@pytest.fixture(scope="module")
def scsc():
    from benchmarks import bench_scsc_decision

    return bench_scsc_decision


def test_scsc_decision_bench_on_figure2_moves_pairs_then_holds_still(scsc):
    result = scsc.bench_figure2(reps=2, seed=3)
    assert (result.nodes, result.links, result.gateways, result.pairs) == (7, 9, 4, 16)
    assert result.telemetry == result.gateways * result.instances
    cold, steady, change = (result.rounds[k] for k in ("cold", "steady", "change"))
    assert cold.changed == cold.managed == result.routing_choice_bad >= 1
    assert cold.intents == cold.added > 0 and cold.removed == 0
    assert (steady.added, steady.removed, steady.changed) == (0, 0, 0)
    assert steady.intents == cold.intents
    assert change.changed >= 1 and change.added > 0
    for timing in (result.baseline, result.from_lsas, cold.timing, steady.timing):
        assert timing.reps == 2 and 0 < timing.min_s <= timing.median_s <= timing.max_s
    assert all(r.ratios["median"] > 0 and r.ratios["min"] > 0 for r in result.rounds.values())
    assert "draft Figure 2" in scsc.format_topology(result)
    assert "Summary" in scsc.format_summary([result, result])
    json.dumps(bench.to_json(result))


def test_scsc_placement_is_seeded_and_spreads_each_service_over_distinct_sgs(scsc):
    graph = bench.figure2_graph()
    gateways = ("sg1", "sg2", "sg3", "sg4")
    placement = scsc.place(graph, gateways, random.Random(5))
    assert placement == scsc.place(graph, gateways, random.Random(5))
    for service in scsc.SERVICES:
        sgs = [sg for name, sg in placement.hosts.items() if name.startswith(f"{service}/")]
        assert 2 <= len(sgs) <= 4 and len(set(sgs)) == len(sgs)


def test_scsc_quick_run_writes_json(scsc, tmp_path, capsys):
    out = tmp_path / "scsc.json"
    assert scsc.main(["--quick", "--json", str(out)]) == 0  # default: TopoHub's Zoo networks
    data = json.loads(out.read_text())
    assert [t["nodes"] for t in data["topologies"]] == [7, 11]  # Figure 2, then Abilene
    assert data["config"]["zoo_files"] == [ABILENE]
    assert set(data["topologies"][1]["rounds"]) == {"cold", "steady", "change"}
    assert "Summary" in capsys.readouterr().out


def test_scsc_bench_without_zoo_files_is_refused(scsc, tmp_path, capsys):
    assert scsc.main(["--quick", "--zoo", str(tmp_path)]) == 2
    assert f"no .graphml file in {tmp_path}" in capsys.readouterr().err


def test_scsc_bench_sorts_the_given_networks_by_size(scsc, tmp_path):
    tree = tmp_path / "ring.graphml"
    nx.write_graphml(nx.cycle_graph(5), tree)
    sources = ["topohub:topozoo/Geant2012", str(tree), ABILENE]
    assert scsc.by_size(sources) == [str(tree), ABILENE, "topohub:topozoo/Geant2012"]
    assert scsc.zoo_files(tmp_path) == [str(tree)]


def test_authentication_bench_on_tiny_inputs():
    from benchmarks import bench_authentication as auth

    per_lsa = auth.bench_per_lsa(count=12, reps=2, seed=3)
    assert per_lsa.mean_signed_lsa_bytes > per_lsa.mean_unsigned_lsa_bytes  # signature + cert
    assert set(per_lsa.ratios) == {k for k, _ in auth.PER_LSA_ROWS} - {"decode", "parse_packet"}
    for timing in per_lsa.timings.values():
        assert_timing(timing, 2)
    route = auth.bench_signed_route(nodes=60, reps=2, seed=3)
    assert route.signed.min_s > 0 and route.signed_vs_unsigned["median"] > 0
    assert "60 nodes" in auth.format_signed_route([route])
    json.dumps(bench.to_json(per_lsa))


def test_authentication_bench_refuses_to_time_refused_lsas():
    from benchmarks import bench_authentication as auth
    from dmsc.routing.auth import CertificateChecker
    from dmsc.routing.domain import RoutingDomain

    domain = RoutingDomain.from_seed(1)
    lsas = auth.signed(bench.realistic_lsas(3, seed=1), domain, 1)
    lsas[1].sequence += 1  # no longer what its originator signed
    with pytest.raises(bench.BenchmarkError, match="correctly signed LSA was refused"):
        auth.verify_all(lsas, CertificateChecker([RoutingDomain.from_seed(1).anchor.public_key()]))
