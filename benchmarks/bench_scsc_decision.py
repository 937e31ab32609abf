"""SCSC decision benchmark: how ``decide()`` + ``diff()`` grow with the topology, from the
draft's Figure 2 up to the largest Topology Zoo network (TopoHub: Abilene, GEANT, GARR).

Each round is printed next to a baseline measured in the same rounds (the machine is noisy, so
ratios travel better than absolute times): networkx's single-source Dijkstra from every client
SG on the same graph. See benchmarks/README.md for what each figure means.

    PYTHONPATH=. python -m benchmarks.bench_scsc_decision [--quick] [--json FILE]
        [--topology SOURCE ... | --zoo DIR]

The measuring function ``bench_topology`` returns a frozen dataclass and prints nothing;
``format_*`` turn results into text; ``main`` is the thin shell.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import random
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from benchmarks.bench_routing import BenchmarkError, Timing, measure, ratio, seconds, to_json
from dmsc.controllers.decision import (
    Decision,
    DecisionInputs,
    Pair,
    PolicyIntent,
    SchedulerConfig,
    Topology,
    decide,
    demand_from_telemetry,
    diff,
)
from dmsc.controllers.thresholds import DEFAULT_THRESHOLDS
from dmsc.errors import DmscError
from dmsc.measurement.estimators import PathQuality
from dmsc.proto import dmsc_pb2
from dmsc.topologies import figure2
from dmsc.topologies.zoo import DEFAULT_DELAY_S, load_network

#: the Zoo networks beside Figure 2 by default (TopoHub, pinned in setup.py): 11 to 48 nodes
DEFAULT_ZOO = ("topohub:topozoo/Abilene", "topohub:topozoo/Geant2012", "topohub:topozoo/Garr201201")

SERVICES = ("/A", "/B", "/C", "/D")  # what every client SG uses
INSTANCES_PER_SERVICE = (2, 4)  # drawn per service, inclusive, each behind its own SG
CLIENT_SERVICE = "/app"  # each SG's own pod is /app/<i>: its client (source) prefix
SG_SHARE = 1 / 3  # of a Topology Zoo graph's nodes, spread across it (Figure 2 has its 4 SGs)
MIN_SGS = 4
ROUTING_CHOICE_BAD_SHARE = 0.25  # pairs whose routing choice is made to cross a threshold
OTHER_BAD_SHARE = 0.1  # other (SG, instance) entries made to cross one
BAD_DELAY_MS = (60.0, 120.0)  # added delay of a degraded entry (default limit: 50 ms)
BAD_LOSS = 0.3  # loss of a degraded entry (default limit: 20 %)
CHANGE_DELAY_MS = 100.0  # added to every entry of the instance that degrades in "change"
LSA_LIFETIME_MS = 1_800_000
PROBES_IN_WINDOW = 10
START = 1_000.0  # time of the cold round; telemetry is always 0.5 s old
TELEMETRY_AGE_S = 0.5
ROUNDS = ("cold", "steady", "change")


@dataclass(frozen=True)
class BenchConfig:
    reps: int
    seed: int
    zoo_files: tuple[str, ...]  # beside Figure 2, smallest first: topohub:<key> or GraphML paths


def by_size(sources: Sequence[str]) -> list[str]:
    """``sources`` (topohub:<key> or GraphML files), smallest (by node count) first."""
    found = [(load_network(source).number_of_nodes(), i) for i, source in enumerate(sources)]
    return [sources[i] for _, i in sorted(found)]


def zoo_files(directory: Path) -> list[str]:
    """The GraphML files of ``directory``, smallest (by node count) first."""
    return by_size([str(p) for p in sorted(directory.glob("*.graphml"))])


def config_for(quick: bool, zoo: Sequence[str], seed: int) -> BenchConfig:
    if quick:
        return BenchConfig(3, seed, tuple(zoo[:1]))
    return BenchConfig(50, seed, tuple(zoo))


# ---------------------------------------------------------------------- placement


@dataclass(frozen=True)
class Placement:
    """Who is where: client SGs (each with one pod) and the SG behind each service instance."""

    gateways: tuple[str, ...]
    hosts: dict[str, str]  # instance name -> its SG

    def names(self) -> dict[str, list[str]]:
        """Advertised names per SG: its pod's own instance, and any service instances (with
        their anycast service names) it hosts."""
        names = {sg: [f"{CLIENT_SERVICE}/{i}"] for i, sg in enumerate(self.gateways, start=1)}
        for instance, sg in sorted(self.hosts.items()):
            names[sg] += [instance, instance.rsplit("/", 1)[0]]
        return names


def spread(graph: nx.Graph, candidates: Sequence[str], count: int, rng: random.Random) -> list[str]:
    """``count`` of ``candidates`` far apart: farthest-point sampling by hop count, from a
    random start, ties broken by a seeded shuffle."""
    order = sorted(candidates)
    rng.shuffle(order)
    chosen = [order[0]]
    nearest = dict(nx.single_source_shortest_path_length(graph, order[0]))
    while len(chosen) < min(count, len(order)):
        pick = max((n for n in order if n not in chosen), key=lambda n: nearest.get(n, math.inf))
        chosen.append(pick)
        for node, hops in nx.single_source_shortest_path_length(graph, pick).items():
            nearest[node] = min(hops, nearest.get(node, math.inf))
    return chosen


def place(graph: nx.Graph, gateways: Sequence[str], rng: random.Random) -> Placement:
    """2-4 instances of each service, spread over distinct SGs."""
    hosts = {}
    for service in SERVICES:
        low, high = INSTANCES_PER_SERVICE
        count = rng.randint(low, min(high, len(gateways)))
        for index, sg in enumerate(spread(graph, gateways, count, rng), start=1):
            hosts[f"{service}/{index}"] = sg
    return Placement(tuple(sorted(gateways)), hosts)


def zoo_gateways(graph: nx.Graph, rng: random.Random) -> list[str]:
    return spread(graph, list(graph.nodes), max(MIN_SGS, round(len(graph) * SG_SHARE)), rng)


# ---------------------------------------------------------------------- the SCSC's view


def make_lsas(
    graph: nx.Graph, names: Mapping[str, list[str]]
) -> list[dmsc_pb2.LinkStateAdvertisement]:
    """One live LSA per node, as the SCSC's LsaCopy messages carry them (attestations are
    left out: Topology.from_lsas does not read them)."""
    return [
        dmsc_pb2.LinkStateAdvertisement(
            originator=node,
            sequence=1,
            lifetime_ms=LSA_LIFETIME_MS,
            adjacencies=[
                dmsc_pb2.Adjacency(neighbor=v, cost=graph[node][v]["cost"])
                for v in sorted(graph[node])
            ],
            prefixes=[dmsc_pb2.AnnouncedPrefix(name=n) for n in names.get(node, [])],
        )
        for node in sorted(graph)
    ]


def scsc_topology(graph: nx.Graph, names: Mapping[str, list[str]]) -> Topology:
    """``Topology.from_lsas`` on the LSAs, after checking that ``from_adjacencies`` on the
    same data is equal. It is when every node has one live LSA, and when every node is given
    a names entry: from_lsas lists the SRs too, with no names."""
    topology = Topology.from_lsas(make_lsas(graph, names))
    adjacencies = {u: [(v, d["cost"]) for v, d in graph[u].items()] for u in graph}
    every = {node: names.get(node, []) for node in graph}
    if topology != Topology.from_adjacencies(adjacencies, every):
        raise BenchmarkError("Topology.from_lsas and from_adjacencies disagree")
    return topology


# ---------------------------------------------------------------------- telemetry


#: (delay ms, jitter ms, loss) per (client SG, instance): the quality before ``at`` is set
Measures = dict[Pair, tuple[float, float, float]]


@dataclass(frozen=True)
class Synthesis:
    measures: Measures
    routing_bad: int  # pairs whose routing choice crosses a threshold
    other_bad: int  # other entries that cross one


def healthy(graph: nx.Graph, path: Sequence[str], rng: random.Random) -> tuple:
    """Propagation along the routed path (1 ms where unknown), 0.1 ms per hop, some noise."""
    links = nx.utils.pairwise(path)
    propagation = sum(graph[u][v].get("delay_s") or DEFAULT_DELAY_S for u, v in links)
    delay = 1e3 * propagation + 0.1 * (len(path) - 1) + rng.uniform(0.2, 1.0)
    return (delay, rng.uniform(0.1, 2.0), 0.0)


def degraded(measured: tuple, rng: random.Random) -> tuple:
    """Crosses a default threshold: BAD_DELAY_MS slower, or BAD_LOSS lost."""
    delay, jitter, loss = measured
    if rng.random() < 0.5:
        return (delay + rng.uniform(*BAD_DELAY_MS), jitter, loss)
    return (delay, jitter, BAD_LOSS)


def healthy_measures(graph: nx.Graph, placement: Placement, rng: random.Random) -> Measures:
    measures: Measures = {}
    for sg in placement.gateways:
        paths = nx.single_source_dijkstra_path(graph, sg, weight="cost")
        for instance, host in sorted(placement.hosts.items()):
            measures[(sg, instance)] = healthy(graph, paths[host], rng)
    return measures


def routing_choices(graph: nx.Graph, placement: Placement) -> dict[Pair, str]:
    """(client SG, service) -> the instance routing alone reaches: the nearest by cost, ties
    by name, as decide() reads anycast."""
    choices = {}
    for sg in placement.gateways:
        distance = nx.single_source_dijkstra_path_length(graph, sg, weight="cost")
        for service in SERVICES:
            choices[(sg, service)] = min(
                (distance[host], instance)
                for instance, host in placement.hosts.items()
                if instance.startswith(f"{service}/")
            )[1]
    return choices


def synthesize(graph: nx.Graph, placement: Placement, rng: random.Random) -> Synthesis:
    """Every (client SG, instance) measured; routing's choice made to cross a threshold in
    ROUTING_CHOICE_BAD_SHARE of the pairs (at least one), OTHER_BAD_SHARE of the rest too."""
    measures = healthy_measures(graph, placement, rng)
    choices = routing_choices(graph, placement)
    bad_pairs = rng.sample(sorted(choices), max(1, round(len(choices) * ROUTING_CHOICE_BAD_SHARE)))
    bad = {(sg, choices[(sg, service)]) for sg, service in bad_pairs}
    by_routing = {(sg, instance) for (sg, _), instance in choices.items()}
    others = {k for k in sorted(measures) if k not in by_routing and rng.random() < OTHER_BAD_SHARE}
    for key in sorted(bad | others):
        measures[key] = degraded(measures[key], rng)
    return Synthesis(measures, len(bad_pairs), len(others))


def telemetry_at(measures: Measures, at: float) -> dict[Pair, PathQuality]:
    return {
        key: PathQuality(delay, jitter, loss, None, PROBES_IN_WINDOW, at)
        for key, (delay, jitter, loss) in measures.items()
    }


# ---------------------------------------------------------------------- rounds


@dataclass(frozen=True)
class Round:
    """One timed call: ``decide(inputs, now)`` then ``diff(intents, installed)``."""

    inputs: DecisionInputs
    now: float
    installed: frozenset[PolicyIntent]

    def __call__(self) -> tuple[Decision, tuple[PolicyIntent, ...], tuple[PolicyIntent, ...]]:
        decision = decide(self.inputs, self.now)
        return (decision, *diff(decision.intents, self.installed))


@dataclass(frozen=True)
class Scenario:
    rounds: dict[str, Round]  # cold, steady, change
    degraded_instance: str  # the instance that degrades in the change round


def most_chosen(decision: Decision) -> str:
    """The instance the most managed pairs use, ties by name."""
    counts = Counter(choice.instance for choice in decision.choices.values())
    if not counts:
        raise BenchmarkError("the cold round took no pair over: the telemetry crosses nothing")
    return min(counts, key=lambda instance: (-counts[instance], instance))


def with_degraded(measures: Measures, instance: str) -> Measures:
    """``measures`` with every SG's entry for ``instance`` CHANGE_DELAY_MS slower."""
    return {
        key: (delay + CHANGE_DELAY_MS if key[1] == instance else delay, jitter, loss)
        for key, (delay, jitter, loss) in measures.items()
    }


def build_scenario(topology: Topology, measures: Measures, config: SchedulerConfig) -> Scenario:
    """Three rounds, each fed the previous one's choices and intents: cold (no previous),
    steady (same telemetry a second later: must change nothing, else BenchmarkError), change
    (the instance most pairs were moved to gets slower, after the hold-down)."""
    telemetry = telemetry_at(measures, START - TELEMETRY_AGE_S)
    base = DecisionInputs(topology, telemetry, demand_from_telemetry(telemetry), config=config)
    cold = Round(base, START, frozenset())
    first = cold()[0]
    steady = Round(dataclasses.replace(base, previous=first.choices), START + 1, first.intents)
    settled, added, removed = steady()
    if settled.records or added or removed or dict(settled.choices) != dict(first.choices):
        raise BenchmarkError("the steady round changed something although nothing changed")
    worse, later = most_chosen(settled), START + config.hold_down_s + 1
    telemetry = telemetry_at(with_degraded(measures, worse), later - TELEMETRY_AGE_S)
    inputs = dataclasses.replace(base, telemetry=telemetry, previous=settled.choices)
    change = Round(inputs, later, settled.intents)
    return Scenario({"cold": cold, "steady": steady, "change": change}, worse)


# ---------------------------------------------------------------------- one topology


def p95(timing: Timing) -> float:
    if timing.reps < 2:
        return timing.max_s
    return statistics.quantiles(timing.samples_s, n=20, method="inclusive")[-1]


@dataclass(frozen=True)
class RoundBench:
    timing: Timing
    p95_s: float
    intents: int  # wanted after the round
    added: int  # diff: to add
    removed: int  # diff: to remove (overwritten matches excluded)
    changed: int  # pairs with a decision record: taken over, moved or re-pathed
    managed: int  # pairs with a choice (the others are left to routing)
    ratios: dict[str, float]  # ours / baseline: median of per-round ratios, ratio of minimums


@dataclass(frozen=True)
class TopologyBench:
    topology: str
    nodes: int
    links: int
    gateways: int  # client SGs
    services: int
    instances: int
    pairs: int  # (client SG, service): the demand
    telemetry: int  # (client SG, instance) entries
    routing_choice_bad: int  # pairs whose routing choice crosses a threshold (cold round)
    other_bad: int  # other entries crossing one
    degraded_instance: str  # slower in the change round
    baseline: Timing  # networkx single_source_dijkstra from every client SG
    baseline_p95_s: float
    from_lsas: Timing  # Topology.from_lsas + .instances: a topology change
    from_lsas_p95_s: float
    rounds: dict[str, RoundBench]


def round_bench(run: Round, timing: Timing, baseline: Timing) -> RoundBench:
    decision, added, removed = run()
    return RoundBench(
        timing=timing,
        p95_s=p95(timing),
        intents=len(decision.intents),
        added=len(added),
        removed=len(removed),
        changed=len({(r.source, r.service) for r in decision.records}),
        managed=len(decision.choices),
        ratios=ratio(timing, baseline),
    )


def bench_topology(
    name: str, graph: nx.Graph, gateways: Sequence[str], reps: int, seed: int
) -> TopologyBench:
    """Place, synthesize, check, then time the three rounds against the baseline."""
    rng = random.Random(seed)
    placement = place(graph, gateways, rng)
    lsas = make_lsas(graph, placement.names())
    topology = scsc_topology(graph, placement.names())
    synthesis = synthesize(graph, placement, rng)
    scene = build_scenario(topology, synthesis.measures, SchedulerConfig())
    sources = placement.gateways
    actions: dict[str, Callable[[], object]] = {
        "baseline": lambda: [nx.single_source_dijkstra(graph, s, weight="cost") for s in sources],
        **scene.rounds,
        "from_lsas": lambda: Topology.from_lsas(lsas).instances,
    }
    timings = measure(actions, reps)
    baseline = timings["baseline"]
    return TopologyBench(
        topology=name,
        nodes=graph.number_of_nodes(),
        links=graph.number_of_edges(),
        gateways=len(sources),
        services=len(SERVICES),
        instances=len(placement.hosts),
        pairs=len(scene.rounds["cold"].inputs.demand),
        telemetry=len(synthesis.measures),
        routing_choice_bad=synthesis.routing_bad,
        other_bad=synthesis.other_bad,
        degraded_instance=scene.degraded_instance,
        baseline=baseline,
        baseline_p95_s=p95(baseline),
        from_lsas=timings["from_lsas"],
        from_lsas_p95_s=p95(timings["from_lsas"]),
        rounds={k: round_bench(r, timings[k], baseline) for k, r in scene.rounds.items()},
    )


def bench_figure2(reps: int, seed: int) -> TopologyBench:
    graph = figure2.router_graph()
    return bench_topology("draft Figure 2", graph, figure2.SERVICE_GATEWAYS, reps, seed)


def bench_zoo(name: str, graph: nx.Graph, reps: int, seed: int) -> TopologyBench:
    gateways = zoo_gateways(graph, random.Random(seed))
    return bench_topology(name, graph, gateways, reps, seed)


def load_zoo(source: str) -> nx.Graph:
    """A TopoHub network or GraphML file; ConfigError naming it if unusable (not connected...)."""
    return load_network(source)


# ---------------------------------------------------------------------- report

ROUND_LABELS = {
    "cold": "cold: no previous choices",
    "steady": "steady: previous = last, no change",
    "change": "change: {instance} +{delay:g} ms",
}


def header(config: BenchConfig, quick: bool) -> str:
    limits = DEFAULT_THRESHOLDS
    scheduler = SchedulerConfig()
    return (
        f"DMSC SCSC decision benchmark ({'quick' if quick else 'full'}), seed {config.seed}\n"
        f"  Python {platform.python_version()} on {platform.machine()}, networkx {nx.__version__}\n"
        f"  times: median / p95 over N rounds (time.perf_counter, gc paused), after one warm-up;\n"
        "  ratios: ours / baseline measured in the same rounds (> 1 = slower)\n"
        f"  thresholds: the defaults (delay >= {limits.max_delay_ms:g} ms, jitter >="
        f" {limits.max_jitter_ms:g} ms, loss >= {limits.max_loss:.0%}); scheduler defaults"
        f" (hysteresis {scheduler.hysteresis:.0%}, hold-down {scheduler.hold_down_s:g} s)"
    )


SETUP_NOTE = (
    "Setup: client SGs are Figure 2's 4, or a third of a Zoo graph's nodes spread by hop count;\n"
    f"  services {', '.join(SERVICES)} with 2-4 instances each on distinct SGs; every client SG\n"
    "  probes every instance, and each SG's pod (/app/<i>) is its client (source) prefix.\n"
    "  Telemetry: delay = propagation along the routed path + 0.1 ms/hop + noise. To make the\n"
    f"  decision move pairs, routing's own choice is made to cross a threshold in"
    f" {ROUTING_CHOICE_BAD_SHARE:.0%} of the pairs\n"
    f"  (+{BAD_DELAY_MS[0]:g}..{BAD_DELAY_MS[1]:g} ms or {BAD_LOSS:.0%} loss), and so are"
    f" {OTHER_BAD_SHARE:.0%} of the other entries.\n"
    "  Rounds, each timed as decide(inputs, now) + diff(intents, installed):\n"
    "    cold   no previous choices, nothing installed\n"
    "    steady previous = the cold round's choices and intents, same telemetry (checked:\n"
    "           no record, empty diff)\n"
    f"    change the instance most pairs were moved to gets +{CHANGE_DELAY_MS:g} ms from every SG,"
    " after the hold-down\n"
    "  No link quality is given (links = {}), so QoS weights equal link costs.\n"
    "  Baseline: networkx single_source_dijkstra (weight=cost) from every client SG."
)


def table_head() -> str:
    return (
        f"    {'round':<38}{'reps':>4}  {'median':>11} {'p95':>11}  {'managed':>7} {'intents':>7}"
        f" {'+add':>5} {'-del':>5} {'changed':>7}   ours/baseline: median, min"
    )


def timing_cells(timing: Timing, p95_s: float) -> str:
    return f"{timing.reps:>4}  {seconds(timing.median_s)} {seconds(p95_s)}"


def round_row(label: str, result: RoundBench) -> str:
    counts = (
        f"{result.managed:>7} {result.intents:>7} {result.added:>5} {result.removed:>5}"
        f" {result.changed:>7}"
    )
    ratios = f"x{result.ratios['median']:6.2f}  x{result.ratios['min']:6.2f}"
    return f"    {label:<38}{timing_cells(result.timing, result.p95_s)}  {counts}   {ratios}"


def format_topology(result: TopologyBench) -> str:
    lines = [
        f"  {result.topology}: {result.nodes} nodes, {result.links} links; {result.gateways}"
        f" client SGs, {result.instances} instances of {result.services} services;"
        f" {result.pairs} pairs, {result.telemetry} telemetry entries",
        f"    crossing thresholds: routing's choice in {result.routing_choice_bad} of"
        f" {result.pairs} pairs, {result.other_bad} other entries",
        table_head(),
        f"    {f'baseline: nx Dijkstra from {result.gateways} SGs':<38}"
        f"{timing_cells(result.baseline, result.baseline_p95_s)}{'':40}(baseline)",
    ]
    for key, bench in result.rounds.items():
        label = ROUND_LABELS[key].format(instance=result.degraded_instance, delay=CHANGE_DELAY_MS)
        lines.append(round_row(label, bench))
    lines.append(
        f"    {'Topology.from_lsas + .instances':<38}"
        f"{timing_cells(result.from_lsas, result.from_lsas_p95_s)}"
        "   (a topology change; not in the rounds)"
    )
    return "\n".join(lines)


def format_summary(results: Sequence[TopologyBench]) -> str:
    """One row per topology: medians, ratios, and the growth from the first to the last."""
    lines = [
        "Summary: median per round (decide + diff), ours/baseline (median of per-round ratios)",
        f"  {'topology':<16}{'nodes':>6}{'links':>6}{'SGs':>5}{'pairs':>6}{'intents':>8}"
        f"  {'baseline':>11}  {'cold':^19}  {'steady':^19}  {'change':^19}  {'cold/pair':>11}",
    ]
    for r in results:
        cells = "  ".join(
            f"{seconds(r.rounds[k].timing.median_s)} x{r.rounds[k].ratios['median']:<6.1f}"
            for k in ROUNDS
        )
        lines.append(
            f"  {r.topology:<16}{r.nodes:>6}{r.links:>6}{r.gateways:>5}{r.pairs:>6}"
            f"{r.rounds['cold'].intents:>8}  {seconds(r.baseline.median_s)}  {cells}"
            f"  {seconds(r.rounds['cold'].timing.median_s / r.pairs)}"
        )
    if len(results) > 1:
        lines.append(growth(results[0], results[-1]))
    return "\n".join(lines)


def growth(small: TopologyBench, large: TopologyBench) -> str:
    def times(key: str) -> float:
        return large.rounds[key].timing.median_s / small.rounds[key].timing.median_s

    return (
        f"  {small.topology} -> {large.topology}: nodes x{large.nodes / small.nodes:.1f},"
        f" links x{large.links / small.links:.1f}, pairs x{large.pairs / small.pairs:.1f};"
        f" time: baseline x{large.baseline.median_s / small.baseline.median_s:.1f}, "
        + ", ".join(f"{key} x{times(key):.1f}" for key in ROUNDS)
    )


# ---------------------------------------------------------------------- shell


def run(config: BenchConfig, quick: bool, emit: Callable[[str], None]) -> dict:
    """Figure 2, then each Zoo network (smallest first), handing each block to ``emit``."""
    graphs = [load_zoo(path) for path in config.zoo_files]  # refused before any timing
    emit(header(config, quick))
    emit("\n" + SETUP_NOTE + "\n")
    results = [bench_figure2(config.reps, config.seed)]
    emit(format_topology(results[0]))
    for source, graph in zip(config.zoo_files, graphs, strict=True):
        name = graph.graph.get("name", Path(source).stem)
        results.append(bench_zoo(name, graph, config.reps, config.seed))
        emit(format_topology(results[-1]))
    emit("\n" + format_summary(results))
    return {"config": dataclasses.asdict(config), "topologies": results}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="Figure 2 and the smallest Zoo network, 3 rounds"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write results as JSON")
    parser.add_argument(
        "--topology",
        action="append",
        metavar="SOURCE",
        help="a network beside Figure 2, topohub:<key> or a GraphML file; repeat for more "
        f"(default: {', '.join(DEFAULT_ZOO)})",
    )
    parser.add_argument(
        "--zoo", type=Path, metavar="DIR", help="instead: every GraphML file in DIR"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.zoo is not None and args.topology:
        print("bench_scsc_decision: error: give --topology or --zoo, not both", file=sys.stderr)
        return 2
    if args.zoo is not None and (not args.zoo.is_dir() or not any(args.zoo.glob("*.graphml"))):
        print(
            f"bench_scsc_decision: error: no .graphml file in {args.zoo} (give one with --zoo DIR)",
            file=sys.stderr,
        )
        return 2
    try:
        if args.zoo is not None:
            sources = zoo_files(args.zoo)
        else:
            sources = by_size(args.topology or list(DEFAULT_ZOO))
        config = config_for(args.quick, sources, args.seed)
        results = run(config, args.quick, print_now)
    except (BenchmarkError, DmscError) as error:
        print(f"bench_scsc_decision: error: {error}", file=sys.stderr)
        return 1
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(to_json(results), indent=2) + "\n")
        except OSError as error:
            print(f"bench_scsc_decision: error: cannot write {args.json}: {error}", file=sys.stderr)
            return 1
        print(f"\nresults written to {args.json}")
    return 0


def print_now(text: str) -> None:
    print(text, flush=True)


if __name__ == "__main__":
    sys.exit(main())
