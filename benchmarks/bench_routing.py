"""Routing benchmarks: SPF + FIB build time, LSA codec rate, simulated convergence.

Each figure is printed next to a baseline measured in the same run (the machine is noisy, so
ratios travel better than absolute times). See benchmarks/README.md for what each figure means.

    PYTHONPATH=. python -m benchmarks.bench_routing [--quick] [--json FILE] [--topology SOURCE]

The measuring functions (``bench_spf``, ``bench_codec``, ``bench_convergence``) return frozen
dataclasses and print nothing; ``format_*`` turn them into text; ``main`` is the thin shell.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.internal import api_implementation

from dmsc.errors import DmscError
from dmsc.lpm import PrefixTable
from dmsc.proto import dmsc_pb2
from dmsc.proto.codec import PROTOCOL_VERSION, decode_packet, encode_packet
from dmsc.routing.config import LinkStateTimers
from dmsc.routing.rib import AttestationCache, FibEntry, RibBuild, build_fib, build_rib
from dmsc.routing.router import MAX_PACKET_BYTES, LinkStateRouter
from dmsc.routing.spf import NextHop, SpfResult, shortest_paths, two_way_graph
from dmsc.sim import DEFAULT_START, SimNetwork, network_from_graph
from dmsc.spa.claims import AttestationVerifier, issue_attestation
from dmsc.spa.keys import demo_private_key
from dmsc.topologies import figure2
from dmsc.topologies.zoo import is_topohub, load_network

#: the network of section 3: a TopoHub key (pinned in setup.py) or a GraphML file
DEFAULT_TOPOLOGY = "topohub:topozoo/Geant2012"

SPA_KEY_LABEL = "bench-spa"  # a demo key: anyone can rebuild it, which is all a benchmark needs
ATTESTATION_VALIDITY_S = 86_400.0
LSA_LIFETIME_MS = 1_800_000
SERVICES = 20  # service names /svc0 .. /svc19 that announcing nodes draw from
ANNOUNCING_SHARE = 0.1  # share of nodes that announce service prefixes
CONVERGENCE_TIMEOUT_S = 120.0  # virtual seconds allowed for any one convergence
POLL_STEP_S = 0.05  # virtual seconds between convergence checks


class BenchmarkError(Exception):
    """A benchmark could not produce a trustworthy figure (wrong routes, no convergence)."""


@dataclass(frozen=True)
class BenchConfig:
    sizes: tuple[int, ...]
    spf_reps: int
    cold_reps: int
    codec_lsas: int
    codec_reps: int
    failures: int
    seed: int
    topology: str  # topohub:<key> or a GraphML path


def config_for(quick: bool, topology: str, seed: int) -> BenchConfig:
    if quick:
        return BenchConfig((1_000,), 5, 1, 500, 5, 3, seed, topology)
    return BenchConfig((1_000, 10_000), 15, 3, 2_000, 15, 10, seed, topology)


# ---------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of ``reps`` timed calls (after one untimed warm-up call)."""

    reps: int
    min_s: float
    median_s: float
    max_s: float
    samples_s: tuple[float, ...]

    @classmethod
    def of(cls, samples: Sequence[float]) -> Timing:
        median = statistics.median(samples)
        return cls(len(samples), min(samples), median, max(samples), tuple(samples))


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """As in timeit: a collection triggered by earlier garbage must not land in one sample."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def measure(actions: Mapping[str, Callable[[], object]], reps: int) -> dict[str, Timing]:
    """Time each action ``reps`` times with perf_counter, in rounds (one call of each action
    per round), so a baseline and what is compared with it see the same load on a noisy
    machine. One untimed warm-up call of each first."""
    for action in actions.values():
        action()
    samples: dict[str, list[float]] = {name: [] for name in actions}
    with gc_paused():
        for _ in range(reps):
            for name, action in actions.items():
                start = time.perf_counter()
                action()
                samples[name].append(time.perf_counter() - start)
    return {name: Timing.of(values) for name, values in samples.items()}


def ratio(ours: Timing, baseline: Timing) -> dict[str, float]:
    """ours / baseline: the median of the per-round ratios when both ran in the same rounds
    (else the ratio of medians), and the ratio of the minimums."""
    if ours.reps == baseline.reps:
        paired = [o / b for o, b in zip(ours.samples_s, baseline.samples_s, strict=True)]
        median = statistics.median(paired)
    else:
        median = ours.median_s / baseline.median_s
    return {"median": median, "min": ours.min_s / baseline.min_s}


# ---------------------------------------------------------------------- inputs


def spa_key() -> Ed25519PrivateKey:
    return demo_private_key(SPA_KEY_LABEL)


def verifier_for(key: Ed25519PrivateKey) -> AttestationVerifier:
    return AttestationVerifier.from_public_keys([key.public_key()])


def random_topology(nodes: int, seed: int) -> nx.Graph:
    """A connected Watts-Strogatz small world (each node joined to its 4 nearest on a ring,
    10% rewired), nodes ``n0``.., integer costs 1..20 drawn from a seeded RNG."""
    raw = nx.connected_watts_strogatz_graph(nodes, 4, 0.1, seed=seed)
    rng = random.Random(seed)
    graph = nx.Graph()
    for u, v in sorted(raw.edges):
        graph.add_edge(f"n{u}", f"n{v}", cost=rng.randint(1, 20))
    return graph


def service_plan(nodes: Iterable[str], rng: random.Random) -> dict[str, list[str]]:
    """Names per announcing node: 10% of nodes announce an instance ``/svcJ/I``; half of them
    also announce the service (anycast) prefix ``/svcJ``, shared with others offering J."""
    ordered = sorted(nodes)
    chosen = sorted(rng.sample(ordered, max(1, round(len(ordered) * ANNOUNCING_SHARE))))
    plan: dict[str, list[str]] = {}
    for index, node in enumerate(chosen, start=1):
        service = f"/svc{rng.randrange(SERVICES)}"
        plan[node] = [f"{service}/{index}"] + ([service] if rng.random() < 0.5 else [])
    return plan


def attest(key: Ed25519PrivateKey, name: str, node: str, now: float) -> dmsc_pb2.Attestation:
    return issue_attestation(key, name, f"pod-{node}", node, now, ATTESTATION_VALIDITY_S)


def announced_prefixes(
    plan: Mapping[str, list[str]], key: Ed25519PrivateKey, now: float
) -> dict[str, list[dmsc_pb2.AnnouncedPrefix]]:
    return {
        node: [
            dmsc_pb2.AnnouncedPrefix(name=n, attestation=attest(key, n, node, now)) for n in names
        ]
        for node, names in plan.items()
    }


def make_lsa(
    node: str, costs: Mapping[str, int], prefixes: Sequence[dmsc_pb2.AnnouncedPrefix]
) -> dmsc_pb2.LinkStateAdvertisement:
    return dmsc_pb2.LinkStateAdvertisement(
        originator=node,
        sequence=1,
        lifetime_ms=LSA_LIFETIME_MS,
        adjacencies=[dmsc_pb2.Adjacency(neighbor=v, cost=c) for v, c in sorted(costs.items())],
        prefixes=list(prefixes),
    )


def graph_lsas(
    graph: nx.Graph, prefixes: Mapping[str, list[dmsc_pb2.AnnouncedPrefix]]
) -> list[dmsc_pb2.LinkStateAdvertisement]:
    """One LSA per node, as every node's LSDB holds them once flooding is done."""
    return [
        make_lsa(node, {v: graph[node][v]["cost"] for v in graph[node]}, prefixes.get(node, []))
        for node in sorted(graph)
    ]


# ---------------------------------------------------------------------- 1. SPF + FIB


def local_hops_of(graph: nx.Graph, source: str) -> dict[str, frozenset[NextHop]]:
    return {v: frozenset({(f"eth{i}", v)}) for i, v in enumerate(sorted(graph[source]))}


def spf_from_lsas(
    lsas: Sequence[dmsc_pb2.LinkStateAdvertisement],
    source: str,
    local_hops: Mapping[str, frozenset[NextHop]],
) -> SpfResult:
    """What LinkStateRouter._run_spf does up to SPF: LSAs -> two-way graph -> Dijkstra."""
    graph = two_way_graph(
        {lsa.originator: [(a.neighbor, a.cost) for a in lsa.adjacencies] for lsa in lsas}
    )
    graph.setdefault(source, {})
    return shortest_paths(graph, source, local_hops)


def route_computation(
    lsas: Sequence[dmsc_pb2.LinkStateAdvertisement],
    source: str,
    local_hops: Mapping[str, frozenset[NextHop]],
    cache: AttestationCache,
    now: float,
) -> tuple[RibBuild, PrefixTable[FibEntry]]:
    """The whole route computation of LinkStateRouter._run_spf: SPF, RIB, FIB."""
    spf = spf_from_lsas(lsas, source, local_hops)
    announcements = [(lsa.originator, p) for lsa in lsas for p in lsa.prefixes]
    cache.forget_older_than(now)
    build = build_rib(source, spf, announcements, cache, now)
    return build, build_fib(build.routes)


@dataclass(frozen=True)
class SpfBench:
    nodes: int
    edges: int
    announcing_nodes: int
    prefixes: int
    rib_routes: int
    ecmp_destinations: int  # destinations reached through more than one first hop
    networkx: Timing  # baseline: nx.single_source_dijkstra
    dijkstra_only: Timing  # shortest_paths on a prebuilt graph
    spf: Timing  # LSAs -> two_way_graph -> shortest_paths
    route_warm: Timing  # SPF + build_rib + build_fib, attestation verdicts cached
    route_cold: Timing  # the same with an empty cache: every Ed25519 signature verified
    ratios: dict[str, dict[str, float]]  # ours / networkx, by step


def check_spf(spf: SpfResult, graph: nx.Graph, source: str) -> None:
    expected = nx.single_source_dijkstra_path_length(graph, source, weight="cost")
    if spf.distance != expected:
        wrong = sorted(n for n in expected if spf.distance.get(n) != expected[n])[:5]
        raise BenchmarkError(f"our SPF from {source} disagrees with networkx at {wrong}")


def check_rib(build: RibBuild, graph: nx.Graph, plan: Mapping[str, list[str]]) -> None:
    if build.rejections:
        raise BenchmarkError(f"attested prefixes rejected: {build.rejections[:3]}")
    names = {name for names in plan.values() for name in names}
    if len(build.routes) != graph.number_of_nodes() + len(names):
        raise BenchmarkError(
            f"RIB has {len(build.routes)} routes; expected {graph.number_of_nodes()} nodes "
            f"+ {len(names)} names"
        )


@dataclass(frozen=True)
class SpfInputs:
    """A random graph seen from ``source``: the LSDB every node holds once flooding is done."""

    graph: nx.Graph
    plan: dict[str, list[str]]
    lsas: list[dmsc_pb2.LinkStateAdvertisement]
    source: str
    hops: dict[str, frozenset[NextHop]]
    verifier: AttestationVerifier

    def route(self, cache: AttestationCache) -> tuple[RibBuild, PrefixTable[FibEntry]]:
        return route_computation(self.lsas, self.source, self.hops, cache, DEFAULT_START)


def spf_inputs(nodes: int, seed: int, source: str = "n0") -> SpfInputs:
    graph, key = random_topology(nodes, seed), spa_key()
    plan = service_plan(graph.nodes, random.Random(seed))
    lsas = graph_lsas(graph, announced_prefixes(plan, key, DEFAULT_START))
    return SpfInputs(graph, plan, lsas, source, local_hops_of(graph, source), verifier_for(key))


def checked_spf(inputs: SpfInputs) -> SpfResult:
    """Our SPF and RIB on ``inputs``, after checking them against networkx and the plan."""
    spf = spf_from_lsas(inputs.lsas, inputs.source, inputs.hops)
    check_spf(spf, inputs.graph, inputs.source)
    check_rib(inputs.route(AttestationCache(inputs.verifier))[0], inputs.graph, inputs.plan)
    return spf


def bench_spf(nodes: int, reps: int, cold_reps: int, seed: int) -> SpfBench:
    """Route computation of node ``n0`` on a random graph, against networkx from ``n0``."""
    inputs = spf_inputs(nodes, seed)
    graph, lsas, source, hops = inputs.graph, inputs.lsas, inputs.source, inputs.hops
    spf = checked_spf(inputs)
    prebuilt = {u: {v: c["cost"] for v, c in graph[u].items()} for u in graph}
    warm = AttestationCache(inputs.verifier)
    steps = {
        "networkx": lambda: nx.single_source_dijkstra(graph, source, weight="cost"),
        "dijkstra_only": lambda: shortest_paths(prebuilt, source, hops),
        "spf": lambda: spf_from_lsas(lsas, source, hops),
        "route_warm": lambda: inputs.route(warm),  # filled by the warm-up call
    }
    cold = {"route_cold": lambda: inputs.route(AttestationCache(inputs.verifier))}
    timings = measure(steps, reps) | measure(cold, cold_reps)
    names = {name for names in inputs.plan.values() for name in names}
    return SpfBench(
        nodes=nodes,
        edges=graph.number_of_edges(),
        announcing_nodes=len(inputs.plan),
        prefixes=sum(len(names) for names in inputs.plan.values()),
        rib_routes=nodes + len(names),
        ecmp_destinations=sum(1 for h in spf.first_hops.values() if len(h) > 1),
        **timings,
        ratios={k: ratio(t, timings["networkx"]) for k, t in timings.items() if k != "networkx"},
    )


# ---------------------------------------------------------------------- 2. codec


def realistic_lsas(count: int, seed: int) -> list[dmsc_pb2.LinkStateAdvertisement]:
    """LSAs of an SG: 4 adjacencies, 2 attested prefixes (an instance and its service)."""
    rng, key = random.Random(seed), spa_key()
    lsas = []
    for index in range(count):
        node = f"sg{index}"
        others = rng.sample(range(count + 4), 5)
        neighbors = [f"sr{o}" for o in others if o != index][:4]
        service = f"/svc{rng.randrange(SERVICES)}"
        names = [f"{service}/{index % 0x7FFF + 1}", service]
        prefixes = announced_prefixes({node: names}, key, DEFAULT_START)[node]
        lsas.append(make_lsa(node, {n: rng.randint(1, 20) for n in neighbors}, prefixes))
    return lsas


def pack_updates(
    lsas: Sequence[dmsc_pb2.LinkStateAdvertisement], sender: str
) -> list[dmsc_pb2.LinkStatePacket]:
    """LinkStatePacket updates holding as many LSAs as fit in MAX_PACKET_BYTES, as routers
    pack their floods."""
    packets, chunk, size = [], [], 0
    for lsa in lsas:
        lsa_size = lsa.ByteSize() + 4
        if chunk and size + lsa_size > MAX_PACKET_BYTES:
            packets.append(chunk)
            chunk, size = [], 0
        chunk.append(lsa)
        size += lsa_size
    packets.append(chunk)
    return [
        dmsc_pb2.LinkStatePacket(
            version=PROTOCOL_VERSION, sender=sender, update=dmsc_pb2.LinkStateUpdate(lsas=c)
        )
        for c in packets
        if c
    ]


def parse_only(data: bytes) -> dmsc_pb2.LinkStatePacket:
    packet = dmsc_pb2.LinkStatePacket()
    packet.ParseFromString(data)
    return packet


@dataclass(frozen=True)
class CodecBench:
    protobuf_backend: str
    lsas: int
    packets: int
    mean_lsa_bytes: float
    mean_packet_bytes: float
    encode: Timing  # encode_packet over every packet
    decode: Timing  # decode_packet (parse + validation) over every packet
    parse_baseline: Timing  # plain LinkStatePacket.ParseFromString over the same bytes
    encode_lsas_per_s: float  # from the median
    decode_lsas_per_s: float
    parse_lsas_per_s: float
    decode_vs_parse: dict[str, float]


def bench_codec(lsas: int, reps: int, seed: int) -> CodecBench:
    ads = realistic_lsas(lsas, seed)
    packets = pack_updates(ads, sender="sr-bench")
    datas = [encode_packet(p) for p in packets]
    if [decode_packet(d) for d in datas] != packets:
        raise BenchmarkError("decode_packet(encode_packet(p)) != p for some update packet")
    timings = measure(
        {
            "encode": lambda: [encode_packet(p) for p in packets],
            "decode": lambda: [decode_packet(d) for d in datas],
            "parse": lambda: [parse_only(d) for d in datas],
        },
        reps,
    )
    encode, decode, parse = timings["encode"], timings["decode"], timings["parse"]
    return CodecBench(
        protobuf_backend=api_implementation.Type(),
        lsas=lsas,
        packets=len(packets),
        mean_lsa_bytes=statistics.fmean(a.ByteSize() for a in ads),
        mean_packet_bytes=statistics.fmean(len(d) for d in datas),
        encode=encode,
        decode=decode,
        parse_baseline=parse,
        encode_lsas_per_s=lsas / encode.median_s,
        decode_lsas_per_s=lsas / decode.median_s,
        parse_lsas_per_s=lsas / parse.median_s,
        decode_vs_parse=ratio(decode, parse),
    )


# ---------------------------------------------------------------------- 3. convergence

#: A route as compared with the reference: (distance, next-hop neighbor ids, delivered here).
RouteView = tuple[int, frozenset[str], bool]


def _toward(graph: nx.DiGraph, lengths: dict, source: str, targets: set[str]) -> RouteView:
    """The route from ``source`` to the nearest of ``targets`` (all equal-cost first hops)."""
    best = min(lengths[source][t] for t in targets)
    nearest = {t for t in targets if lengths[source][t] == best}
    hops = frozenset(
        n
        for n in graph.successors(source)
        for t in nearest - {source}
        if graph[source][n]["weight"] + lengths[n].get(t, math.inf) == best
    )
    return best, hops, source in nearest


def reference_routes(
    graph: nx.DiGraph, announced: Mapping[str, set[str]]
) -> dict[str, dict[str, RouteView]]:
    """What a fresh SPF on the working topology gives each node (by networkx): a route to
    every reachable node, and to every announced name via its nearest origin(s)."""
    lengths = dict(nx.all_pairs_dijkstra_path_length(graph))
    expected: dict[str, dict[str, RouteView]] = {}
    for source in graph:
        routes = {t: _toward(graph, lengths, source, {t}) for t in lengths[source]}
        for name, origins in announced.items():
            reachable = {o for o in origins if o in lengths[source]}
            if reachable:
                routes[name] = _toward(graph, lengths, source, reachable)
        expected[source] = routes
    return expected


def actual_routes(router: LinkStateRouter) -> dict[str, RouteView]:
    return {
        e.label: (e.distance, frozenset(n for _, n in e.next_hops), e.local)
        for e in router.routes.values()
    }


def route_mismatches(network: SimNetwork, announced: Mapping[str, set[str]]) -> dict[str, list]:
    """Per router, the labels whose route differs from the reference (empty when all agree)."""
    wrong = {}
    for node, expected in reference_routes(network.graph(), announced).items():
        actual = actual_routes(network.routers[node])
        labels = sorted(
            k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k)
        )
        if labels:
            wrong[node] = labels
    return wrong


def total_spf_runs(network: SimNetwork) -> int:
    return sum(r.counters["spf_runs"] for r in network.live_routers().values())


def last_fib_change(network: SimNetwork) -> float:
    return max(network.fib_changed_at.values())


def wait_settled(network: SimNetwork, announced: Mapping[str, set[str]], timeout: float) -> float:
    """Run until no router has run SPF or changed its FIB for 2 x spf_max_hold virtual seconds
    (so every SPF throttle is back to its initial delay), then require every router's routes
    to equal the reference. Returns the virtual time of the last FIB change anywhere."""
    quiet = 2 * network.timers.spf_max_hold
    deadline = network.now + timeout
    runs, active_at = total_spf_runs(network), network.now
    while network.now < deadline:
        network.run_for(POLL_STEP_S)
        if total_spf_runs(network) != runs:
            runs, active_at = total_spf_runs(network), network.now
        if network.now - max(active_at, last_fib_change(network)) >= quiet:
            wrong = route_mismatches(network, announced)
            if wrong:
                sample = dict(list(wrong.items())[:3])
                raise BenchmarkError(f"routes settled but differ from a fresh SPF: {sample}")
            return last_fib_change(network)
    raise BenchmarkError(f"not converged within {timeout} virtual seconds (t={network.now:.3f})")


def announce(network: SimNetwork, plan: Mapping[str, list[str]]) -> dict[str, set[str]]:
    """Give each planned node its attested names. Called before the network first runs: every
    router's first origination is already due at start, so it carries these prefixes."""
    key, origins = spa_key(), {}
    for node, names in plan.items():
        for name in names:
            network.routers[node].announce_prefix(
                name, attest(key, name, node, network.now), network.now
            )
            origins.setdefault(name, set()).add(node)
    return origins


def failure_candidates(graph: nx.Graph, count: int, rng: random.Random) -> list[tuple[str, str]]:
    """Up to ``count`` links, drawn with ``rng``, whose removal leaves the graph connected."""
    bridges = {frozenset(edge) for edge in nx.bridges(graph)}
    candidates = sorted(tuple(sorted(e)) for e in graph.edges if frozenset(e) not in bridges)
    if not candidates:
        raise BenchmarkError("every link is a bridge: no failure keeps the graph connected")
    return rng.sample(candidates, min(count, len(candidates)))


@dataclass(frozen=True)
class LinkTrial:
    link: tuple[str, str]
    down_s: float  # virtual seconds from the link failure to the last FIB change anywhere
    up_s: float  # the same after the link came back up
    routers_changed: int  # routers whose FIB changed after the failure


@dataclass(frozen=True)
class ConvergenceBench:
    topology: str
    nodes: int
    links: int
    prefixes: int
    initial_s: float  # virtual seconds from a cold start to the last FIB change
    trials: tuple[LinkTrial, ...]
    down_median_s: float
    down_max_s: float
    up_median_s: float
    up_max_s: float
    virtual_s: float  # virtual time the whole run covered
    wall_s: float  # wall-clock time of the whole simulation
    converged: bool


def link_trial(
    network: SimNetwork, link: tuple[str, str], announced: Mapping[str, set[str]]
) -> LinkTrial:
    a, b = link
    failed_at = network.now
    network.set_link_state(a, b, False)
    down_last = wait_settled(network, announced, CONVERGENCE_TIMEOUT_S)
    changed = sum(1 for t in network.fib_changed_at.values() if t > failed_at)
    if changed == 0:
        raise BenchmarkError(f"no FIB changed after link {a}-{b} failed")
    restored_at = network.now
    network.set_link_state(a, b, True)
    up_last = wait_settled(network, announced, CONVERGENCE_TIMEOUT_S)
    return LinkTrial(link, down_last - failed_at, up_last - restored_at, changed)


def bench_convergence(
    graph: nx.Graph,
    name: str,
    plan: Mapping[str, list[str]],
    failures: int,
    seed: int,
    secure: bool = True,
) -> ConvergenceBench:
    """Cold start, then fail and restore ``failures`` links one at a time, default timers;
    ``secure`` False runs the protocol open (no signatures, no HMAC): a baseline only."""
    wall_start = time.perf_counter()
    network = network_from_graph(
        graph, verifier_for(spa_key()), LinkStateTimers(), seed=seed, secure=secure
    )
    start = network.now
    announced = announce(network, plan)
    initial = wait_settled(network, announced, CONVERGENCE_TIMEOUT_S) - start
    links = failure_candidates(graph, failures, random.Random(seed))
    trials = tuple(link_trial(network, link, announced) for link in links)
    down = [t.down_s for t in trials]
    up = [t.up_s for t in trials]
    return ConvergenceBench(
        topology=name,
        nodes=graph.number_of_nodes(),
        links=graph.number_of_edges(),
        prefixes=sum(len(names) for names in plan.values()),
        initial_s=initial,
        trials=trials,
        down_median_s=statistics.median(down),
        down_max_s=max(down),
        up_median_s=statistics.median(up),
        up_max_s=max(up),
        virtual_s=network.now - start,
        wall_s=time.perf_counter() - wall_start,
        converged=True,
    )


def figure2_graph() -> nx.Graph:
    """The draft's Figure 2 as the project reads it (dmsc.topologies.figure2): 4 SGs, 3 SRs,
    cost 10 and the simulator's default 1 ms delay on every link (the figure gives neither)."""
    return figure2.router_graph()


def figure2_plan() -> dict[str, list[str]]:
    """Each SG announces one instance of service /B and the service (anycast) prefix /B."""
    return {f"sg{i}": [f"/B/{i}", "/B"] for i in range(1, 5)}


def load_topology(source: str) -> nx.Graph:
    """A TopoHub network or GraphML file fit for the failure runs (ConfigError from the import,
    e.g. not connected, or BenchmarkError), naming the source."""
    graph = load_network(source)
    if sum(1 for _ in nx.bridges(graph)) == graph.number_of_edges():
        raise BenchmarkError(f"{source}: every link is a bridge; no failure keeps it connected")
    return graph


# ---------------------------------------------------------------------- report


def seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if value >= scale:
            return f"{value / scale:8.2f} {unit:<2}"
    return f"{value * 1e9:8.0f} ns"


def timing_row(label: str, timing: Timing, tail: str) -> str:
    spread = f"{seconds(timing.min_s)} {seconds(timing.median_s)} {seconds(timing.max_s)}"
    return f"    {label:<46}{timing.reps:>4}  {spread}   {tail}"


def versus(ratios: dict[str, float] | None) -> str:
    return f"x{ratios['median']:6.2f}  x{ratios['min']:6.2f}" if ratios else "(baseline)"


SPF_ROWS = (
    ("networkx", "networkx single_source_dijkstra"),
    ("dijkstra_only", "shortest_paths only (prebuilt graph)"),
    ("spf", "SPF: LSAs -> two_way_graph -> shortest_paths"),
    ("route_warm", "SPF + build_rib + build_fib, warm cache"),
    ("route_cold", "SPF + build_rib + build_fib, cold cache"),
)


def table_head(first: str, last: str) -> str:
    return f"    {first:<46}{'reps':>4}  {'min':>11} {'median':>11} {'max':>11}   {last}"


def format_spf(result: SpfBench) -> str:
    lines = [
        f"  {result.nodes:,} nodes, {result.edges:,} links; {result.prefixes:,} attested prefixes"
        f" on {result.announcing_nodes:,} nodes; RIB of n0: {result.rib_routes:,} routes,",
        f"  {result.ecmp_destinations:,} destinations with more than one equal-cost first hop",
        table_head("step", "ours/networkx: median, min"),
    ]
    for key, label in SPF_ROWS:
        lines.append(timing_row(label, getattr(result, key), versus(result.ratios.get(key))))
    return "\n".join(lines)


def format_codec(result: CodecBench) -> str:
    rates = (
        ("encode_packet", result.encode, result.encode_lsas_per_s),
        ("ParseFromString only (baseline)", result.parse_baseline, result.parse_lsas_per_s),
        ("decode_packet (parse + validation)", result.decode, result.decode_lsas_per_s),
    )
    lines = [
        f"  {result.lsas:,} LSAs of {result.mean_lsa_bytes:.0f} B (4 adjacencies, 2 attested"
        f" prefixes) in {result.packets:,} updates of {result.mean_packet_bytes:.0f} B on average",
        table_head("step, over the whole batch", "LSAs/s (from the median)"),
    ]
    lines += [timing_row(label, timing, f"{rate:12,.0f}") for label, timing, rate in rates]
    lines.append(
        f"    decode_packet / ParseFromString: x{result.decode_vs_parse['median']:.2f}"
        f" (median), x{result.decode_vs_parse['min']:.2f} (min)"
    )
    return "\n".join(lines)


def format_convergence(result: ConvergenceBench) -> str:
    lines = [
        f"  {result.topology}: {result.nodes} nodes, {result.links} links,"
        f" {result.prefixes} attested prefixes",
        f"    cold start: last FIB change after {result.initial_s * 1e3:.1f} ms",
        f"    {'link failed, then restored':<30}{'down: last FIB change':>24}"
        f"{'up: last FIB change':>22}{'FIBs changed':>15}",
    ]
    for trial in result.trials:
        link = f"{trial.link[0]} - {trial.link[1]}"
        lines.append(
            f"    {link:<30}{trial.down_s * 1e3:>21.1f} ms{trial.up_s * 1e3:>19.1f} ms"
            f"{trial.routers_changed:>15}"
        )
    lines += [
        f"    link down: median {result.down_median_s * 1e3:.1f} ms, max"
        f" {result.down_max_s * 1e3:.1f} ms;  link up: median {result.up_median_s * 1e3:.1f} ms,"
        f" max {result.up_max_s * 1e3:.1f} ms",
        "    after every change, every router's routes equalled a fresh SPF (networkx)",
        f"    wall-clock: {result.virtual_s:.1f} virtual s simulated in {result.wall_s:.2f} s",
    ]
    return "\n".join(lines)


def header(config: BenchConfig, quick: bool) -> str:
    return (
        f"DMSC routing benchmark ({'quick' if quick else 'full'}), seed {config.seed}\n"
        f"  Python {platform.python_version()} on {platform.machine()}, networkx {nx.__version__},"
        f" protobuf backend {api_implementation.Type()}\n"
        "  times: min / median / max over N repetitions (time.perf_counter, gc paused),"
        " after one warm-up;\n  ratios: ours / baseline measured in this run (> 1 = slower)"
    )


SPF_NOTE = (
    "1. SPF + FIB build, source n0 (Watts-Strogatz k=4 p=0.1, costs 1..20); our SPF keeps every\n"
    "   equal-cost first hop, networkx's single_source_dijkstra keeps one path per node. Warm\n"
    "   cache = a router in steady state (attestation verdicts cached); cold = every Ed25519\n"
    "   signature verified."
)
CODEC_NOTE = (
    "2. LSA encode / decode rate; LinkStateUpdate packets of at most MAX_PACKET_BYTES. The\n"
    "   decode ratio is the cost of decode_packet's validation over a plain protobuf parse."
)
CONVERGENCE_NOTE = (
    "3. Simulated convergence after single link failures (virtual time, default\n"
    "   LinkStateTimers); a run settles when no SPF ran and no FIB changed for 2 x spf_max_hold"
)


# ---------------------------------------------------------------------- shell


def run(config: BenchConfig, quick: bool, emit: Callable[[str], None]) -> dict:
    """Run every benchmark, handing each section's text to ``emit`` as it completes."""
    zoo, rng = load_topology(config.topology), random.Random(config.seed)  # refused up front
    emit(header(config, quick))
    results: dict = {"config": dataclasses.asdict(config)}
    emit("\n" + SPF_NOTE)
    results["spf"] = []
    for size in config.sizes:
        spf = bench_spf(size, config.spf_reps, config.cold_reps, config.seed)
        results["spf"].append(spf)
        emit(format_spf(spf))
    emit("\n" + CODEC_NOTE)
    results["codec"] = bench_codec(config.codec_lsas, config.codec_reps, config.seed)
    emit(format_codec(results["codec"]))
    emit("\n" + CONVERGENCE_NOTE)
    results["convergence"] = []
    runs = (
        (zoo.graph.get("name", Path(config.topology).stem), zoo, service_plan(zoo, rng)),
        ("draft Figure 2 (4 SGs, 3 SRs)", figure2_graph(), figure2_plan()),
    )
    for name, graph, plan in runs:
        result = bench_convergence(graph, name, plan, config.failures, config.seed)
        results["convergence"].append(result)
        emit(format_convergence(result))
    return results


def to_json(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few reps (~30 s)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write results as JSON")
    parser.add_argument(
        "--topology",
        default=DEFAULT_TOPOLOGY,
        metavar="SOURCE",
        help="the network of the convergence run: topohub:<key> or a GraphML file "
        f"({DEFAULT_TOPOLOGY})",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not is_topohub(args.topology) and not Path(args.topology).is_file():
        print(
            f"bench_routing: error: topology {args.topology} not found "
            "(give topohub:<key> or a GraphML file with --topology SOURCE)",
            file=sys.stderr,
        )
        return 2
    config = config_for(args.quick, args.topology, args.seed)
    try:
        results = run(config, args.quick, lambda text: print(text, flush=True))
    except (BenchmarkError, DmscError) as error:
        print(f"bench_routing: error: {error}", file=sys.stderr)
        return 1
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(to_json(results), indent=2) + "\n")
        except OSError as error:
            print(f"bench_routing: error: cannot write {args.json}: {error}", file=sys.stderr)
            return 1
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
