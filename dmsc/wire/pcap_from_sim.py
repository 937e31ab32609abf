"""Record a simulation's signalling as a capture file: the in-memory network, seen on the wire.

A tap on :class:`dmsc.sim.SimNetwork` turns every delivered datagram into the Ethernet/IPv6/UDP
frame its sender would have put on the link: from a stable, locally administered MAC derived
from the node id and interface, and the EUI-64 link-local address of that MAC, port 6464 to
port 6464 of ``ff02::d5c`` (all DMSC routers on the link), hop limit 255. The virtual time of
arrival is the frame's timestamp (the simulator's virtual epoch lies in the present, so the
times read as real dates).

The file is pcapng, whatever its name: Wireshark, tshark, ``tcpdump -r`` and ``dmsc capture
--read`` open it. Each frame is recorded where it arrives, on a capture interface named as
Mininet names interfaces (``sg1-eth0`` = interface eth0 of sg1), and carries a comment naming
both ends of the link (``sr1 eth0 -> sg1 eth0``). A datagram lost on a link (simulated loss, a
link going down) never arrives, so it is not in the file.

    with record_simulation_pcap(network, "figure2.pcapng"):
        network.run_for(10)
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import TracebackType

from scapy.utils import PcapNgWriter

from dmsc.errors import ConfigError
from dmsc.sim.network import Delivery, SimNetwork
from dmsc.wire.scapy_layers import dmsc_frame, eui64_link_local

LOCALLY_ADMINISTERED = 0x02  # first MAC octet: unicast, locally administered
HALF_MICROSECOND = 0.5e-6
DIRECTION_INBOUND = 1  # pcapng EPB flag: the frame was received on this interface


def interface_mac(node: str, interface: str) -> str:
    """A stable MAC for ``interface`` of ``node``: the same in every run and every capture."""
    digest = hashlib.blake2b(f"{node}/{interface}".encode(), digest_size=5).digest()
    return ":".join(f"{octet:02x}" for octet in (LOCALLY_ADMINISTERED, *digest))


def interface_link_local(node: str, interface: str) -> str:
    return eui64_link_local(interface_mac(node, interface))


def capture_interface_name(node: str, interface: str) -> str:
    """The name Mininet would give the interface (``sg1-eth0``)."""
    return f"{node}-{interface}"


class SimPcapRecorder:
    """A SimNetwork tap writing each delivered datagram to a pcapng file until closed."""

    def __init__(self, network: SimNetwork, path: str | Path) -> None:
        self.network = network
        self.path = Path(path)
        self.frames = 0
        try:
            self._writer = PcapNgWriter(str(self.path))
        except OSError as error:
            raise ConfigError(f"{self.path}: cannot write capture: {error.strerror}") from None
        network.taps.append(self)

    def __call__(self, delivery: Delivery) -> None:
        link = self.network.links[(delivery.destination, delivery.interface)]
        source, source_interface = link.far_end(delivery.destination)
        mac = interface_mac(source, source_interface)
        frame = dmsc_frame(delivery.data, mac, eui64_link_local(mac))
        frame.time = delivery.time + HALF_MICROSECOND  # the writer truncates to microseconds
        frame.sniffed_on = capture_interface_name(delivery.destination, delivery.interface)
        frame.direction = DIRECTION_INBOUND
        link_text = f"{source} {source_interface} -> {delivery.destination} {delivery.interface}"
        frame.comments = [link_text.encode()]
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        """Stop recording and finish the file; safe to call twice."""
        if self in self.network.taps:
            self.network.taps.remove(self)
        self._writer.close()

    def __enter__(self) -> SimPcapRecorder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def record_simulation_pcap(network: SimNetwork, path: str | Path) -> SimPcapRecorder:
    """Record every datagram ``network`` delivers from now on into the pcapng file ``path``.

    Use the result as a context manager, or call its ``close()`` when the run is over; its
    ``frames`` attribute counts what was written.
    """
    return SimPcapRecorder(network, path)
