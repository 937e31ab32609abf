"""Small helpers around a forwarder's interfaces: offloads, sysctls, MAC/index/MTU lookups.

Commands are argument lists, logged exactly as run; a failure raises :class:`DmscError` naming
the command and its stderr.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import socket
import struct
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from dmsc.errors import DmscError

log = logging.getLogger(__name__)

#: ethtool -K arguments: with them on, TCP through a userspace forwarder fails (partial
#: checksums are never completed, GSO/GRO hand it 64 KiB super-frames).
OFFLOADS_OFF = ("rx", "off", "tx", "off", "tso", "off", "gso", "off", "gro", "off")
#: Kernel forwarding off: only the Python forwarder forwards.
FORWARDING_OFF = ("net.ipv6.conf.all.forwarding=0",)


def run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    log.debug("run: %s", " ".join(argv))
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise DmscError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def offload_command(interface: str) -> list[str]:
    return ["ethtool", "-K", interface, *OFFLOADS_OFF]


def disable_offloads(interface: str) -> None:
    """Checksum offload, TSO, GSO, GRO off (ethtool exits 0 even if some are fixed)."""
    run(offload_command(interface))


def sysctl_command(setting: str) -> list[str]:
    return ["sysctl", "-q", "-w", setting]


def set_sysctls(settings: Sequence[str] = FORWARDING_OFF) -> None:
    for setting in settings:
        run(sysctl_command(setting))


def cpu_mask(cpus: int | None = None) -> str:
    """Every CPU, in the sysfs cpumask format (hex, 32-bit groups separated by commas)."""
    digits = f"{(1 << (cpus or os.cpu_count() or 1)) - 1:x}"
    groups = [digits[max(0, end - 8) : end] for end in range(len(digits), 0, -8)]
    return ",".join(reversed(groups))


# Runs in a private mount namespace with a sysfs of this network namespace mounted aside (see
# SIOCGIFMTU above). The interface and mask arrive as $1 and $2: never formatted into the script.
_RPS_SCRIPT = """
where=$(mktemp -d) || exit 1
mount -t sysfs sysfs "$where" || { rmdir "$where"; exit 1; }
status=0 queues=0
for queue in "$where"/class/net/"$1"/queues/rx-*; do
    [ -e "$queue/rps_cpus" ] || continue
    queues=$((queues + 1))
    echo "$2" > "$queue/rps_cpus" || status=1
done
umount "$where"; rmdir "$where"
# A kernel without RPS (one CPU, as User-Mode Linux) has no rps_cpus: "0" is then already so.
if [ "$queues" = 0 ] && [ "$2" != 0 ]; then
    echo "$1: this kernel has no receive packet steering" >&2; exit 1
fi
exit $status
"""


def rps_command(interface: str, mask: str) -> list[str]:
    return ["unshare", "--mount", "sh", "-c", _RPS_SCRIPT, "rps", interface, mask]


def spread_receive(interface: str, mask: str | None = None) -> None:
    """Receive packet steering over all CPUs for frames arriving on ``interface``.

    The kernel then handles an arriving frame (the copy into the forwarder's ring, the IPv6
    stack's drop of a frame it does not forward) on a CPU picked by flow hash, rather than in
    the sender's context -- which, for a frame the forwarder itself triggered, is the forwarder.
    Measured (docs/dataplane.md): +25% TCP through the Python forwarder on a busy machine,
    -15% on a quiet one (the cross-CPU hand-off costs more than it saves): off by default.
    """
    run(rps_command(interface, mask or cpu_mask()))


def prepare_node(interfaces: Sequence[str], steer: bool = False) -> None:
    """What a forwarding namespace needs: kernel IPv6 forwarding off, offloads off, and
    (``steer``) receive packet steering on its data interfaces."""
    set_sysctls(FORWARDING_OFF)
    for interface in interfaces:
        disable_offloads(interface)
        if steer:
            spread_receive(interface)


# Interface facts come from ioctls on a socket, which see the caller's network namespace. The
# /sys/class/net tree shows the namespace of whoever mounted /sys: inside a Mininet host (a new
# network namespace, same mounts) it still lists the root namespace's interfaces.
SIOCGIFMTU = 0x8921
SIOCGIFHWADDR = 0x8927


def _ifreq(interface: str, request: int) -> bytes:
    name = interface.encode()
    if not 0 < len(name) < 16:
        raise DmscError(f"bad interface name {interface!r}")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        try:
            return fcntl.ioctl(sock.fileno(), request, name.ljust(40, b"\0"))
        except OSError as error:
            raise DmscError(f"interface {interface}: {error.strerror}") from None


def interface_mac(interface: str) -> bytes:
    return _ifreq(interface, SIOCGIFHWADDR)[18:24]  # ifr_hwaddr.sa_data


def interface_mtu(interface: str) -> int:
    return struct.unpack_from("i", _ifreq(interface, SIOCGIFMTU), 16)[0]


def interface_index(interface: str) -> int:
    try:
        return socket.if_nametoindex(interface)
    except OSError:
        raise DmscError(f"no interface {interface!r} in this network namespace") from None


# --- network namespaces for tests and benchmarks ----------------------------------------------


def netns_exec(namespace: str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", namespace, *argv]


class Namespaces:
    """Network namespaces that are all deleted by :meth:`close` (their veths go with them).

    A context manager; every command it ran is kept in :attr:`commands`.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.names: list[str] = []
        self.commands: list[list[str]] = []

    def __enter__(self) -> Namespaces:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        self.commands.append(list(argv))
        return run(argv, check)

    def add(self, short: str) -> str:
        name = f"{self.prefix}{short}"
        self.run(["ip", "netns", "add", name])
        self.names.append(name)
        self.run(netns_exec(name, ["ip", "link", "set", "lo", "up"]))
        return name

    def exec(self, namespace: str, argv: Sequence[str], check: bool = True):
        return self.run(netns_exec(namespace, argv), check)

    def veth(self, a: tuple[str, str, str], b: tuple[str, str, str]) -> None:
        """Join (namespace, interface, MAC) ``a`` and ``b``; up, DAD off, offloads off."""
        (ns_a, if_a, mac_a), (ns_b, if_b, mac_b) = a, b
        left = ["ip", "link", "add", if_a, "netns", ns_a, "address", mac_a, "type", "veth"]
        self.run([*left, "peer", if_b, "netns", ns_b, "address", mac_b])
        for namespace, interface in ((ns_a, if_a), (ns_b, if_b)):
            self.exec(namespace, sysctl_command(f"net.ipv6.conf.{interface}.accept_dad=0"))
            self.exec(namespace, offload_command(interface))
            self.exec(namespace, ["ip", "link", "set", interface, "up"])

    def close(self) -> None:
        for name in reversed(self.names):
            for pid in self.run(["ip", "netns", "pids", name], check=False).stdout.split():
                # Only what we started lives in our namespaces: a leftover is killed.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            self.run(["ip", "netns", "del", name], check=False)
        self.names = []


@dataclass(frozen=True)
class Chain:
    """client -- fwd -- server, one namespace each, plus a direct client -- server link.

    The client and server route via the forwarder's link addresses; ``fwd`` forwards with the
    kernel (:meth:`kernel_forwarding`) or a Python forwarder (:meth:`forwarder_config`).
    """

    client: str
    fwd: str
    server: str
    client_address: str = "2001:db8:1::1"
    server_address: str = "2001:db8:2::1"
    fwd_addresses: tuple[str, str] = ("2001:db8:1::2", "2001:db8:2::2")
    direct_client: str = "2001:db8:9::1"  # the direct link, for baselines
    direct_server: str = "2001:db8:9::2"
    macs: tuple[str, ...] = (
        "02:00:00:00:01:01",  # client c0
        "02:00:00:00:01:02",  # fwd f0
        "02:00:00:00:02:02",  # fwd f1
        "02:00:00:00:02:01",  # server s0
    )

    def forwarder_config(self, **options: object) -> dict:
        """The JSON config of a Python forwarder in ``fwd`` (ports f0, f1)."""
        hop = lambda port, mac: [{"port": port, "mac": mac}]  # noqa: E731
        return {
            "ports": [{"name": "f0"}, {"name": "f1"}],
            "routes": [
                {
                    "prefix": "2001:db8:1::/64",
                    "label": "client",
                    "next_hops": hop("f0", self.macs[0]),
                },
                {
                    "prefix": "2001:db8:2::/64",
                    "label": "server",
                    "next_hops": hop("f1", self.macs[3]),
                },
            ],
            "own_addresses": list(self.fwd_addresses),
            "options": options,
        }

    def kernel_forwarding(self, spaces: Namespaces, on: bool) -> None:
        spaces.exec(self.fwd, sysctl_command(f"net.ipv6.conf.all.forwarding={int(on)}"))


def build_chain(spaces: Namespaces) -> Chain:
    """Make the three namespaces of a :class:`Chain`; kernel forwarding off in ``fwd``."""
    chain = Chain(spaces.add("c"), spaces.add("f"), spaces.add("s"))
    c0, f0, f1, s0 = chain.macs
    spaces.veth((chain.client, "c0", c0), (chain.fwd, "f0", f0))
    spaces.veth((chain.fwd, "f1", f1), (chain.server, "s0", s0))
    spaces.veth(
        (chain.client, "c1", "02:00:00:00:09:01"), (chain.server, "s1", "02:00:00:00:09:02")
    )
    addresses = (
        (chain.client, "c0", chain.client_address, "2001:db8:1::2"),
        (chain.server, "s0", chain.server_address, "2001:db8:2::2"),
        (chain.fwd, "f0", chain.fwd_addresses[0], None),
        (chain.fwd, "f1", chain.fwd_addresses[1], None),
        (chain.client, "c1", chain.direct_client, None),
        (chain.server, "s1", chain.direct_server, None),
    )
    for namespace, interface, address, gateway in addresses:
        spaces.exec(
            namespace, ["ip", "-6", "addr", "add", f"{address}/64", "dev", interface, "nodad"]
        )
        if gateway is not None:
            spaces.exec(namespace, ["ip", "-6", "route", "add", "2001:db8::/32", "via", gateway])
    chain.kernel_forwarding(spaces, False)
    return chain
