"""Many link-state cores joined by fake links on a virtual clock: deterministic and fast.

Each link has a delay, optional jitter (which reorders), loss and duplication, drawn from one
seeded random generator, so a run is the same every time. Tests and benchmarks use it to check
convergence and to measure it in virtual seconds.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx

from dmsc.routing.config import LinkStateTimers
from dmsc.routing.domain import RoutingDomain
from dmsc.routing.rib import AttestationChecker
from dmsc.routing.router import LinkStateRouter

#: A virtual epoch in the present, so SPA attestations carry realistic times.
DEFAULT_START = 1_750_000_000.0
BUSY_TIMER_LIMIT = 1000


@dataclass
class SimLink:
    a: str
    b: str
    interface_a: str
    interface_b: str
    cost_ab: int = 10
    cost_ba: int = 10
    delay: float = 0.001
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    up: bool = True
    epoch: int = 0  # bumped on every state change: packets in flight on a dead link are lost

    def far_end(self, node: str) -> tuple[str, str]:
        return (self.b, self.interface_b) if node == self.a else (self.a, self.interface_a)


@dataclass
class Delivery:
    """A datagram seen by the simulator (for tests that replay or inspect traffic)."""

    time: float
    source: str
    destination: str
    interface: str
    data: bytes


@dataclass
class SimNetwork:
    verifier: AttestationChecker
    timers: LinkStateTimers = field(default_factory=LinkStateTimers)
    seed: int = 0
    now: float = DEFAULT_START
    #: enrolled routers, signed LSAs and authenticated links, as node programs run; False runs
    #: the protocol open, for baselines that measure what authentication costs
    secure: bool = True

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)
        self.domain = RoutingDomain.from_seed(self.seed) if self.secure else None
        self.routers: dict[str, LinkStateRouter] = {}
        self.crashed: set[str] = set()
        self.links: dict[tuple[str, str], SimLink] = {}  # (node, interface) -> link
        self.link_list: list[SimLink] = []
        self.fib_changed_at: dict[str, float] = {}  # node -> virtual time of its last FIB change
        self._fib_versions: dict[str, int] = {}
        self.taps: list[Callable[[Delivery], None]] = []
        self._heap: list[tuple[float, int, str, tuple]] = []
        self._order = itertools.count()
        self._timer_generation: dict[str, int] = {}
        self._interface_count: dict[str, int] = {}
        self._timer_fires: dict[str, tuple[float | None, int]] = {}

    # ------------------------------------------------------------------ building

    def add_node(self, node_id: str) -> LinkStateRouter:
        security = None
        if self.domain is not None:  # a restarted node keeps its key, as a real one would
            credentials = self.domain.enrol(node_id, "sr", self.now, self.seed)
            security = self.domain.security_for(credentials)
        router = LinkStateRouter(node_id, self.verifier, self.timers, self.now, security)
        self.routers[node_id] = router
        self._interface_count.setdefault(node_id, 0)
        for (node, interface), link in self.links.items():
            if node == node_id:
                cost = link.cost_ab if node == link.a else link.cost_ba
                router.add_interface(interface, cost, self.now)
        self._after_call(node_id)
        return router

    def add_link(self, a: str, b: str, cost: int = 10, **options) -> SimLink:
        """Join ``a`` and ``b``; options are SimLink fields (delay, loss, cost_ba, ...)."""
        interface_a, interface_b = self._new_interface(a), self._new_interface(b)
        link = SimLink(a, b, interface_a, interface_b, cost_ab=cost, cost_ba=cost)
        for key, value in options.items():
            setattr(link, key, value)
        self.links[(a, interface_a)] = link
        self.link_list.append(link)
        self.links[(b, interface_b)] = link
        for node, interface, link_cost in (
            (a, interface_a, link.cost_ab),
            (b, interface_b, link.cost_ba),
        ):
            if node in self.routers:
                self.routers[node].add_interface(interface, link_cost, self.now)
                self._after_call(node)
        return link

    def _new_interface(self, node: str) -> str:
        index = self._interface_count.get(node, 0)
        self._interface_count[node] = index + 1
        return f"eth{index}"

    def link_between(self, a: str, b: str) -> SimLink:
        for link in self.link_list:
            if {link.a, link.b} == {a, b}:
                return link
        raise KeyError(f"no link between {a} and {b}")

    # ------------------------------------------------------------------ faults

    def set_link_state(self, a: str, b: str, up: bool) -> None:
        """Carrier change on both ends, as `ip link set down` does in an emulator."""
        link = self.link_between(a, b)
        link.up = up
        link.epoch += 1
        for node, interface in ((link.a, link.interface_a), (link.b, link.interface_b)):
            if node in self.routers and node not in self.crashed:
                self.routers[node].set_interface_state(interface, up, self.now)
                self._after_call(node)

    def crash_node(self, node_id: str) -> None:
        """The node program dies: it goes silent; its links stay up (neighbors use the dead
        interval to notice, as with a killed process in Mininet)."""
        self.crashed.add(node_id)
        self._timer_generation[node_id] = self._timer_generation.get(node_id, 0) + 1

    def stop_node(self, node_id: str) -> None:
        """The node program exits cleanly: it floods a purge of its LSA, then goes silent."""
        self.routers[node_id].shutdown(self.now)
        self._after_call(node_id)
        self.crash_node(node_id)

    def restart_node(self, node_id: str) -> LinkStateRouter:
        """A fresh process: empty database, sequence numbers from 1 again."""
        self.crashed.discard(node_id)
        return self.add_node(node_id)

    def announce(self, node_id: str, name: str, attestation) -> None:
        """The node's SG role advertises ``name`` now (with the SPA's attestation)."""
        self.routers[node_id].announce_prefix(name, attestation, self.now)
        self._after_call(node_id)

    def withdraw(self, node_id: str, name: str) -> None:
        self.routers[node_id].withdraw_prefix(name, self.now)
        self._after_call(node_id)

    def inject(self, node_id: str, interface: str, data: bytes) -> None:
        """Hand ``data`` to a node as if it had arrived on ``interface`` now."""
        self.routers[node_id].receive(interface, data, self.now)
        self._after_call(node_id)

    # ------------------------------------------------------------------ running

    def run_until(self, deadline: float) -> None:
        while self._heap and self._heap[0][0] <= deadline:
            when, _, kind, payload = heapq.heappop(self._heap)
            self.now = when
            if kind == "timer":
                self._fire_timer(*payload)
            else:
                self._deliver(*payload)
        self.now = max(self.now, deadline)

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def run_until_true(
        self, predicate: Callable[[], bool], timeout: float, step: float = 0.05
    ) -> float:
        """Run until ``predicate()`` holds; return the virtual time it took, or raise."""
        start = self.now
        while not predicate():
            if self.now - start >= timeout:
                raise TimeoutError(f"condition not reached within {timeout} virtual seconds")
            self.run_for(step)
        return self.now - start

    def live_routers(self) -> dict[str, LinkStateRouter]:
        return {n: r for n, r in self.routers.items() if n not in self.crashed}

    def graph(self) -> nx.DiGraph:
        """The working topology (live nodes, links up) with directed costs, for reference SPF."""
        graph = nx.DiGraph()
        graph.add_nodes_from(self.live_routers())
        for link in self.link_list:
            if link.up and link.a not in self.crashed and link.b not in self.crashed:
                _add_min_edge(graph, link.a, link.b, link.cost_ab)
                _add_min_edge(graph, link.b, link.a, link.cost_ba)
        return graph

    # ------------------------------------------------------------------ internals

    def _after_call(self, node_id: str) -> None:
        router = self.routers[node_id]
        for interface, data in router.datagrams_to_send():
            self._transmit(node_id, interface, data)
        if self._fib_versions.get(node_id) != router.fib_version:
            self._fib_versions[node_id] = router.fib_version
            self.fib_changed_at[node_id] = self.now
        self._schedule_timer(node_id, router.get_timer())

    def _schedule_timer(self, node_id: str, when: float | None) -> None:
        generation = self._timer_generation.get(node_id, 0) + 1
        self._timer_generation[node_id] = generation
        if when is not None:
            when = max(when, self.now)
            heapq.heappush(self._heap, (when, next(self._order), "timer", (node_id, generation)))

    def _fire_timer(self, node_id: str, generation: int) -> None:
        if node_id in self.crashed or self._timer_generation.get(node_id) != generation:
            return
        self._check_timer_progress(node_id)
        self.routers[node_id].handle_timer(self.now)
        self._after_call(node_id)

    def _check_timer_progress(self, node_id: str) -> None:
        """A core whose deadline stays due after handle_timer would spin a real node's CPU."""
        last_time, count = self._timer_fires.get(node_id, (None, 0))
        count = count + 1 if last_time == self.now else 1
        self._timer_fires[node_id] = (self.now, count)
        if count > BUSY_TIMER_LIMIT:
            raise RuntimeError(
                f"{node_id}: timer fired {count} times at {self.now} without "
                "time passing: a deadline handle_timer never clears"
            )

    def _transmit(self, source: str, interface: str, data: bytes) -> None:
        link = self.links.get((source, interface))
        if link is None or not link.up:
            return
        copies = 2 if self.random.random() < link.duplicate else 1
        for _ in range(copies):
            if self.random.random() < link.loss:
                continue
            arrival = self.now + link.delay + self.random.uniform(0, link.jitter)
            destination, far_interface = link.far_end(source)
            payload = (source, destination, far_interface, data, link, link.epoch)
            heapq.heappush(self._heap, (arrival, next(self._order), "deliver", payload))

    def _deliver(self, source, destination, interface, data, link, epoch) -> None:
        if epoch != link.epoch or destination in self.crashed:
            return
        for tap in self.taps:
            tap(Delivery(self.now, source, destination, interface, data))
        self.routers[destination].receive(interface, data, self.now)
        self._after_call(destination)


def network_from_graph(
    graph: nx.Graph,
    verifier: AttestationChecker,
    timers: LinkStateTimers | None = None,
    seed: int = 0,
    secure: bool = True,
    **link_options,
) -> SimNetwork:
    """A SimNetwork with one router per node; edge attributes ``cost`` and ``delay_s`` are used
    when present (Topology Zoo imports carry both)."""
    network = SimNetwork(verifier, timers or LinkStateTimers(), seed, secure=secure)
    for node in graph.nodes:
        network.add_node(str(node))
    for u, v, data in graph.edges(data=True):
        options = dict(link_options)
        if data.get("delay_s") is not None:
            options.setdefault("delay", data["delay_s"])
        network.add_link(str(u), str(v), cost=int(data.get("cost", 10)), **options)
    return network


def _add_min_edge(graph: nx.DiGraph, u: str, v: str, cost: int) -> None:
    if not graph.has_edge(u, v) or graph[u][v]["weight"] > cost:
        graph.add_edge(u, v, weight=cost)
