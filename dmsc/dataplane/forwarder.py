"""The forwarder's I/O loop: one AF_PACKET socket per data interface, one thread.

Each socket is bound to ETH_P_IPV6 with ``PACKET_IGNORE_OUTGOING`` (it never reads back what it
sent). Two receive paths, chosen by :attr:`ForwarderOptions.io`:

- ``"ring"`` (default): a ``TPACKET_V2`` receive ring shared with the kernel through mmap. A
  frame is decided and rewritten in place in the ring and sent with one ``send()``: no receive
  syscall, no copy in Python, and the loop can poll the ring for a short while before sleeping
  (``spin_us``) without a syscall.
- ``"socket"``: ``recv_into`` a preallocated buffer, ``send`` from it. Simpler; slower.

The per-packet work is :func:`dmsc.dataplane.decide.decide`; anything but a plain forward goes
to :meth:`Dataplane.other` (counters, ICMPv6 errors). See docs/dataplane.md for the measurements
behind these choices.

Run one from a JSON config (tests and benchmarks do)::

    python -m dmsc.dataplane.forwarder --config FILE [--stats FILE] [--no-prepare]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import mmap
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from dmsc.dataplane import netutil
from dmsc.dataplane.decide import MALFORMED, Dataplane, decide
from dmsc.dataplane.tables import (
    DROP,
    FORWARD,
    Counters,
    DropReason,
    Masked,
    NextHop,
    Policy,
    Port,
    Route,
    Tables,
    parse_mac,
)
from dmsc.errors import ConfigError, DmscError
from dmsc.lpm import PrefixTable

# <linux/if_packet.h>, <linux/if_ether.h>
SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_IGNORE_OUTGOING = 23
TPACKET_V2 = 1
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
ETH_P_IPV6 = 0x86DD
TPACKET2_NET_OFFSET = 80  # TPACKET_ALIGN(TPACKET2_HDRLEN + 16): where the IPv6 header lands

#: Frames handled per port before the loop moves on to the next port (fairness).
BATCH = 64


@dataclass(frozen=True)
class ForwarderOptions:
    io: str = "ring"  # "ring" | "socket"
    ring_frames: int = 1024  # receive ring size per port (frames of frame_size bytes)
    spin_us: float = 0.0  # keep polling the rings this long after the last packet, then sleep
    icmp_rate: float = 100.0  # ICMPv6 errors per second (token bucket) ...
    icmp_burst: float = 20.0  # ... and burst

    def __post_init__(self) -> None:
        if self.io not in ("ring", "socket"):
            raise ConfigError(f"forwarder option io: {self.io!r}, want 'ring' or 'socket'")
        if self.ring_frames < 8 or self.spin_us < 0 or self.icmp_rate < 0 or self.icmp_burst < 1:
            raise ConfigError(f"forwarder options out of range: {self}")


class _RxRing:
    """A TPACKET_V2 receive ring on ``sock``: frame i starts at i * frame_size."""

    def __init__(self, sock: socket.socket, frames: int, mtu: int) -> None:
        self.frame_size = 1 << max(11, (TPACKET2_NET_OFFSET + mtu + 64 - 1).bit_length())
        block_size = max(self.frame_size, 1 << 16)
        per_block = block_size // self.frame_size
        blocks = -(-frames // per_block)
        self.frames = blocks * per_block
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        request = struct.pack("4I", block_size, blocks, self.frame_size, self.frames)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, request)
        self.map = mmap.mmap(sock.fileno(), block_size * blocks)
        self.view = memoryview(self.map)
        self.u32 = self.view.cast("I")
        self.u16 = self.view.cast("H")
        self.head = 0

    def close(self) -> None:
        try:
            for view in (self.u16, self.u32, self.view):
                view.release()
            self.map.close()
        except BufferError:  # a frame view outlived the loop; the GC unmaps it later
            pass


class _PortIO:
    def __init__(self, port: Port, options: ForwarderOptions) -> None:
        self.port = port
        # Protocol 0 until bind(): a socket opened with ETH_P_IPV6 would already queue frames
        # from every interface, which the loop would take for this port's.
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.ring: _RxRing | None = None
        try:
            self.sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            if options.io == "ring":
                mtu = netutil.interface_mtu(port.name)
                self.ring = _RxRing(self.sock, options.ring_frames, mtu)
            self.sock.bind((port.name, ETH_P_IPV6))  # host order: CPython applies htons
            self.sock.setblocking(False)
        except (OSError, DmscError) as error:
            self.close()
            raise DmscError(f"port {port.name}: cannot open its packet socket: {error}") from None
        self.buffer = bytearray(1 << 16) if self.ring is None else bytearray(0)
        self.kernel_drops = 0  # frames the kernel dropped because we were too slow

    def read_kernel_drops(self) -> int:
        """PACKET_STATISTICS (reading resets the kernel's counts, so accumulate)."""
        _, drops = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        self.kernel_drops += drops
        return self.kernel_drops

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()
        self.sock.close()


class Forwarder:
    """Forward between the data interfaces of ``tables.ports``: ``start()``, ``stop()``."""

    def __init__(self, tables: Tables, options: ForwarderOptions | None = None) -> None:
        self.options = options or ForwarderOptions()
        self.dataplane = Dataplane(tables, self.options.icmp_rate, self.options.icmp_burst)
        self._io: list[_PortIO] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._wake_r, self._wake_w = -1, -1
        self.error: BaseException | None = None  # what ended the loop, if not stop()
        self.error_text = ""  # its traceback

    @property
    def counters(self) -> Counters:
        return self.dataplane.counters

    def set_tables(self, tables: Tables) -> None:
        """Swap the tables: the loop picks them up at its next batch."""
        self.dataplane.set_tables(tables)

    def start(self) -> None:
        if self._thread is not None:
            raise DmscError("forwarder already started")
        try:
            for port in self.dataplane.compiled.tables.ports:
                self._io.append(_PortIO(port, self.options))
        except BaseException:
            self._close()
            raise
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="dmsc-forwarder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop (it returns within one poll wake-up) and close the sockets."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping = True
            os.write(self._wake_w, b"x")
            thread.join(timeout)
            if thread.is_alive():
                raise DmscError("forwarder loop did not stop")
        self._close()

    def _close(self) -> None:
        for io in self._io:
            io.close()
        self._io = []
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def kernel_drops(self) -> dict[str, int]:
        """Per port: frames the kernel dropped before the forwarder read them."""
        return {io.port.name: io.read_kernel_drops() for io in self._io}

    def _run(self) -> None:
        try:
            if self.options.io == "ring":
                self._run_ring()
            else:
                self._run_socket()
        except BaseException as error:  # kept for the owner to report; the thread just ends
            self.error_text = traceback.format_exc()
            self.error = error.with_traceback(None)  # the frames hold views into the rings

    def _poller(self) -> select.poll:
        poller = select.poll()
        for io in self._io:
            poller.register(io.sock, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        return poller

    def _run_ring(self) -> None:
        # The hot loop is deliberately one flat function: locals instead of attributes, no
        # per-packet helper calls besides decide() (each saved lookup is a few % of throughput).
        dataplane, other = self.dataplane, self.dataplane.other
        ios = self._io
        sends = [io.sock.send for io in ios]
        counters = dataplane.counters.ports
        rings = [(i, io.ring, counters[i]) for i, io in enumerate(ios)]
        poll = self._poller().poll
        spin = self.options.spin_us * 1e-6
        clock = time.perf_counter
        last_busy = 0.0
        while not self._stopping:
            tables = dataplane.compiled
            busy = False
            for in_port, ring, rx in rings:
                u32, u16, view, size, frames = (
                    ring.u32,
                    ring.u16,
                    ring.view,
                    ring.frame_size,
                    ring.frames,
                )
                head = ring.head
                handled = 0
                rx_bytes = 0
                while handled < BATCH:
                    at = head * size
                    if not u32[at >> 2] & TP_STATUS_USER:
                        break
                    length = u32[(at + 8) >> 2]  # tp_snaplen
                    start = at + u16[(at + 12) >> 1]  # tp_mac
                    frame = view[start : start + length]
                    if u32[(at + 4) >> 2] != length:  # tp_len: cut by the ring, not forwardable
                        action = MALFORMED
                    else:
                        action = decide(frame, in_port, tables)
                    if action[0] == FORWARD:
                        out = action[1]
                        frame[0:12] = action[2]
                        frame[21] -= 1
                        try:
                            sends[out](frame)
                        except OSError:
                            counters[out].drops[DropReason.TX_ERROR] += 1
                        else:
                            tx = counters[out]
                            tx.tx_packets += 1
                            tx.tx_bytes += length
                            stats = action[3]
                            stats[0] += 1
                            stats[1] += length
                    else:
                        reply = other(action, frame, in_port, time.monotonic())
                        if reply is not None:
                            self._send_reply(reply)
                    frame.release()
                    u32[at >> 2] = TP_STATUS_KERNEL
                    head = head + 1 if head + 1 < frames else 0
                    handled += 1
                    rx_bytes += length
                if handled:
                    ring.head = head
                    rx.rx_packets += handled
                    rx.rx_bytes += rx_bytes
                    busy = True
            if busy:
                if spin:
                    last_busy = clock()
            elif not spin or clock() - last_busy > spin:
                poll(1000)

    def _run_socket(self) -> None:
        # Flat for speed, as _run_ring.
        dataplane, other = self.dataplane, self.dataplane.other
        ios = self._io
        sends = [io.sock.send for io in ios]
        counters = dataplane.counters.ports
        ports = [
            (i, io.sock.recv_into, io.buffer, memoryview(io.buffer)) for i, io in enumerate(ios)
        ]
        poll = self._poller().poll
        spin = self.options.spin_us * 1e-6
        clock = time.perf_counter
        last_busy = 0.0
        while not self._stopping:
            tables = dataplane.compiled
            busy = False
            for in_port, receive, buffer, view in ports:
                rx = counters[in_port]
                for _ in range(BATCH):
                    try:
                        length = receive(buffer)
                    except BlockingIOError:
                        break
                    busy = True
                    rx.rx_packets += 1
                    rx.rx_bytes += length
                    frame = view[:length]
                    action = decide(frame, in_port, tables)
                    if action[0] == FORWARD:
                        out = action[1]
                        buffer[0:12] = action[2]
                        buffer[21] -= 1
                        try:
                            sends[out](frame)
                        except OSError:
                            counters[out].drops[DropReason.TX_ERROR] += 1
                        else:
                            tx = counters[out]
                            tx.tx_packets += 1
                            tx.tx_bytes += length
                            stats = action[3]
                            stats[0] += 1
                            stats[1] += length
                    else:
                        reply = other(action, frame, in_port, time.monotonic())
                        if reply is not None:
                            self._send_reply(reply)
            if busy:
                if spin:
                    last_busy = clock()
            elif not spin or clock() - last_busy > spin:
                poll(1000)

    def send_local(self, packet: bytes) -> bool:
        """Send an IPv6 packet of the node's own (a probe) the way the forwarder would route
        it. Safe from another thread: the tables are read once, the socket send is atomic.
        False when no route or policy takes it, or the send failed (counted)."""
        frame = self.dataplane.originate(packet)
        if frame is None or not self._io:
            return False
        self._send_reply(frame)
        return True

    def _send_reply(self, reply: tuple[int, bytes]) -> None:
        port, data = reply
        try:
            self._io[port].sock.send(data)
        except OSError:
            self.dataplane.counters.ports[port].drops[DropReason.TX_ERROR] += 1

    def stats(self) -> dict[str, Any]:
        """A JSON-able snapshot of every counter."""
        counters = self.dataplane.counters
        tables = self.dataplane.compiled.tables
        return {
            "ports": {
                port.name: {**asdict(c), "drops": c.drop_counts()}
                for port, c in zip(tables.ports, counters.ports, strict=False)
            },
            "kernel_drops": self.kernel_drops() if self._io else {},
            "routes": {
                str(p): {"packets": s[0], "bytes": s[1]} for p, s in counters.routes.items()
            },
            "policies": [
                {"cookie": x.cookie, "priority": x.priority, "packets": s[0], "bytes": s[1]}
                for x in tables.policies
                for s in [counters.policies[x.key]]
            ],
        }


# --- configuration (JSON) ---------------------------------------------------------------------


def _fields(data: Any, where: str, required: Sequence[str], optional: Sequence[str]) -> dict:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
    unknown = set(data) - set(required) - set(optional)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
    missing = [key for key in required if key not in data]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
    return data


def _hop(data: Any, where: str, port_index: dict[str, int]) -> NextHop:
    _fields(data, where, ("port", "mac"), ())
    if data["port"] not in port_index:
        raise ConfigError(f"{where}: unknown port {data['port']!r}")
    return NextHop(port_index[data["port"]], parse_mac(data["mac"]))


def _masked(data: Any, where: str) -> Masked | None:
    if data is None:
        return None
    try:
        if isinstance(data, str):
            return Masked.prefix(data)
        _fields(data, where, ("value", "mask"), ())
        return Masked(
            int(ipaddress.IPv6Address(data["value"])), int(ipaddress.IPv6Address(data["mask"]))
        )
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None


def _ports(data: list) -> tuple[Port, ...]:
    ports = []
    for index, item in enumerate(data):
        _fields(item, f"ports[{index}]", ("name",), ("mac",))
        mac = item.get("mac")
        ports.append(
            Port(
                index, item["name"], parse_mac(mac) if mac else netutil.interface_mac(item["name"])
            )
        )
    return tuple(ports)


def _routes(data: list, port_index: dict[str, int]) -> PrefixTable[Route]:
    routes: PrefixTable[Route] = PrefixTable()
    for index, item in enumerate(data):
        where = f"routes[{index}]"
        _fields(item, where, ("prefix", "next_hops"), ("label", "local"))
        try:
            prefix = ipaddress.IPv6Network(item["prefix"])
        except ValueError as error:
            raise ConfigError(f"{where}.prefix: {error}") from None
        hops = tuple(
            _hop(hop, f"{where}.next_hops[{i}]", port_index)
            for i, hop in enumerate(item["next_hops"])
        )
        routes.insert(
            prefix,
            Route(prefix, item.get("label", str(prefix)), hops, bool(item.get("local", False))),
        )
    return routes


def _policies(data: list, port_index: dict[str, int]) -> tuple[Policy, ...]:
    policies = []
    for index, item in enumerate(data):
        where = f"policies[{index}]"
        _fields(item, where, ("priority", "action"), ("cookie", "dst", "src"))
        action = item["action"]
        hop = DROP if action == "drop" else _hop(action, f"{where}.action", port_index)
        dst, src = (
            _masked(item.get("dst"), f"{where}.dst"),
            _masked(item.get("src"), f"{where}.src"),
        )
        policies.append(Policy(int(item["priority"]), int(item.get("cookie", 0)), dst, src, hop))
    return tuple(policies)


@dataclass(frozen=True)
class ForwarderConfig:
    """A parsed config file: ``prepare`` -> forwarding off and offloads off on start, ``steer``
    -> receive packet steering too (:func:`netutil.prepare_node`)."""

    tables: Tables
    options: ForwarderOptions
    prepare: bool = True
    steer: bool = False


def config_from_json(data: Any) -> ForwarderConfig:
    """The config from parsed JSON; ConfigError names the bad key."""
    _fields(
        data,
        "config",
        ("ports",),
        ("routes", "policies", "own_addresses", "icmp_source", "options", "prepare", "steer"),
    )
    ports = _ports(data["ports"])
    port_index = {port.name: port.index for port in ports}
    option_names = {f.name for f in fields(ForwarderOptions)}
    options = _fields(data.get("options", {}), "options", (), tuple(option_names))
    try:
        own = frozenset(ipaddress.IPv6Address(a) for a in data.get("own_addresses", ()))
        source = data.get("icmp_source")
        tables = Tables(
            ports=ports,
            routes=_routes(data.get("routes", []), port_index),
            policies=_policies(data.get("policies", []), port_index),
            own_addresses=own,
            icmp_source=ipaddress.IPv6Address(source) if source else None,
        )
    except ValueError as error:
        raise ConfigError(f"config: {error}") from None
    return ForwarderConfig(
        tables,
        ForwarderOptions(**options),
        bool(data.get("prepare", True)),
        bool(data.get("steer", False)),
    )


def load_config(path: Path) -> ForwarderConfig:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: {error}") from None
    try:
        return config_from_json(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def _write_stats(forwarder: Forwarder, path: Path | None) -> None:
    if path is not None:
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_text(json.dumps(forwarder.stats(), indent=1))
        temporary.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dmsc.dataplane.forwarder", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", type=Path, required=True, help="JSON tables and options")
    parser.add_argument(
        "--stats", type=Path, help="write counters here as JSON on SIGUSR1 and at exit"
    )
    parser.add_argument(
        "--no-prepare", action="store_true", help="leave sysctls and offloads alone"
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if config.prepare and not args.no_prepare:
            netutil.prepare_node([port.name for port in config.tables.ports], config.steer)
        forwarder = Forwarder(config.tables, config.options)
        forwarder.start()
    except DmscError as error:
        print(f"forwarder: {error}", file=sys.stderr)
        return 2
    # Handlers only set flags: an Event.set() in a handler can deadlock against Event.wait().
    flags = {"stop": False, "dump": False}
    signal.signal(signal.SIGTERM, lambda *_: flags.update(stop=True))
    signal.signal(signal.SIGINT, lambda *_: flags.update(stop=True))
    signal.signal(signal.SIGUSR1, lambda *_: flags.update(dump=True))
    print("forwarder ready", flush=True)
    try:
        while not flags["stop"]:
            time.sleep(0.05)
            if forwarder.error is not None:
                print(f"forwarder: loop failed: {forwarder.error_text}", file=sys.stderr)
                return 1
            if flags["dump"]:
                flags["dump"] = False
                _write_stats(forwarder, args.stats)
    finally:
        _write_stats(forwarder, args.stats)
        forwarder.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
