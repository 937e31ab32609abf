"""The pod runtime: hosts service instances, announces them to its SG, renews, withdraws on exit.

For each instance (``/B/4``) the pod owns the instance address and its service's anycast
address (``/B``), configured on its link to the SG; its default route goes via the SG
(``fe80::1``) with the first instance address as source, so replies come back to this pod and
not to the nearest holder of an anycast address. Services: UDP and TCP echo (port 7), the
request/response service on port 80 over HTTP and UDP (:mod:`dmsc.nodes.services`: it says which
pod and address answered, and calls the services the call graph names), and a STAMP reflector
(UDP 862) that answers its SG's probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import grpc

from dmsc.errors import DecodeError
from dmsc.measurement.stamp import STAMP_PORT, Reflector
from dmsc.names import ServiceName, name_address
from dmsc.nodes.admin import serve_admin
from dmsc.nodes.config import GATEWAY_LINK_LOCAL, POD_GATEWAY_PORT, PodConfig
from dmsc.nodes.linkio import SO_TIMESTAMPNS, hardware_address, kernel_receive_time
from dmsc.nodes.services import Answerer, HopLog, HttpService, UdpService, owned_addresses
from dmsc.proto import dmsc_pb2, dmsc_pb2_grpc
from dmsc.spa.claims import sign_claim, sign_withdrawal
from dmsc.spa.keys import demo_private_key, load_private_key

log = logging.getLogger(__name__)
ECHO_PORT = 7
#: gRPC backs off reconnection up to 2 minutes by default; a restarted SG should hear from its
#: pods within about a second, well inside their lease.
RECONNECT_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def run_ip(*arguments: str) -> None:
    command = ["ip", *arguments]
    log.debug("running %s", command)
    result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")


def owned_names(config: PodConfig) -> list[str]:
    """Instances first (the first is the pod's source address), then their services."""
    instances = [i.name for i in config.instances]
    services = sorted({str(ServiceName.parse(n).parent) for n in instances})
    return instances + [s for s in services if s not in instances]


def configure_addresses(config: PodConfig) -> None:
    instances = {i.name for i in config.instances}
    for name in owned_names(config):
        # anycast service addresses are never preferred as a source address
        lifetime = [] if name in instances else ["preferred_lft", "0"]
        address = f"{name_address(name)}/128"
        run_ip("-6", "addr", "replace", address, "dev", config.interface, "nodad", *lifetime)
    source = str(name_address(config.instances[0].name))
    run_ip(
        "-6",
        "route",
        "replace",
        "default",
        "via",
        GATEWAY_LINK_LOCAL,
        "dev",
        config.interface,
        "src",
        source,
    )


class EchoProtocol(asyncio.DatagramProtocol):
    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, address) -> None:
        self.transport.sendto(data, address)


async def tcp_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


class StampReflectorEndpoint:
    """The pod's STAMP reflector (UDP 862, RFC 8762): replies from the address probed, and
    reports the hop limit the probe arrived with and the kernel's receive time."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.reflector = Reflector()
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        self.sock.setblocking(False)
        self.sock.bind(("::", STAMP_PORT))

    def start(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        loop.add_reader(self.sock.fileno(), self._on_readable)

        def close() -> None:
            loop.remove_reader(self.sock.fileno())
            self.sock.close()

        return close

    def _on_readable(self) -> None:
        while True:
            try:
                data, ancillary, _flags, peer = self.sock.recvmsg(2048, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.warning("STAMP reflector: %s", error)
                return
            hop_limit, pktinfo = 255, None
            for level, kind, value in ancillary:
                if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT:
                    hop_limit = int.from_bytes(value[:4], sys.byteorder)
                elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                    pktinfo = value
            received_at = kernel_receive_time(ancillary)
            try:
                reply = self.reflector.reflect(
                    data, received_at or self.clock(), hop_limit, sent_at=self.clock()
                )
            except DecodeError as error:  # counted by the reflector; the pod carries on
                log.warning("STAMP reflector: bad test packet from %s: %s", peer[0], error)
                continue
            extra = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo)] if pktinfo else []
            with contextlib.suppress(OSError):
                self.sock.sendmsg([reply], extra, 0, peer)


class Pod:
    def __init__(self, config: PodConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.key = (
            demo_private_key(config.key_label)
            if config.key_label
            else load_private_key(config.key_file)
        )
        self.channel: grpc.aio.Channel | None = None  # made in start(), on the running loop
        self.results: dict[str, dmsc_pb2.PrefixResult] = {}
        self.last_renewal: float | None = None
        self._cleanups: list[Callable[[], object]] = []
        self._stop = asyncio.Event()

    async def run(self) -> None:
        try:
            await self.start()
            await self._renew_until_stopped()
        finally:
            await self.close()

    def request_stop(self) -> None:
        self._stop.set()

    async def start(self) -> None:
        target = f"ipv6:[{GATEWAY_LINK_LOCAL}%25{self.config.interface}]:{POD_GATEWAY_PORT}"
        self.channel = grpc.aio.insecure_channel(target, options=RECONNECT_OPTIONS)
        self.gateway = dmsc_pb2_grpc.PodGatewayStub(self.channel)
        configure_addresses(self.config)
        await self._start_services()
        if self.config.admin_socket:
            admin = await serve_admin(self.config.admin_socket, self.admin_handlers())
            self._cleanups.append(admin.close)

    async def close(self) -> None:
        if self.channel is not None:
            await self._withdraw_all()
            await self.channel.close()
        while self._cleanups:
            self._cleanups.pop()()

    async def _withdraw_all(self) -> None:
        if not any(result.accepted for result in self.results.values()):
            return
        try:  # no names: everything the pod holds there, even if its view of that drifted
            await self.gateway.Withdraw(self.withdrawal([]), timeout=1.0)
        except grpc.aio.AioRpcError as error:
            log.warning("%s: withdraw failed: %s", self.config.pod_id, error.details())

    def withdrawal(self, names: list[str]) -> dmsc_pb2.WithdrawRequest:
        """A Withdraw of ``names`` (all it holds if empty), signed like the pod's claims: the SG
        takes a Withdraw only from the pod that holds the lease."""
        return sign_withdrawal(
            self.key,
            self.config.pod_id,
            names,
            self.config.gateway_node_id,
            self.clock(),
            os.urandom(16),
        )

    async def _start_services(self) -> None:
        loop = asyncio.get_running_loop()
        self.stamp = StampReflectorEndpoint(self.clock)
        self._cleanups.append(self.stamp.start(loop))
        wanted = {s for i in self.config.instances for s in i.services}
        if "udp-echo" in wanted:  # one socket per address: replies leave from the address asked
            for name in owned_names(self.config):
                transport, _ = await loop.create_datagram_endpoint(
                    EchoProtocol, local_addr=(str(name_address(name)), ECHO_PORT)
                )
                self._cleanups.append(transport.close)
        if "tcp-echo" in wanted:
            server = await asyncio.start_server(tcp_echo, "::", ECHO_PORT)
            self._cleanups.append(server.close)
        if "http" in wanted:  # the request/response service: HTTP, and UDP on the same port
            hops = HopLog(self.config.hop_log)
            self._cleanups.append(hops.close)
            answerer = Answerer(self.config.pod_id, owned_addresses(owned_names(self.config)),
                                self.config.calls, hops, self.clock)  # fmt: skip
            self._cleanups.append(HttpService(answerer).start())
            self._cleanups.append(UdpService(answerer).start())

    async def announce(self) -> dmsc_pb2.AnnounceReply:
        now = self.clock()
        names = owned_names(self.config) + list(self.config.extra_claims)
        claims = [
            sign_claim(self.key, name, self.config.pod_id, self.config.gateway_node_id, now)
            for name in names
        ]
        request = dmsc_pb2.AnnounceRequest(
            pod_id=self.config.pod_id,
            claims=claims,
            lease_ms=self.config.lease_ms,
            hardware_address=hardware_address(self.config.interface),
        )
        reply = await self.gateway.Announce(request, timeout=3.0)
        for result in reply.results:
            if not result.accepted and self.results.get(result.name) != result:
                log.warning("%s: %s refused: %s", self.config.pod_id, result.name, result.reason)
            self.results[result.name] = result
        self.last_renewal = now
        return reply

    async def _renew_until_stopped(self) -> None:
        """Renew at a third of the lease, so one lost renewal costs nothing."""
        while not self._stop.is_set():
            interval = self.config.lease_ms / 3000
            try:
                reply = await self.announce()
                interval = reply.lease_ms / 3000 or interval
            except grpc.aio.AioRpcError as error:
                log.warning("%s: announce failed: %s", self.config.pod_id, error.details())
                # An SG that is unreachable may be back any moment; one that refused will not
                # change its mind sooner for being asked more often.
                if error.code() != grpc.StatusCode.PERMISSION_DENIED:
                    interval = min(interval, 0.5)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=interval)

    def admin_handlers(self) -> dict:
        def status(_request) -> dict:
            return {
                "pod": self.config.pod_id,
                "last_renewal": self.last_renewal,
                "stamp": dict(self.stamp.reflector.counters),
                "prefixes": {
                    n: {"accepted": r.accepted, "reason": r.reason, "address": str(name_address(n))}
                    for n, r in self.results.items()
                },
            }

        return {"status": status}
