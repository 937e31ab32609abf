"""An independent reference for simulated networks: what every FIB should hold, by networkx."""

from __future__ import annotations

import networkx as nx

from dmsc.routing.router import LinkStateRouter
from dmsc.sim import SimNetwork

#: label -> (neighbors used as next hops, delivered locally)
Routes = dict[str, tuple[frozenset[str], bool]]


def first_hops(graph: nx.DiGraph, lengths: dict, source: str, targets: set[str]) -> frozenset[str]:
    """Neighbors of ``source`` on some shortest path to the nearest of ``targets``."""
    best = min(lengths[source].get(t, float("inf")) for t in targets)
    hops = set()
    for neighbor in graph.successors(source):
        cost = graph[source][neighbor]["weight"]
        if any(cost + lengths[neighbor].get(t, float("inf")) == best for t in targets):
            hops.add(neighbor)
    return frozenset(hops)


def expected_routes(network: SimNetwork, announced: dict[str, set[str]]) -> dict[str, Routes]:
    """Per live node of a simulated network (see :func:`expected_routes_on`)."""
    return expected_routes_on(network.graph(), announced)


def expected_routes_on(graph: nx.DiGraph, announced: dict[str, set[str]]) -> dict[str, Routes]:
    """Per node: a route to every reachable node, and to each name announced by
    ``announced[name]`` origins, toward the nearest origin(s). ``graph`` has directed
    ``weight`` costs."""
    lengths = dict(nx.all_pairs_dijkstra_path_length(graph))
    expected: dict[str, Routes] = {}
    for node in graph.nodes:
        routes: Routes = {}
        for target in lengths[node]:
            local = target == node
            hops = frozenset() if local else first_hops(graph, lengths, node, {target})
            routes[target] = (hops, local)
        for name, origins in announced.items():
            reachable = {o for o in origins if o in lengths[node]}
            if not reachable:
                continue
            local = node in reachable
            hops = frozenset() if local else first_hops(graph, lengths, node, reachable)
            routes[name] = (hops, local)
        expected[node] = routes
    return expected


def directed(graph: nx.Graph, cost: str = "cost") -> nx.DiGraph:
    """An undirected topology with per-link ``cost`` as the directed graph SPF sees."""
    out = nx.DiGraph()
    out.add_nodes_from(graph.nodes)
    for u, v, data in graph.edges(data=True):
        out.add_edge(u, v, weight=data.get(cost, 10))
        out.add_edge(v, u, weight=data.get(cost, 10))
    return out


def routes_from_fib_rows(rows: list[dict]) -> Routes:
    """The same shape from a node's admin-socket ``fib`` answer."""
    return {
        row["label"]: (frozenset(h["node"] for h in row["next_hops"]), row["local"]) for row in rows
    }


def actual_routes(router: LinkStateRouter) -> Routes:
    return {
        entry.label: (frozenset(n for _, n in entry.next_hops), entry.local)
        for _, entry in router.fib.items()
    }


def fibs_match(network: SimNetwork, announced: dict[str, set[str]]) -> bool:
    expected = expected_routes(network, announced)
    return all(actual_routes(network.routers[n]) == routes for n, routes in expected.items())


def mismatches(network: SimNetwork, announced: dict[str, set[str]]) -> dict[str, dict]:
    """For a readable assertion message: the differing routes per node."""
    out = {}
    for node, routes in expected_routes(network, announced).items():
        actual = actual_routes(network.routers[node])
        diff = {
            k: (actual.get(k), routes.get(k))
            for k in routes.keys() | actual.keys()
            if actual.get(k) != routes.get(k)
        }
        if diff:
            out[node] = diff
    return out
