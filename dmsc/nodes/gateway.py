"""The SG's part beyond routing: pods announce prefixes (type 1) and the SPA vouches (type 3).

A pod calls ``PodGateway.Announce`` over its link to the SG (the SG is ``fe80::1`` there). The SG
asks its SPA about each signed claim; what the SPA accepts is leased to the pod and advertised
in the SG's LSA with the SPA's attestation; what it rejects is returned with the SPA's reason.
A lease that is not renewed runs out and the prefix is withdrawn everywhere.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from urllib.parse import unquote

import grpc

from dmsc.errors import DecodeError
from dmsc.nodes.config import POD_GATEWAY_PORT
from dmsc.nodes.leases import Lease, LeaseTable
from dmsc.proto import dmsc_pb2, dmsc_pb2_grpc
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


def rejection(name: str, code: int, reason: str) -> dmsc_pb2.PrefixResult:
    return dmsc_pb2.PrefixResult(name=name, accepted=False, code=code, reason=reason)


class Gateway(dmsc_pb2_grpc.PodGatewayServicer):
    """An extension of :class:`RouterNode` (role ``sg``)."""

    def __init__(self, node) -> None:
        self.node = node
        self.config = node.config
        self.leases = LeaseTable()
        self.spa = SpaClient(self.config.spa_target)
        self.server: grpc.aio.Server | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self.on_deliveries_changed = lambda: None  # set by the forwarder extension

    async def start(self) -> None:
        self.server = grpc.aio.server()
        dmsc_pb2_grpc.add_PodGatewayServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"[::]:{POD_GATEWAY_PORT}")
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
        interface = peer_interface(context.peer())
        lease_ms = min(request.lease_ms or self.config.lease_max_ms, self.config.lease_max_ms)
        results = []
        for signed in request.claims:
            results.append(await self._announce_one(request, signed, interface, lease_ms))
        self.node.pump()
        self._arm_expiry()
        return dmsc_pb2.AnnounceReply(results=results, lease_ms=lease_ms)

    async def _announce_one(self, request, signed, interface, lease_ms) -> dmsc_pb2.PrefixResult:
        try:
            name = open_claim(signed).name
        except DecodeError as error:
            return rejection("", dmsc_pb2.REJECT_MALFORMED, str(error))
        if interface not in self.config.pod_interfaces:
            return rejection(
                name,
                dmsc_pb2.REJECT_MALFORMED,
                f"{self.config.node_id}: announcement did not come over a pod link",
            )
        auth = dmsc_pb2.AuthRequest(claim=signed, sg_node_id=self.config.node_id)
        reply = await asyncio.get_running_loop().run_in_executor(None, self.spa.authenticate, auth)
        if not reply.accepted:
            log.info(
                "%s: %s refused for %s: %s", self.config.node_id, name, request.pod_id, reply.reason
            )
            return rejection(name, reply.code, reply.reason)
        now = self.node.clock()
        lease = Lease(
            name,
            request.pod_id,
            interface,
            bytes(request.hardware_address),
            reply.attestation,
            now + lease_ms / 1000,
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
        now = self.node.clock()
        withdrawn = [
            name
            for name in request.names or self.leases.names_of(request.pod_id)
            if name in self.leases.names_of(request.pod_id)
        ]
        for name in withdrawn:
            if self.leases.release(name, request.pod_id):
                self.node.router.withdraw_prefix(name, now)
        self.on_deliveries_changed()
        self.node.pump()
        return dmsc_pb2.WithdrawReply(withdrawn=withdrawn)

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
