"""Print DMSC signalling from a capture file or a live interface, one block per message.

Every UDP datagram to or from port 6464 is a DMSC link-state message (type 2); it is shown
decoded by the nodes' own decoder, with its time (since the first frame of a file, since the
start of a live capture) and the link it was seen on. A datagram a node would drop is shown
as malformed, with the reason, and counted. With ``show_all`` every other frame gets one line
(neighbor discovery, gRPC signalling of types 1 and 3, OpenFlow of type 4, data-plane traffic),
so the data plane is visible too.

The printing logic takes frames (scapy packets) and writes text; reading a file and sniffing an
interface are two thin sources of frames around it.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from scapy.error import Scapy_Exception, log_runtime
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet
from scapy.sendrecv import sniff
from scapy.utils import PcapNgWriter, PcapReader

from dmsc.errors import ConfigError, DecodeError
from dmsc.nodes.config import POD_GATEWAY_PORT, SPA_PORT
from dmsc.proto.codec import LINK_STATE_UDP_PORT
from dmsc.wire.scapy_layers import DMSC, Decoded, decode_datagram, describe

#: Capture filter of live captures without ``show_all``: only type 2 signalling.
DMSC_FILTER = f"udp port {LINK_STATE_UDP_PORT}"
OPENFLOW_PORT = 6653  # IANA's OpenFlow port, where os-ken listens by default
#: Ports named in the one-line listing of other frames.
KNOWN_PORTS = {
    LINK_STATE_UDP_PORT: "DMSC link-state (type 2)",
    POD_GATEWAY_PORT: "gRPC pod -> SG (type 1)",
    SPA_PORT: "gRPC SG -> SPA (type 3)",
    OPENFLOW_PORT: "OpenFlow (type 4)",
}
BODY_INDENT = " " * 14  # lines under a message's header line up after the timestamp


@dataclass(frozen=True)
class WireMessage:
    """One DMSC datagram as seen on the wire, decoded or not."""

    time: float
    interface: str | None  # where it was captured, when the file says
    source: str
    destination: str
    decoded: Decoded
    link: str | None = None  # recorded simulations name both ends: "sr1 eth0 -> sg1 eth0"

    @property
    def kind(self) -> str:
        """``hello``, ``update``, ``ack`` or ``malformed``."""
        message = self.decoded.message
        return message.WhichOneof("body") if message is not None else "malformed"


def wire_message(frame: Packet) -> WireMessage | None:
    """The DMSC message in ``frame``; None when the frame carries none."""
    datagram = _dmsc_datagram(frame)
    if datagram is None:
        return None
    network = frame.getlayer(IPv6) or frame.getlayer(IP)
    comments = getattr(frame, "comments", None) or []
    return WireMessage(
        time=float(frame.time),
        interface=getattr(frame, "sniffed_on", None),
        source=str(network.src) if network else "?",
        destination=str(network.dst) if network else "?",
        decoded=decode_datagram(datagram),
        link=comments[0].decode("utf-8", "replace") if comments else None,
    )


def _dmsc_datagram(frame: Packet) -> bytes | None:
    """The UDP payload of a datagram to or from port 6464 (scapy adds no layer when empty)."""
    if DMSC in frame:
        return frame[DMSC].message or b""
    udp = frame.getlayer(UDP)
    if udp is not None and LINK_STATE_UDP_PORT in (udp.sport, udp.dport):
        return bytes(udp.payload)
    return None


# ---------------------------------------------------------------------- formatting


def format_message(message: WireMessage, start: float) -> str:
    """A block: time, capture interface and addresses, then the decoded message indented."""
    where = f"{message.interface}  " if message.interface else ""
    link = f"  ({message.link})" if message.link else ""
    header = f"{message.time - start:12.6f}  {where}{message.source} -> {message.destination}"
    if message.decoded.message is None:
        body = [f"MALFORMED DMSC: {message.decoded.error}"]
    else:
        body = describe(message.decoded.message)
    return "\n".join([header + link, *(BODY_INDENT + line for line in body)])


def format_other(frame: Packet, start: float) -> str:
    """One line for a frame that carries no DMSC message, naming DMSC's well-known ports."""
    where = getattr(frame, "sniffed_on", None)
    prefix = f"{float(frame.time) - start:12.6f}  " + (f"{where}  " if where else "")
    port = known_port(frame)
    return prefix + _frame_text(frame) + (f"  [{port}]" if port else "")


def _frame_text(frame: Packet) -> str:
    """Addresses, then what rides on IP (scapy's summary alone often omits the addresses)."""
    network = frame.getlayer(IPv6) or frame.getlayer(IP)
    if network is None:
        return frame.summary()
    return f"{network.src} -> {network.dst}  {network.payload.summary()}"


def known_port(frame: Packet) -> str | None:
    transport = frame.getlayer(TCP) or frame.getlayer(UDP)
    if transport is None:
        return None
    return KNOWN_PORTS.get(transport.dport) or KNOWN_PORTS.get(transport.sport)


@dataclass
class CaptureStats:
    messages: int = 0
    malformed: int = 0
    others: int = 0
    interrupted: bool = False

    def summary(self) -> str:
        text = f"{self.messages} DMSC message(s) shown, {self.malformed} malformed"
        if self.others:
            text += f", {self.others} other frame(s)"
        return text + (" (interrupted)" if self.interrupted else "")


@dataclass
class MessagePrinter:
    """Prints frames as they come, from a file or an interface, and counts what it showed."""

    out: TextIO
    show_all: bool = False
    start: float | None = None
    stats: CaptureStats = field(default_factory=CaptureStats)

    def __call__(self, frame: Packet) -> None:
        if self.start is None:
            self.start = float(frame.time)
        message = wire_message(frame)
        if message is not None:
            self.stats.messages += 1
            self.stats.malformed += not message.decoded.ok
            print(format_message(message, self.start) + "\n", file=self.out, flush=True)
        elif self.show_all:
            self.stats.others += 1
            print(format_other(frame, self.start), file=self.out, flush=True)

    def shown(self) -> int:
        return self.stats.messages + self.stats.others


# ---------------------------------------------------------------------- capture files


def read_frames(path: Path) -> Iterator[Packet]:
    """The frames of a pcap or pcapng file; a bad file is a DmscError naming it.

    A truncated or corrupt record ends the file with a DecodeError after the frames before it
    (scapy's reader would only log a warning and stop).
    """
    path = Path(path)
    with _reader_warnings() as warnings, _open_capture(path) as reader:
        count = 0
        for frame in _frames_of(reader, path):
            count += 1
            yield frame
        if warnings:
            raise DecodeError(
                f"{path}: truncated or corrupt capture after {count} frame(s) ({warnings[0]})"
            )


def _open_capture(path: Path) -> PcapReader:
    try:
        return PcapReader(str(path))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read capture: {error.strerror or error}") from None
    except (Scapy_Exception, struct.error, ValueError) as error:
        raise DecodeError(f"{path}: not a pcap or pcapng capture ({error})") from None


def _frames_of(reader: PcapReader, path: Path) -> Iterator[Packet]:
    count = 0
    while True:
        try:
            frame = reader.read_packet()
        except EOFError:
            return
        except (Scapy_Exception, struct.error, ValueError, OSError) as error:
            raise DecodeError(f"{path}: corrupt capture after {count} frame(s) ({error})") from None
        count += 1
        yield frame


class _ReaderWarnings(logging.Filter):
    """Takes the warnings scapy's capture readers only log (all start with Pcap or PcapNg)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Pcap" not in message:
            return True
        self.messages.append(message.removeprefix("more ").strip())
        return False


@contextmanager
def _reader_warnings() -> Iterator[list[str]]:
    catcher = _ReaderWarnings()
    log_runtime.addFilter(catcher)
    try:
        yield catcher.messages
    finally:
        log_runtime.removeFilter(catcher)


def read_messages(path: Path) -> list[WireMessage]:
    """Every DMSC message of a capture file, in file order."""
    return [m for m in map(wire_message, read_frames(path)) if m is not None]


def print_capture(
    path: Path, out: TextIO, show_all: bool = False, count: int | None = None
) -> CaptureStats:
    """Print a capture file; stop after ``count`` shown entries. Ctrl-C stops it cleanly."""
    printer = MessagePrinter(out, show_all)
    try:
        for frame in read_frames(path):
            printer(frame)
            if count and printer.shown() >= count:
                break
    except KeyboardInterrupt:
        printer.stats.interrupted = True
    return printer.stats


# ---------------------------------------------------------------------- live capture


@dataclass(frozen=True)
class LiveOptions:
    interfaces: tuple[str, ...]
    count: int | None = None  # stop after this many frames shown
    timeout: float | None = None  # seconds
    write: Path | None = None  # also save the captured frames (pcapng)
    show_all: bool = False


def live_capture(options: LiveOptions, out: TextIO) -> CaptureStats:
    """Sniff ``options.interfaces`` (needs CAP_NET_RAW) and print as frames arrive.

    Ends at ``count`` frames, after ``timeout`` seconds, or on Ctrl-C (scapy's ``sniff`` stops
    cleanly on it).
    """
    # times from the start: frames of several interfaces may come a little out of order
    printer = MessagePrinter(out, options.show_all, start=time.time())
    writer = _open_writer(options.write) if options.write else None
    failures: list[str] = []

    def handle(frame: Packet) -> None:
        if writer is not None:
            try:
                writer.write(frame)
            except OSError as error:  # sniff would swallow it and close the socket
                failures.append(f"{options.write}: cannot write capture: {error.strerror}")
        printer(frame)

    try:
        _sniff(options, handle, lambda _frame: bool(failures))
    finally:
        if writer is not None:
            writer.close()
    if failures:
        raise ConfigError(failures[0])
    return printer.stats


def _sniff(options: LiveOptions, handle, stop) -> None:
    try:
        sniff(
            iface=list(options.interfaces),
            filter=None if options.show_all else DMSC_FILTER,
            prn=handle,
            stop_filter=stop,
            store=False,
            count=options.count or 0,
            timeout=options.timeout,
        )
    except PermissionError:
        raise ConfigError("live capture needs root (CAP_NET_RAW); try sudo") from None
    except (OSError, ValueError, Scapy_Exception) as error:
        names = ", ".join(options.interfaces)
        raise ConfigError(f"cannot capture on {names}: {error}") from None


def _open_writer(path: Path) -> PcapNgWriter:
    try:
        return PcapNgWriter(str(path))
    except OSError as error:
        raise ConfigError(f"{path}: cannot write capture: {error.strerror}") from None
