"""Real-world networks as DMSC router graphs: TopoHub's data sets, or a GraphML file of your own.

Two sources, one conversion (:func:`router_graph`):

- ``topohub:<key>``, e.g. ``topohub:topozoo/Geant2012``: a network of the TopoHub package (the
  Internet Topology Zoo as ``topozoo/<Name>``, SNDlib as ``sndlib/<name>``, ...), pinned in
  setup.py. Every node must have a position and every link a length (``dist``, km).
- a GraphML file (Topology Zoo style: ``label``, ``Latitude``, ``Longitude`` on nodes). A link
  with an endpoint of unknown position gets :data:`DEFAULT_DELAY_S`.

Nodes become routers named from their label, made safe as node ids (letters and digits, at most
:data:`MAX_ID` characters, a letter first); a label that collides with an earlier one gets a
number (``Milan``, ``Milan2``), logged as a warning and listed in ``graph.graph["renamed"]``.
Parallel edges collapse to one link, self-loops are dropped. Each link records its length and
the propagation delay it implies (light in fibre, about 2/3 c), so experiments can emulate it.
Routing cost is that delay in units of 100 µs (at least 1), so SPF prefers short paths as an
operator would. A network that cannot be emulated (no nodes, not connected, more nodes than the
management network addresses, interface names too long) is refused with a ConfigError naming
it and the reason.
"""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import math
import re
from pathlib import Path
from xml.etree import ElementTree

import networkx as nx

from dmsc.errors import ConfigError

log = logging.getLogger(__name__)

EARTH_RADIUS_KM = 6371.0
FIBRE_KM_PER_S = 200_000.0  # ~2/3 of c
COST_UNIT_S = 100e-6
DEFAULT_DELAY_S = 1e-3  # for a GraphML link with an endpoint of unknown position
MAX_ID = 8  # node ids become host names, and "<id>-eth<n>" must fit Linux's 15 characters
IFNAMSIZ = 15  # Linux: at most 15 characters in an interface name
SPARE_PORTS = 2  # an SG's interfaces beyond its links: its pod's and its SPA's
#: dmsc.nodes.emulation.mgmt_address gives SG/SRs 10.255.0.2 .. 10.255.255.254 (a /16)
MAX_NODES = 0xFFFE - 1
TOPOHUB = "topohub:"
#: short names of TopoHub networks, usable wherever ``topohub:<key>`` is
ALIASES = {"abilene": f"{TOPOHUB}topozoo/Abilene"}
_TOPOHUB_KEY = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)+\Z")


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


# ---------------------------------------------------------------- the shared conversion


def _node_ids(graph: nx.Graph, network: str) -> tuple[dict, dict[str, str]]:
    """Map node keys to short unique ids usable as node names (``Amsterda``...), and the ids
    that are not simply their label made safe (a duplicate, or no usable label) -> label."""
    ids: dict = {}
    renamed: dict[str, str] = {}
    used: set[str] = set()
    for key, data in graph.nodes(data=True):
        label = str(data.get("label", key))
        base = re.sub(r"[^A-Za-z0-9]+", "", label)[:MAX_ID] or f"n{key}"
        if not base[0].isalpha():
            base = f"n{base}"[:MAX_ID]
        candidate, suffix = base, 2
        while candidate in used:
            candidate, suffix = f"{base}{suffix}", suffix + 1
        if candidate != base or not re.sub(r"[^A-Za-z0-9]+", "", label):
            renamed[candidate] = label
            log.warning(
                "%s: node %s labelled %r is called %s (%s)",
                network,
                key,
                label,
                candidate,
                f"{base} is taken" if candidate != base else "no letters or digits in its label",
            )
        used.add(candidate)
        ids[key] = candidate
    return ids, renamed


def _position(data: dict) -> tuple[float, float] | None:
    lat, lon = data.get("latitude"), data.get("longitude")
    if lat is None or lon is None:
        return None
    return float(lat), float(lon)


def _refuse(network: str, reason: str) -> ConfigError:
    return ConfigError(f"{network}: {reason}")


def _some(items, limit: int = 5) -> str:
    items = [str(i) for i in items]
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def router_graph(
    raw: nx.Graph, network: str, source: str, *, require_geography: bool = False
) -> nx.Graph:
    """The router graph of ``raw``, a networkx graph whose nodes may have ``label``,
    ``latitude`` and ``longitude`` and whose edges may have ``distance_km``: a simple
    undirected graph of node ids with ``label``/``latitude``/``longitude`` on nodes and
    ``distance_km``, ``delay_s`` and ``cost`` on edges. A link without ``distance_km`` is as
    long as the great circle between its ends; if an end has no position it gets
    :data:`DEFAULT_DELAY_S`, unless ``require_geography``: then a node without a position is
    refused.
    ConfigError ``"<network>: <reason>"`` if it cannot be emulated."""
    if raw.number_of_nodes() == 0:
        raise _refuse(network, "the network has no nodes")
    if raw.number_of_nodes() > MAX_NODES:
        raise _refuse(
            network,
            f"{raw.number_of_nodes()} nodes; the management network addresses at most "
            f"{MAX_NODES:,} SGs/SRs",
        )
    try:
        positions = {key: _position(data) for key, data in raw.nodes(data=True)}
    except (TypeError, ValueError):
        raise _refuse(network, "a node's latitude or longitude is not a number") from None
    labels = {key: repr(str(data.get("label", key))) for key, data in raw.nodes(data=True)}
    bad = [k for k, p in positions.items() if p and not (-90 <= p[0] <= 90 and -180 <= p[1] <= 180)]
    if bad:
        raise _refuse(network, f"node(s) {_some(labels[k] for k in bad)} are off the globe")
    if require_geography:
        unplaced = [k for k, p in positions.items() if p is None]
        if unplaced:
            raise _refuse(network, f"node(s) {_some(labels[k] for k in unplaced)} have no position")
    ids, renamed = _node_ids(raw, network)
    graph = nx.Graph(name=raw.graph.get("name", network), source=source, renamed=renamed)
    for key, data in raw.nodes(data=True):
        lat, lon = positions[key] or (None, None)
        graph.add_node(ids[key], label=str(data.get("label", key)), latitude=lat, longitude=lon)
    for u, v, data in raw.edges(data=True):
        if u == v:
            continue
        km = data.get("distance_km")
        if km is None and positions[u] and positions[v]:
            km = great_circle_km(*positions[u], *positions[v])
        if km is None:  # an end without a position (never with require_geography)
            delay = DEFAULT_DELAY_S
        else:
            if not isinstance(km, int | float) or not 0 <= km < math.inf:
                raise _refuse(network, f"link {ids[u]}-{ids[v]} has length {km!r}")
            delay = km / FIBRE_KM_PER_S
        cost = max(1, math.ceil(delay / COST_UNIT_S))
        graph.add_edge(ids[u], ids[v], distance_km=km, delay_s=delay, cost=cost)
    if graph.number_of_edges() == 0 and graph.number_of_nodes() > 1:
        raise _refuse(network, "the network has no links")
    if not nx.is_connected(graph):
        parts = sorted(nx.connected_components(graph), key=len, reverse=True)
        raise _refuse(
            network,
            f"the network is not connected ({len(parts)} parts; "
            f"{_some(sorted(parts[1]))} cannot reach {sorted(parts[0])[0]})",
        )
    for node in graph:
        longest = f"{node}-eth{graph.degree(node) - 1 + SPARE_PORTS}"
        if len(longest) > IFNAMSIZ:
            raise _refuse(
                network,
                f"node {node} has {graph.degree(node)} links: its interface {longest} would "
                f"exceed Linux's {IFNAMSIZ} characters",
            )
    return graph


# ---------------------------------------------------------------- GraphML


def load_graphml(path: str | Path) -> nx.Graph:
    """A GraphML file (Topology Zoo style) as a router graph (see :func:`router_graph`)."""
    path = Path(path)
    try:
        raw = nx.read_graphml(path)
    except (OSError, nx.NetworkXError, ValueError, ElementTree.ParseError) as error:
        raise ConfigError(f"{path}: cannot read GraphML ({error})") from None
    if raw.is_directed():
        raw = raw.to_undirected()
    normal = nx.Graph(name=raw.graph.get("Network", path.stem))
    for key, data in raw.nodes(data=True):
        normal.add_node(
            key,
            label=data.get("label", str(key)),
            latitude=data.get("Latitude"),
            longitude=data.get("Longitude"),
        )
    normal.add_edges_from(raw.edges())
    return router_graph(normal, str(path), str(path))


# ---------------------------------------------------------------- TopoHub


def _topohub():
    try:
        import topohub
    except ImportError:
        raise ConfigError(
            "the topohub package is not installed: pip install -e . (setup.py pins it)"
        ) from None
    return topohub


def topohub_keys(group: str = "topozoo") -> list[str]:
    """Every key of ``group`` in the installed topohub (``topozoo/Aarnet``, ...), sorted."""
    from importlib import resources

    folder = resources.files(_topohub()) / "data" / group
    if not folder.is_dir():
        return []
    return sorted(
        f"{group}/{entry.name.removesuffix('.json')}"
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    )


def _unknown_key(key: str, version: str) -> ConfigError:
    group = key.split("/", 1)[0]
    close = difflib.get_close_matches(key, topohub_keys(group), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(TOPOHUB + c for c in close)}?" if close else ""
    return ConfigError(f"{TOPOHUB}{key}: no such network in topohub {version}{hint}")


def _node_link_graph(data: dict) -> nx.Graph:
    """TopoHub's node-link dicts keep links under "edges": networkx >= 3.4 names that key with
    ``edges=``, older releases with ``link=``."""
    if "edges" in inspect.signature(nx.node_link_graph).parameters:
        return nx.node_link_graph(data, edges="edges")
    return nx.node_link_graph(data, link="edges")


def load_topohub(key: str) -> nx.Graph:
    """The TopoHub network ``key`` (``topozoo/Geant2012``; with or without ``topohub:``) as a
    router graph (see :func:`router_graph`). ``graph.graph["source"]`` is
    ``"topohub <version>:<key>"``."""
    key = key.removeprefix(TOPOHUB)
    network = f"{TOPOHUB}{key}"
    if not _TOPOHUB_KEY.match(key) or ".." in key.split("/"):
        raise ConfigError(
            f"{network}: not a topohub key (group/name, e.g. {TOPOHUB}topozoo/Geant2012)"
        )
    topohub = _topohub()
    version = getattr(topohub, "__version__", "?")
    try:
        data = topohub.get(key)
    except KeyError:
        raise _unknown_key(key, version) from None
    except (OSError, ValueError, RuntimeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{network}: topohub {version} cannot read it ({error})") from None
    try:
        raw = _node_link_graph(data)
    except (KeyError, TypeError, nx.NetworkXError) as error:
        raise ConfigError(f"{network}: not a node-link graph ({error!r})") from None
    if raw.is_directed():
        raw = raw.to_undirected()
    normal = nx.Graph(name=key.rsplit("/", 1)[-1])
    for node, attrs in raw.nodes(data=True):
        pos = attrs.get("pos")
        lon, lat = pos if isinstance(pos, list | tuple) and len(pos) == 2 else (None, None)
        normal.add_node(node, label=attrs.get("name", str(node)), latitude=lat, longitude=lon)
    for u, v, attrs in raw.edges(data=True):
        normal.add_edge(u, v, distance_km=attrs.get("dist"))
    return router_graph(normal, network, f"topohub {version}:{key}", require_geography=True)


def load_network(source: str | Path) -> nx.Graph:
    """``topohub:<key>`` (or an alias such as ``abilene``) from TopoHub, else a GraphML file."""
    source = ALIASES.get(str(source), source)
    if str(source).startswith(TOPOHUB):
        return load_topohub(str(source))
    return load_graphml(source)


def is_topohub(source: str | Path) -> bool:
    """Whether ``source`` names a TopoHub network (``topohub:<key>`` or an alias)."""
    return str(source) in ALIASES or str(source).startswith(TOPOHUB)
