"""Shortest-path first: Dijkstra over the LSDB graph, keeping every equal-cost first hop.

Pure functions over plain data, so tests compare them with networkx on the same graph and the
benchmark times them on their own.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: A next hop out of the computing node: (local interface, neighbor node id).
NextHop = tuple[str, str]
#: node -> {neighbor: cost}, directed.
Graph = Mapping[str, Mapping[str, int]]


def two_way_graph(advertised: Mapping[str, Iterable[tuple[str, int]]]) -> dict[str, dict[str, int]]:
    """The graph SPF may use: an edge u->v only if v's LSA also lists u (RFC 2328 §16.1 (2b)).

    ``advertised`` maps each originator to its (neighbor, cost) pairs. A node that died keeps
    its stale LSA until it expires, but its neighbors drop it, so it becomes unreachable at once.
    """
    listed: dict[str, dict[str, int]] = {}
    for node, adjacencies in advertised.items():
        costs = listed.setdefault(node, {})
        for neighbor, cost in adjacencies:
            costs[neighbor] = min(cost, costs.get(neighbor, cost))
    return {
        node: {v: c for v, c in costs.items() if node in listed.get(v, ())}
        for node, costs in listed.items()
    }


@dataclass(frozen=True)
class SpfResult:
    distance: dict[str, int]
    first_hops: dict[str, frozenset[NextHop]]


def shortest_paths(
    graph: Graph, source: str, local_hops: Mapping[str, frozenset[NextHop]]
) -> SpfResult:
    """Dijkstra from ``source`` with equal-cost multipath.

    ``local_hops`` gives, for each direct neighbor, the local (interface, neighbor) pairs that
    reach it at the advertised cost (parallel links); a neighbor missing there is not used as
    a first hop.
    """
    distance = {source: 0}
    first_hops: dict[str, frozenset[NextHop]] = {source: frozenset()}
    done: set[str] = set()
    heap = [(0, source)]
    while heap:
        dist_u, u = heapq.heappop(heap)
        if u in done:
            continue
        done.add(u)
        hops_u = first_hops[u]
        for v, cost in graph.get(u, {}).items():
            if v in done:
                continue
            hops_v = local_hops.get(v, frozenset()) if u == source else hops_u
            if not hops_v:
                continue
            candidate = dist_u + cost
            known = distance.get(v)
            if known is None or candidate < known:
                distance[v] = candidate
                first_hops[v] = hops_v
                heapq.heappush(heap, (candidate, v))
            elif candidate == known:
                first_hops[v] = first_hops[v] | hops_v
    return SpfResult(distance, first_hops)


class SpfThrottle:
    """When to run SPF: a short wait after the first trigger, then waits that double under
    churn up to ``max_hold``, reset after a quiet period of twice ``max_hold``."""

    def __init__(self, initial_delay: float, hold: float, max_hold: float) -> None:
        self.initial_delay = initial_delay
        self.base_hold = hold
        self.max_hold = max_hold
        self.hold = hold
        self.last_run: float | None = None
        self.pending_at: float | None = None

    def request(self, now: float) -> None:
        if self.pending_at is not None:
            return
        if self.last_run is None or now - self.last_run >= 2 * self.max_hold:
            self.hold = self.base_hold
            self.pending_at = now + self.initial_delay
            return
        self.pending_at = max(now + self.initial_delay, self.last_run + self.hold)
        self.hold = min(self.hold * 2, self.max_hold)

    def due(self, now: float) -> bool:
        return self.pending_at is not None and now >= self.pending_at

    def ran(self, now: float) -> None:
        self.last_run = now
        self.pending_at = None
