"""Topology builders: each returns a TopologySpec (routers, links, pods, SPAs) as data.

Unless said otherwise a builder places one pod behind each chosen SG, hosting instance ``i`` of
services A and B (``/A/i``, ``/B/i``), so ``/A`` and ``/B`` are anycast across the network, and
gives every SG with pods its own SPA.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import networkx as nx

from dmsc.errors import ConfigError
from dmsc.topologies import BUILT_IN, figure2
from dmsc.topologies.spec import LinkSpec, PodSpec, TopologySpec
from dmsc.topologies.zoo import ALIASES, TOPOHUB, load_graphml, load_topohub


def _pods_and_spas(gateways: list[str]) -> tuple[tuple[PodSpec, ...], dict[str, str]]:
    pods = tuple(
        PodSpec(f"pod{i}", sg, (f"/A/{i}", f"/B/{i}")) for i, sg in enumerate(gateways, start=1)
    )
    spas = {f"spa{i}": sg for i, sg in enumerate(gateways, start=1)}
    return pods, spas


def _check_count(what: str, value: int, least: int) -> None:
    if not isinstance(value, int) or value < least:
        raise ConfigError(f"{what} must be an integer of at least {least}, got {value!r}")


def linear(routers: int = 3) -> TopologySpec:
    """sg1 — sr1 — … — srN — sg2."""
    _check_count("linear: routers", routers, 1)
    chain = ["sg1", *(f"sr{i}" for i in range(1, routers + 1)), "sg2"]
    links = tuple(LinkSpec(a, b) for a, b in itertools.pairwise(chain))
    pods, spas = _pods_and_spas(["sg1", "sg2"])
    return TopologySpec(f"linear{routers}", ("sg1", "sg2"), tuple(chain[1:-1]), links, pods, spas)


def ring(routers: int = 6) -> TopologySpec:
    """A ring of SRs; sg1 on sr1 and sg2 on the SR opposite it: two equal ways round."""
    _check_count("ring: routers", routers, 3)
    names = [f"sr{i}" for i in range(1, routers + 1)]
    links = [LinkSpec(names[i], names[(i + 1) % routers]) for i in range(routers)]
    links += [LinkSpec("sg1", names[0]), LinkSpec("sg2", names[routers // 2])]
    pods, spas = _pods_and_spas(["sg1", "sg2"])
    return TopologySpec(f"ring{routers}", ("sg1", "sg2"), tuple(names), tuple(links), pods, spas)


def fat_tree(k: int = 4, pods: int = 2) -> TopologySpec:
    """A k-ary fat tree of routers (core, aggregation, edge); edge routers are SGs; ``pods``
    of them (spread across the tree) get a pod."""
    if not isinstance(k, int) or k < 2 or k % 2:
        raise ConfigError(f"fat-tree: k must be an even integer of at least 2, got {k!r}")
    half = k // 2
    cores = [f"c{i}" for i in range(1, half * half + 1)]
    aggs = [f"a{p}x{i}" for p in range(1, k + 1) for i in range(1, half + 1)]
    edges = [f"e{p}x{i}" for p in range(1, k + 1) for i in range(1, half + 1)]
    links = []
    for p in range(k):
        pod_aggs, pod_edges = aggs[p * half : (p + 1) * half], edges[p * half : (p + 1) * half]
        links += [LinkSpec(a, e) for a in pod_aggs for e in pod_edges]
        for i, agg in enumerate(pod_aggs):
            links += [LinkSpec(agg, cores[i * half + j]) for j in range(half)]
    _check_count("fat-tree: pods", pods, 1)
    chosen = [edges[round(i * (len(edges) - 1) / max(1, pods - 1))] for i in range(pods)]
    pod_specs, spas = _pods_and_spas(list(dict.fromkeys(chosen)))
    return TopologySpec(
        f"fattree{k}", tuple(edges), tuple(cores + aggs), tuple(links), pod_specs, spas
    )


def _imported(graph: nx.Graph, name: str, gateways: int) -> TopologySpec:
    """An imported router graph: its nodes are routers; the ``gateways`` least-connected ones
    (then by name) are SGs with a pod each."""
    _check_count(f"{name}: gateways", gateways, 1)
    ranked = sorted(graph.nodes, key=lambda n: (graph.degree(n), n))
    chosen = ranked[:gateways]
    links = tuple(LinkSpec(u, v, d["cost"], d["delay_s"]) for u, v, d in graph.edges(data=True))
    pods, spas = _pods_and_spas(chosen)
    routers = tuple(n for n in graph.nodes if n not in chosen)
    return TopologySpec(name, tuple(chosen), routers, links, pods, spas)


def graphml(path: str | Path, gateways: int = 2) -> TopologySpec:
    """A GraphML network (Topology Zoo style): its nodes are routers; the ``gateways``
    least-connected ones (then by name) are SGs with a pod each. Link costs and delays come
    from geography."""
    return _imported(load_graphml(path), Path(path).stem.lower(), gateways)


def topohub(key: str, gateways: int = 2) -> TopologySpec:
    """A TopoHub network (``topozoo/Geant2012``, with or without ``topohub:``), as
    :func:`graphml` places SGs and pods on it. Named after the key's last part, lowercased."""
    graph = load_topohub(key)
    return _imported(graph, key.rsplit("/", 1)[-1].lower(), gateways)


BUILDERS: dict[str, Callable[..., TopologySpec]] = {
    "figure2": figure2.spec,
    "linear": linear,
    "ring": ring,
    "fattree": fat_tree,
}
assert tuple(BUILDERS) == BUILT_IN


def build_topology(name: str, **parameters) -> TopologySpec:
    """A built-in topology by name, a TopoHub network (``topohub:topozoo/Geant2012``, or an
    alias such as ``abilene``), or a GraphML file by path (``*.graphml``)."""
    name = ALIASES.get(name, name)
    if name.startswith(TOPOHUB):
        return topohub(name, **parameters)
    if name.endswith(".graphml"):
        return graphml(name, **parameters)
    builder = BUILDERS.get(name)
    if builder is None:
        raise ConfigError(
            f"unknown topology {name!r}: use one of {sorted(BUILDERS)}, {', '.join(ALIASES)}, "
            f"{TOPOHUB}<key> (e.g. {TOPOHUB}topozoo/Geant2012) or a .graphml file"
        )
    try:
        return builder(**parameters)
    except TypeError as error:
        raise ConfigError(f"topology {name}: {error}") from None
