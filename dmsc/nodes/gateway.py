"""The SG's part beyond routing: pods announce prefixes (type 1) and the SPA vouches (type 3).

A pod calls ``PodGateway.Announce`` over its link to the SG (the SG is ``fe80::1`` there). The SG
asks its SPA about each signed claim; what the SPA accepts is leased to the pod and advertised
in the SG's LSA with the SPA's attestation; what it rejects is returned with the SPA's reason.
A lease that is not renewed runs out and the prefix is withdrawn everywhere.

Only the pod that holds a lease may renew or withdraw it (:mod:`dmsc.nodes.pod_binding` decides:
same interface, the pod's own signature on a Withdraw); any other caller gets PERMISSION_DENIED,
counted as ``pod_refused_<kind>``, logged and recorded as a ``pod-refused`` event. Bytes that are
not a request get INVALID_ARGUMENT, counted as ``pod_rx_undecodable`` (:mod:`dmsc.proto.rpc`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Callable
from typing import NoReturn
from urllib.parse import unquote

import grpc

from dmsc.errors import DecodeError
from dmsc.nodes.config import POD_GATEWAY_PORT
from dmsc.nodes.leases import Lease, LeaseTable
from dmsc.nodes.pod_binding import PodBinding, Refused, pod_key_problem
from dmsc.proto import dmsc_pb2, dmsc_pb2_grpc
from dmsc.proto.rpc import add_decoding_servicer
from dmsc.routing import RouterEvent
from dmsc.spa.claims import open_attestation, open_claim
from dmsc.spa.service import SpaClient

log = logging.getLogger(__name__)
_PEER_SCOPE = re.compile(r"^ipv6:\[[0-9a-f:]+%(\d+)\]:\d+$")


def peer_interface(peer: str) -> str | None:
    """The local interface a link-local gRPC peer came in on (``ipv6:[fe80::..%7]:port``)."""
    match = _PEER_SCOPE.match(unquote(peer))
    if match is None:
        return None
    try:
        return socket.if_indextoname(int(match.group(1)))
    except OSError:
        return None


def interface_of_peer(context: grpc.aio.ServicerContext) -> str | None:
    return peer_interface(context.peer())


def rejection(name: str, code: int, reason: str) -> dmsc_pb2.PrefixResult:
    return dmsc_pb2.PrefixResult(name=name, accepted=False, code=code, reason=reason)


class Gateway(dmsc_pb2_grpc.PodGatewayServicer):
    """An extension of :class:`RouterNode` (role ``sg``).

    ``listen`` and ``caller_interface`` (which interface a call came over) are parameters so that
    tests can serve on loopback and say which pod link a call stands for.
    """

    def __init__(
        self,
        node,
        listen: str = f"[::]:{POD_GATEWAY_PORT}",
        caller_interface: Callable[[grpc.aio.ServicerContext], str | None] = interface_of_peer,
    ) -> None:
        self.node = node
        self.config = node.config
        self.listen = listen
        self.caller_interface = caller_interface
        self.leases = LeaseTable()
        self.binding = PodBinding(
            self.config.node_id, self.config.pod_interfaces, pod_links=self.config.pod_links
        )
        self.counters = node.counters  # the node's: its admin `counters` shows them
        self.spa = SpaClient(self.config.spa_target)
        self.server: grpc.aio.Server | None = None
        self.port: int | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self.on_deliveries_changed = lambda: None  # set by the forwarder extension

    async def start(self) -> None:
        self.server = grpc.aio.server()
        add_decoding_servicer(self.server, "PodGateway", self, self._count_undecodable)
        self.port = self.server.add_insecure_port(self.listen)
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=0.5)
        if self._expiry is not None:
            self._expiry.cancel()
        self.spa.close()

    def fib_changed(self) -> None:
        pass

    # ------------------------------------------------------------------ type 1

    async def Announce(self, request, context):
        interface = self.caller_interface(context)
        lease_ms = min(request.lease_ms or self.config.lease_max_ms, self.config.lease_max_ms)
        results = []
        try:
            self.binding.check_announce(self.leases, request, interface)
            for signed in request.claims:
                results.append(await self._announce_one(request, signed, interface, lease_ms))
        except Refused as refusal:
            await self._refuse(context, "Announce", interface, refusal)
        finally:  # claims granted before a refusal stay granted: advertise them
            self.node.pump()
            self._arm_expiry()
        return dmsc_pb2.AnnounceReply(results=results, lease_ms=lease_ms)

    async def _announce_one(self, request, signed, interface, lease_ms) -> dmsc_pb2.PrefixResult:
        try:
            name = open_claim(signed).name
        except DecodeError as error:
            return rejection("", dmsc_pb2.REJECT_MALFORMED, str(error))
        auth = dmsc_pb2.AuthRequest(claim=signed, sg_node_id=self.config.node_id)
        reply = await asyncio.get_running_loop().run_in_executor(None, self.spa.authenticate, auth)
        if not reply.accepted:
            log.info(
                "%s: %s refused for %s: %s", self.config.node_id, name, request.pod_id, reply.reason
            )
            return rejection(name, reply.code, reply.reason)
        key_problem = pod_key_problem(signed, reply.pod_public_key)
        if key_problem is not None:
            log.warning(
                "%s: %s not leased to %s: %s",
                self.config.node_id,
                name,
                request.pod_id,
                key_problem,
            )
            return rejection(name, dmsc_pb2.REJECT_BAD_SIGNATURE, key_problem)
        # Again: while the SPA was asked, a call over another link may have bound this pod.
        self.binding.check_interface(self.leases, request.pod_id, interface)
        now = self.node.clock()
        lease = Lease(
            name,
            request.pod_id,  # = the claim's pod id (check_announce), verified by the SPA
            interface,
            bytes(request.hardware_address),
            reply.attestation,
            now + lease_ms / 1000,
            bytes(reply.pod_public_key),
        )
        if self.leases.grant(lease) or self._attestation_ageing(name, now):
            self.node.router.announce_prefix(name, self.leases.latest_attestation(name), now)
        self.on_deliveries_changed()
        return dmsc_pb2.PrefixResult(name=name, accepted=True)

    def _attestation_ageing(self, name: str, now: float) -> bool:
        """Whether the advertised attestation is past half its validity. A renewal alone does
        not re-originate the LSA: every renewal would otherwise flood the whole network and
        keep every node's SPF throttle backed off."""
        advertised = self.node.router.own_prefixes.get(name)
        if advertised is None:
            return True
        try:
            body = open_attestation(advertised.attestation)
        except DecodeError:
            return True
        return now >= (body.issued_at + body.expires_at) / 2

    async def Withdraw(self, request, context):
        interface = self.caller_interface(context)
        now = self.node.clock()
        try:
            withdrawn = self.binding.accept_withdraw(self.leases, request, interface, now)
        except Refused as refusal:
            await self._refuse(context, "Withdraw", interface, refusal)
        for name in withdrawn:
            if self.leases.release(name, request.pod_id):
                self.node.router.withdraw_prefix(name, now)
        log.info("%s: pod %s withdrew %s", self.config.node_id, request.pod_id, withdrawn)
        self.on_deliveries_changed()
        self.node.pump()
        self._arm_expiry()
        return dmsc_pb2.WithdrawReply(withdrawn=withdrawn)

    # ------------------------------------------------------------------ refusals

    async def _refuse(
        self, context, method: str, interface: str | None, refusal: Refused
    ) -> NoReturn:
        """Count, log and record a request refused as not the named pod's; end the call."""
        self.counters[f"pod_refused_{refusal.kind}"] += 1
        detail = f"{method} via {interface or 'unknown interface'} refused: {refusal}"
        log.warning("%s: %s", self.config.node_id, detail)
        # The core keeps the node's event log (admin `events`); this is one more kind of event.
        self.node.router.events.append(RouterEvent(self.node.clock(), "pod-refused", detail))
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(refusal))

    def _count_undecodable(self, _method: str, _error: DecodeError) -> None:
        self.counters["pod_rx_undecodable"] += 1  # logged by dmsc.proto.rpc

    # ------------------------------------------------------------------ leases

    def _arm_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        deadline = self.leases.next_expiry()
        if deadline is not None:
            delay = max(0.0, deadline - self.node.clock())
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        now = self.node.clock()
        for name in self.leases.expire(now):
            log.info("%s: lease on %s ran out", self.config.node_id, name)
            self.node.router.withdraw_prefix(name, now)
        self.on_deliveries_changed()
        self.node.pump()
        self._arm_expiry()

    def admin_handlers(self) -> dict:
        def leases(_request) -> list[dict]:
            now = self.node.clock()
            return [
                {
                    "name": lease.name,
                    "pod": lease.pod_id,
                    "interface": lease.interface,
                    "mac": lease.pod_mac.hex(":"),
                    "remaining_s": round(lease.expires_at - now, 3),
                }
                for lease in self.leases
            ]

        return {"leases": leases}
