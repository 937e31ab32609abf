"""The SG/SR program's data plane: runs the Python forwarder and keeps its tables in step.

The tables are rebuilt from the node's state whenever it changes — the FIB (next hops become the
neighbors' MACs from their hellos), the SG's pods (local delivery to the pods holding a name)
and, with the SCSC, its policies — and swapped into the running forwarder in one step.
"""

from __future__ import annotations

import ipaddress
import logging

from dmsc.dataplane.forwarder import Forwarder
from dmsc.dataplane.netutil import prepare_node
from dmsc.dataplane.tables import NextHop, Policy, Port, Route, Tables
from dmsc.lpm import PrefixTable
from dmsc.names import node_address
from dmsc.nodes.linkio import hardware_address
from dmsc.routing.rib import FibEntry

log = logging.getLogger(__name__)


class Forwarding:
    """An extension of :class:`RouterNode`: started after the core, stopped before it."""

    def __init__(self, node) -> None:
        self.node = node
        names = [i.name for i in node.config.interfaces] + list(node.config.pod_interfaces)
        self.ports = tuple(Port(i, name, hardware_address(name)) for i, name in enumerate(names))
        self.port_of = {port.name: port.index for port in self.ports}
        self.address = node_address(node.config.node_id)
        self.policies: tuple[Policy, ...] = ()
        self.forwarder: Forwarder | None = None

    async def start(self) -> None:
        prepare_node([port.name for port in self.ports])
        self.forwarder = Forwarder(self.tables())
        self.forwarder.start()
        for extension in self.node.extensions:
            if hasattr(extension, "on_deliveries_changed"):
                extension.on_deliveries_changed = self.refresh

    async def stop(self) -> None:
        if self.forwarder is not None:
            self.forwarder.stop()
            if self.forwarder.error is not None:
                log.error("forwarder loop had ended: %s", self.forwarder.error_text)
            self.forwarder = None

    def fib_changed(self) -> None:
        self.refresh()

    def set_policies(self, policies: tuple[Policy, ...]) -> None:
        self.policies = policies
        self.refresh()

    def refresh(self) -> None:
        if self.forwarder is not None:
            self.forwarder.set_tables(self.tables())

    # ------------------------------------------------------------------ building the tables

    def tables(self) -> Tables:
        routes: PrefixTable[Route] = PrefixTable()
        for prefix, entry in self.node.router.fib.items():
            hops = self._deliveries(entry) if entry.local else self._next_hops(entry)
            if hops:
                routes.insert(prefix, Route(prefix, entry.label, hops, entry.local))
        own = frozenset({ipaddress.IPv6Address(self.address)})
        return Tables(self.ports, routes, self.policies, own, self.address)

    def _next_hops(self, entry: FibEntry) -> tuple[NextHop, ...]:
        hops = []
        for interface, neighbor_id in entry.next_hops:
            neighbor = self.node.router.neighbors.get(interface, {}).get(neighbor_id)
            if neighbor is not None and len(neighbor.hardware_address) == 6:
                hops.append(NextHop(self.port_of[interface], neighbor.hardware_address))
        return tuple(hops)

    def router_neighbor(self, interface: str) -> str | None:
        """The node id of the FULL neighbor on a router link, if any."""
        for neighbor in self.node.router.neighbors.get(interface, {}).values():
            if neighbor.state.value == "full":
                return neighbor.node_id
        return None

    def neighbor_mac(self, interface: str) -> bytes | None:
        """Who is at the other end of one of our ports: the router heard on it (FULL), or on a
        pod link the pod holding a lease there. None when nobody is."""
        for neighbor in self.node.router.neighbors.get(interface, {}).values():
            if neighbor.state.value == "full" and len(neighbor.hardware_address) == 6:
                return neighbor.hardware_address
        gateway = self._gateway()
        if gateway is not None:
            for lease in gateway.leases:
                if lease.interface == interface and len(lease.pod_mac) == 6:
                    return lease.pod_mac
        return None

    def _gateway(self):
        return next((e for e in self.node.extensions if hasattr(e, "leases")), None)

    def _deliveries(self, entry: FibEntry) -> tuple[NextHop, ...]:
        """A name this SG serves goes to the pods holding it (none for the node's own address:
        the kernel takes what is addressed to the node)."""
        gateway = self._gateway()
        if gateway is None:
            return ()
        return tuple(
            NextHop(self.port_of[lease.interface], lease.pod_mac)
            for lease in gateway.leases.holders(entry.label)
            if lease.interface in self.port_of and len(lease.pod_mac) == 6
        )

    def admin_handlers(self) -> dict:
        def dataplane(_request) -> dict:
            if self.forwarder is None:
                return {"running": False}
            return {"running": self.forwarder.error is None, **self.forwarder.stats()}

        return {"dataplane": dataplane}
