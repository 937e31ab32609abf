"""Import of Internet Topology Zoo GraphML files as DMSC router graphs.

Nodes become routers named from their label (made unique and safe as node ids); parallel edges
collapse to one link; each link records its great-circle length and the propagation delay it
implies (light in fibre, about 2/3 c), so later experiments can emulate it. Routing cost is
that delay in units of 100 µs (at least 1), so SPF prefers short paths as an operator would.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import networkx as nx

from dmsc.errors import ConfigError

EARTH_RADIUS_KM = 6371.0
FIBRE_KM_PER_S = 200_000.0  # ~2/3 of c
COST_UNIT_S = 100e-6
DEFAULT_DELAY_S = 1e-3  # for a link with an endpoint of unknown position
MAX_ID = 8  # node ids become host names, and "<id>-eth<n>" must fit Linux's 15 characters


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def _node_ids(graph: nx.Graph) -> dict:
    """Map GraphML node keys to short unique ids usable as node names (``r-Amsterdam``...)."""
    ids: dict = {}
    used: set[str] = set()
    for key, data in graph.nodes(data=True):
        base = re.sub(r"[^A-Za-z0-9]+", "", str(data.get("label", key)))[:MAX_ID] or f"n{key}"
        if not base[0].isalpha():
            base = f"n{base}"[:MAX_ID]
        candidate, suffix = base, 2
        while candidate in used:
            candidate, suffix = f"{base}{suffix}", suffix + 1
        used.add(candidate)
        ids[key] = candidate
    return ids


def _link_delay(a: dict, b: dict) -> tuple[float | None, float]:
    if not all(k in d for d in (a, b) for k in ("Latitude", "Longitude")):
        return None, DEFAULT_DELAY_S
    km = great_circle_km(a["Latitude"], a["Longitude"], b["Latitude"], b["Longitude"])
    return km, km / FIBRE_KM_PER_S


def load_graphml(path: str | Path) -> nx.Graph:
    """A simple undirected graph with ``distance_km``, ``delay_s`` and ``cost`` on each edge."""
    path = Path(path)
    try:
        raw = nx.read_graphml(path)
    except (OSError, nx.NetworkXError, ValueError) as error:
        raise ConfigError(f"{path}: cannot read GraphML ({error})") from None
    ids = _node_ids(raw)
    graph = nx.Graph(name=raw.graph.get("Network", path.stem), source=str(path))
    for key, data in raw.nodes(data=True):
        graph.add_node(
            ids[key],
            label=data.get("label", str(key)),
            latitude=data.get("Latitude"),
            longitude=data.get("Longitude"),
        )
    for u, v in raw.edges():
        if u == v:
            continue
        km, delay = _link_delay(raw.nodes[u], raw.nodes[v])
        cost = max(1, math.ceil(delay / COST_UNIT_S))
        graph.add_edge(ids[u], ids[v], distance_km=km, delay_s=delay, cost=cost)
    if graph.number_of_nodes() == 0:
        raise ConfigError(f"{path}: the GraphML file has no nodes")
    return graph
