"""Small helpers around a forwarder's interfaces: offloads, sysctls, MAC/index/MTU lookups.

Commands are argument lists, logged exactly as run; a failure raises :class:`DmscError` naming
the command and its stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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


def prepare_node(interfaces: Sequence[str]) -> None:
    """What a forwarding namespace needs: kernel IPv6 forwarding off, offloads off."""
    set_sysctls(FORWARDING_OFF)
    for interface in interfaces:
        disable_offloads(interface)


def _sys_class_net(interface: str, attribute: str) -> str:
    path = Path("/sys/class/net") / interface / attribute
    try:
        return path.read_text().strip()
    except OSError as error:
        raise DmscError(f"interface {interface}: cannot read {path}: {error}") from None


def interface_mac(interface: str) -> bytes:
    return bytes.fromhex(_sys_class_net(interface, "address").replace(":", ""))


def interface_mtu(interface: str) -> int:
    return int(_sys_class_net(interface, "mtu"))


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
