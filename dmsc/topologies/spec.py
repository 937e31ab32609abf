"""A DMSC topology as data: routers (SG/SR), links between them, pods behind SGs, SPAs.

Every builder (Figure 2, linear, ring, fat-tree, GraphML) returns a :class:`TopologySpec`; the
emulator turns one into Mininet hosts and links, the simulator into link-state cores.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

import networkx as nx

from dmsc.errors import ConfigError, InvalidName
from dmsc.names import ServiceName

MAX_NODE_NAME = 10  # Linux interface names are at most 15 characters: "<node>-eth<n>"
_NODE_NAME = re.compile(r"[a-z][a-z0-9]*\Z", re.IGNORECASE)


@dataclass(frozen=True)
class LinkSpec:
    a: str
    b: str
    cost: int = 10
    delay_s: float | None = None  # propagation delay to emulate (e.g. from geography)
    bandwidth_mbps: float | None = None


@dataclass(frozen=True)
class PodSpec:
    name: str
    gateway: str
    instances: tuple[str, ...]
    #: names the pod claims although its SPA's policy does not give them to it (a rogue pod)
    unauthorized: tuple[str, ...] = ()

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(sorted({str(ServiceName.parse(i).parent) for i in self.instances}))

    @property
    def prefixes(self) -> tuple[str, ...]:
        """Everything the pod is allowed: its instances and their services' anycast names."""
        return self.instances + self.services

    @property
    def claims(self) -> tuple[str, ...]:
        """Everything the pod announces, allowed or not."""
        return self.prefixes + self.unauthorized


@dataclass(frozen=True)
class TopologySpec:
    name: str
    gateways: tuple[str, ...]
    routers: tuple[str, ...]
    links: tuple[LinkSpec, ...]
    pods: tuple[PodSpec, ...] = ()
    spas: dict[str, str] = field(default_factory=dict)  # SPA host -> the SG it serves

    def __post_init__(self) -> None:
        self._check_names()
        self._check_links()
        self._check_pods()

    def _check_names(self) -> None:
        names = [*self.gateways, *self.routers, *(p.name for p in self.pods), *self.spas]
        for name in names:
            if not _NODE_NAME.match(name) or len(name) > MAX_NODE_NAME:
                raise ConfigError(
                    f"topology {self.name}: node name {name!r} must be a letter "
                    f"then letters/digits, at most {MAX_NODE_NAME} characters"
                )
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"topology {self.name}: duplicate node names {duplicates}")

    def _check_links(self) -> None:
        routers = set(self.gateways) | set(self.routers)
        for link in self.links:
            for end in (link.a, link.b):
                if end not in routers:
                    raise ConfigError(
                        f"topology {self.name}: link {link.a}-{link.b}: {end!r} is not an SG or SR"
                    )
            if link.a == link.b or not 1 <= link.cost <= 0xFFFFFF:
                raise ConfigError(
                    f"topology {self.name}: link {link.a}-{link.b}: bad ends or cost {link.cost}"
                )

    def _check_pods(self) -> None:
        for pod in self.pods:
            if pod.gateway not in self.gateways:
                raise ConfigError(
                    f"topology {self.name}: pod {pod.name}: gateway {pod.gateway!r} is not an SG"
                )
            for instance in pod.instances:
                try:
                    depth = ServiceName.parse(instance).depth
                except InvalidName as error:
                    raise ConfigError(f"topology {self.name}: pod {pod.name}: {error}") from None
                if depth < 2:
                    raise ConfigError(
                        f"topology {self.name}: pod {pod.name}: {instance} is "
                        "not an instance (needs /service/instance)"
                    )
        for spa, sg in self.spas.items():
            if sg not in self.gateways:
                raise ConfigError(f"topology {self.name}: SPA {spa} serves {sg!r}, not an SG")
        served = set(self.spas.values())
        unserved = sorted({p.gateway for p in self.pods} - served)
        if unserved:
            raise ConfigError(f"topology {self.name}: SGs with pods but no SPA: {unserved}")

    def router_graph(self) -> nx.Graph:
        graph = nx.Graph(name=self.name)
        graph.add_nodes_from(self.gateways, role="sg")
        graph.add_nodes_from(self.routers, role="sr")
        for link in self.links:
            graph.add_edge(link.a, link.b, cost=link.cost, delay_s=link.delay_s)
        return graph

    def announced(self, down: Collection[str] = ()) -> dict[str, set[str]]:
        """name -> the SGs that advertise it: every pod's allowed names (unauthorized claims
        are refused by the SPA), except pods that are ``down`` or behind an SG that is."""
        names: dict[str, set[str]] = {}
        for pod in self.pods:
            if pod.name in down or pod.gateway in down:
                continue
            for name in pod.prefixes:
                names.setdefault(name, set()).add(pod.gateway)
        return names
