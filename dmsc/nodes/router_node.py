"""The SG and SR program: the link-state core on real sockets, its admin socket, its forwarder.

A thin asyncio shell around :class:`dmsc.routing.LinkStateRouter`: datagrams and carrier changes
go in with the current time, datagrams come out, and a single timer follows the core's next
deadline. Everything started registers its own cleanup, run in reverse order on stop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time
from collections.abc import Callable

from dmsc.nodes import introspect
from dmsc.nodes.admin import serve_admin
from dmsc.nodes.config import RouterConfig
from dmsc.nodes.linkio import (
    MAX_DATAGRAM,
    arrival_of,
    group_address,
    hardware_address,
    is_up,
    open_link_monitor,
    open_link_state_socket,
    parse_link_changes,
    signalling_refusal,
)
from dmsc.routing import LinkStateRouter
from dmsc.routing.domain import load_router_security
from dmsc.spa.claims import AttestationVerifier
from dmsc.spa.keys import public_key_from_text

log = logging.getLogger(__name__)
DRAIN_BATCH = 64  # datagrams read per wake-up before yielding to other work
ANCILLARY_BYTES = socket.CMSG_SPACE(20) + socket.CMSG_SPACE(4)  # packet info, hop limit


class RouterNode:
    def __init__(self, config: RouterConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        anchors = [public_key_from_text(text) for text in config.trust_anchors]
        verifier = AttestationVerifier.from_public_keys(anchors)
        security = load_router_security(
            config.node_id, config.router_key_file, config.certificate_file,
            config.link_key_file, config.routing_anchors, clock(),
        )  # fmt: skip
        self.router = LinkStateRouter(
            config.node_id, verifier, config.link_state_timers, clock(), security
        )
        self.counters: collections.Counter[str] = collections.Counter()
        self.sockets: dict[str, socket.socket] = {}
        self.extensions: list = []  # SG gateway, forwarder: started after the core, stopped before
        self._destinations: dict[str, tuple] = {}
        self._interface_by_index: dict[int, str] = {}
        self._cleanups: list[Callable[[], object]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._fib_version_seen = -1
        self._stop = asyncio.Event()
        self.started_at = clock()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        try:
            await self.start()
            await self._stop.wait()
        finally:
            await self.close()

    def request_stop(self) -> None:
        self._stop.set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for spec in self.config.interfaces:
            self._open_interface(loop, spec.name, spec.cost)
        monitor = open_link_monitor()
        self._cleanups.append(monitor.close)
        loop.add_reader(monitor.fileno(), self._on_link_change, monitor)
        self._cleanups.append(lambda: loop.remove_reader(monitor.fileno()))
        admin = await serve_admin(self.config.admin_socket, self.admin_handlers())
        self._cleanups.append(admin.close)
        for extension in self.extensions:
            await extension.start()
        self.pump()
        log.info("%s: started on %s", self.config.node_id, list(self.sockets))

    async def close(self) -> None:
        """Leave cleanly: purge our LSA, stop extensions, then undo every start step."""
        if self.sockets:
            self.router.shutdown(self.clock())
            self._send_datagrams()
        for extension in reversed(self.extensions):
            await extension.stop()
        if self._timer is not None:
            self._timer.cancel()
        while self._cleanups:
            self._cleanups.pop()()
        self.sockets.clear()

    def _open_interface(self, loop: asyncio.AbstractEventLoop, name: str, cost: int) -> None:
        sock = open_link_state_socket(name)
        self._cleanups.append(sock.close)
        self.sockets[name] = sock
        self._destinations[name] = group_address(name)
        self._interface_by_index[socket.if_nametoindex(name)] = name
        now = self.clock()
        self.router.add_interface(name, cost, now, hardware_address(name))
        if not is_up(name):
            self.router.set_interface_state(name, False, now)
        loop.add_reader(sock.fileno(), self._on_datagrams, name, sock)
        self._cleanups.append(lambda: loop.remove_reader(sock.fileno()))

    # ------------------------------------------------------------------ inputs

    def _on_datagrams(self, interface: str, sock: socket.socket) -> None:
        for _ in range(DRAIN_BATCH):
            try:
                data, ancillary, _, address = sock.recvmsg(MAX_DATAGRAM, ANCILLARY_BYTES)
            except BlockingIOError:
                break
            except OSError as error:
                self.counters["rx_socket_errors"] += 1
                log.warning("%s: receive on %s failed: %s", self.config.node_id, interface, error)
                break
            refusal = signalling_refusal(arrival_of(address, ancillary))
            if refusal is not None:
                self.router.refuse(interface, "arrival", refusal, self.clock())
                continue
            self.router.receive(interface, data, self.clock())
        self.pump()

    def _on_link_change(self, monitor: socket.socket) -> None:
        try:
            data = monitor.recv(65536)
        except OSError:
            return
        for change in parse_link_changes(data):
            interface = self._interface_by_index.get(change.index)
            if interface is not None:
                up = change.up and is_up(interface)
                self.router.set_interface_state(interface, up, self.clock())
        self.pump()

    def _on_timer(self) -> None:
        self._timer = None
        self.router.handle_timer(self.clock())
        self.pump()

    # ------------------------------------------------------------------ outputs

    def pump(self) -> None:
        """After any input: send what the core produced, follow its FIB, re-arm its timer."""
        self._send_datagrams()
        if self.router.fib_version != self._fib_version_seen:
            self._fib_version_seen = self.router.fib_version
            for extension in self.extensions:
                extension.fib_changed()
        self._arm_timer()

    def _send_datagrams(self) -> None:
        for interface, data in self.router.datagrams_to_send():
            try:
                self.sockets[interface].sendto(data, self._destinations[interface])
            except OSError:
                self.counters["tx_socket_errors"] += 1  # e.g. link down, address not ready yet

    def _arm_timer(self) -> None:
        deadline = self.router.get_timer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            delay = max(0.0, deadline - self.clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    # ------------------------------------------------------------------ introspection

    def admin_handlers(self) -> dict:
        router = self.router
        handlers = {
            "status": lambda _: self.status(),
            "neighbors": lambda _: introspect.neighbors(router),
            "lsdb": lambda _: introspect.lsdb(router, self.clock()),
            "rib": lambda _: introspect.rib(router),
            "fib": lambda _: introspect.fib(router),
            "events": lambda request: introspect.events(router, int(request.get("limit", 200))),
            "counters": lambda _: {**router.counters, **self.counters},
            "prefixes": lambda _: introspect.prefixes(router),
        }
        for extension in self.extensions:
            handlers.update(extension.admin_handlers())
        return handlers

    def status(self) -> dict:
        return {
            "node": self.config.node_id,
            "role": self.config.role,
            "uptime_s": round(self.clock() - self.started_at, 3),
            "fib_version": self.router.fib_version,
            "full_neighbors": sorted(n.node_id for n in self.router.full_neighbors()),
            "interfaces": {n: i.up for n, i in self.router.interfaces.items()},
        }
