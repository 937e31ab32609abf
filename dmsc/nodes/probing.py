"""The SG's prober: STAMP probes to every instance of the services its pods use.

A thin shell around :class:`dmsc.measurement.stamp.StampSender` and
:class:`dmsc.measurement.estimators.PathEstimator` (docs/scheduling.md §1). The instances are
read from the link-state database (every name below a probed service that no other name
extends). Each target gets its own UDP socket bound to the SG's node address, so replies are
told apart by port. Probes are sent *through the forwarder* (``Forwarder.send_local``), routed
like traffic, so they measure the forwarders' path; replies are addressed to the node, which the
forwarder leaves to the kernel, where the socket reads them with the kernel's receive time.
Telemetry goes to the SCSC through the node's OpenFlow link every ``telemetry_interval_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from dmsc.controllers.decision import Topology
from dmsc.dataplane.icmp import checksum
from dmsc.dataplane.netutil import run
from dmsc.errors import DecodeError
from dmsc.measurement.estimators import PathEstimator, PathQuality
from dmsc.measurement.stamp import STAMP_PORT, StampSender
from dmsc.names import name_address, node_address
from dmsc.nodes.linkio import SO_TIMESTAMPNS, kernel_receive_time
from dmsc.proto import dmsc_pb2

log = logging.getLogger(__name__)
UDP = 17
PROBE_HOP_LIMIT = 255  # the reflector reports what arrives: the path length is 255 - that


def udp6_packet(source: bytes, destination: bytes, sport: int, dport: int, payload: bytes,
                hop_limit: int = PROBE_HOP_LIMIT) -> bytes:  # fmt: skip
    """An IPv6 packet carrying one UDP datagram, with its (mandatory) checksum."""
    length = 8 + len(payload)
    pseudo = source + destination + struct.pack("!I3xB", length, UDP)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    total = checksum(pseudo + header + payload) or 0xFFFF  # 0 means "none", forbidden in IPv6
    udp = struct.pack("!HHHH", sport, dport, length, total) + payload
    return struct.pack("!IHBB", 6 << 28, length, UDP, hop_limit) + source + destination + udp


def instances_to_probe(lsas, services: tuple[str, ...]) -> list[str]:
    """Every instance of ``services`` that some SG advertises, sorted."""
    topology = Topology.from_lsas(lsas)
    return sorted({i for service in services for i in topology.instances_of(service)})


@dataclass
class Target:
    name: str
    sock: socket.socket
    sender: StampSender
    estimator: PathEstimator
    answered: bool = False  # losses count from the first reply on


class Prober:
    """An SG extension, after :class:`Forwarding` and :class:`OpenFlowLink`."""

    def __init__(self, node, forwarding, openflow, clock: Callable[[], float]) -> None:
        self.node = node
        self.forwarding = forwarding
        self.openflow = openflow
        self.clock = clock
        config = node.config
        self.services = config.probe_services
        self.interval = config.probe_interval_ms / 1000
        self.timeout = config.probe_timeout_ms / 1000
        self.window = config.probe_window
        self.telemetry_interval = config.telemetry_interval_ms / 1000
        self.address = node_address(config.node_id)
        self.targets: dict[str, Target] = {}
        self.counters = {"sent": 0, "unrouted": 0, "replies": 0, "bad_replies": 0,
                         "lost_before_first_reply": 0, "telemetry_sent": 0,
                         "telemetry_dropped": 0}  # fmt: skip
        self._targets_stale = True
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._address_added = False

    async def start(self) -> None:
        # Replies come to the node address; the kernel takes them only if it owns it.
        run(["ip", "-6", "addr", "replace", f"{self.address}/128", "dev", "lo", "nodad"])
        self._address_added = True
        self._task = asyncio.create_task(self._run(), name="prober")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for target in list(self.targets.values()):
            self._close(target)
        if self._address_added:
            run(["ip", "-6", "addr", "del", f"{self.address}/128", "dev", "lo"], check=False)

    def fib_changed(self) -> None:
        self._targets_stale = True
        self._wake.set()

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        next_telemetry = self.clock() + self.telemetry_interval
        while True:
            now = self.clock()
            try:
                if self._targets_stale:
                    self._refresh_targets(now)
                for target in self.targets.values():
                    self._probe(target, now)
                if now >= next_telemetry:
                    self._send_telemetry(now)
                    next_telemetry = now + self.telemetry_interval
            except Exception:  # a bug here must not take the SG down: log, carry on
                log.exception("%s: prober step failed", self.node.config.node_id)
            deadlines = [next_telemetry, *(t.sender.get_timer() for t in self.targets.values())]
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, min(deadlines) - self.clock()))

    def _refresh_targets(self, now: float) -> None:
        self._targets_stale = False
        lsas = [entry.lsa for entry in self.node.router.lsdb.live()]
        wanted = set(instances_to_probe(lsas, self.services))
        for name in set(self.targets) - wanted:
            self._close(self.targets.pop(name))
            log.info("%s: no longer probing %s (withdrawn)", self.node.config.node_id, name)
        # Start probing a target once it is routed: a probe sent before convergence is not
        # a loss of the path. Once started, it goes on: losses on a broken path are news.
        routed = {entry.label for _, entry in self.node.router.fib.items()}
        for name in sorted((wanted & routed) - set(self.targets)):
            self.targets[name] = self._open(name, now)
            log.info("%s: probing %s", self.node.config.node_id, name)

    def _open(self, name: str, now: float) -> Target:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setblocking(False)
        sock.bind((str(self.address), 0))
        target = Target(name, sock, StampSender(name, self.interval, now, self.timeout),
                        PathEstimator(self.window))  # fmt: skip
        loop.add_reader(sock.fileno(), self._on_replies, target)
        return target

    def _close(self, target: Target) -> None:
        with contextlib.suppress(RuntimeError, ValueError):
            asyncio.get_running_loop().remove_reader(target.sock.fileno())
        target.sock.close()

    def _probe(self, target: Target, now: float) -> None:
        for _ in target.sender.expire(now):
            if target.answered:
                target.estimator.add_loss(now)
            else:  # the way back may not be routed yet (convergence): not a loss of the path
                self.counters["lost_before_first_reply"] += 1
        forwarder = self.forwarding.forwarder
        for payload in target.sender.packets_due(now):
            packet = udp6_packet(self.address.packed, name_address(target.name).packed,
                                 target.sock.getsockname()[1], STAMP_PORT, payload)  # fmt: skip
            if forwarder is not None and forwarder.send_local(packet):
                self.counters["sent"] += 1
            else:
                self.counters["unrouted"] += 1  # no route yet: expires as a loss, as it should

    def _on_replies(self, target: Target) -> None:
        while True:
            try:
                data, ancillary, _flags, _peer = target.sock.recvmsg(2048, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.warning("%s: probe socket of %s: %s", self.node.config.node_id,
                            target.name, error)  # fmt: skip
                return
            received_at = kernel_receive_time(ancillary) or self.clock()
            try:
                result = target.sender.receive(data, received_at)
            except DecodeError as error:
                self.counters["bad_replies"] += 1
                log.warning("%s: bad reply from %s: %s", self.node.config.node_id,
                            target.name, error)  # fmt: skip
                continue
            if result is not None:
                self.counters["replies"] += 1
                target.answered = True
                target.estimator.add_reply(result)

    # ------------------------------------------------------------------ telemetry

    def qualities(self) -> dict[str, PathQuality]:
        snapshots = {name: t.estimator.snapshot() for name, t in self.targets.items()}
        return {name: q for name, q in snapshots.items() if q is not None}

    def _send_telemetry(self, now: float) -> None:
        telemetry = dmsc_pb2.Telemetry()
        for name, quality in self.qualities().items():
            if quality.samples < self.window:
                continue  # one lost probe out of one is not "100% loss": wait for a window
            sample = quality.to_qos_sample(self.node.config.node_id, name)
            sample.timestamp = now
            telemetry.samples.append(sample)
        if not telemetry.samples:
            return
        if self.openflow.send_telemetry(telemetry):
            self.counters["telemetry_sent"] += 1
        else:
            self.counters["telemetry_dropped"] += 1

    def admin_handlers(self) -> dict:
        def telemetry(_request) -> dict:
            return {
                "counters": dict(self.counters),
                "targets": {
                    name: {**_quality_row(target.estimator.snapshot()),
                           "address": str(name_address(name)),
                           **{f"stamp_{k}": v for k, v in target.sender.counters.items()}}
                    for name, target in sorted(self.targets.items())
                },
            }  # fmt: skip

        return {"telemetry": telemetry}


def _quality_row(quality: PathQuality | None) -> dict:
    if quality is None:
        return {"delay_ms": None, "jitter_ms": None, "loss": None, "samples": 0}
    return {
        "delay_ms": _rounded(quality.delay_ms),
        "jitter_ms": _rounded(quality.jitter_ms),
        "rtt_ms": _rounded(quality.rtt_ms),
        "loss": quality.loss,
        "samples": quality.samples,
        "last_update": quality.last_update,
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 3)
