"""``dmsc capture``: print DMSC signalling decoded, from a capture file or live interfaces."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from dmsc.errors import ConfigError

NETNS_DIR = Path("/run/netns")  # where `ip netns add` puts its named namespaces
PACKAGE_ROOT = Path(__file__).resolve().parents[2]

DESCRIPTION = """\
Print every DMSC link-state message (type 2 signalling: UDP port 6464) decoded, one block per
message, with its time (since the first frame of a file, or the start of a live capture) and
the link it was seen on. Malformed datagrams are shown with the reason a node would drop them.
Read a pcap/pcapng file (from tcpdump, Wireshark, or `dmsc demo --pcap`), or sniff live
interfaces (needs root). Ctrl-C ends a live capture cleanly and prints how many messages were
shown and how many were malformed. See docs/wire.md.
"""
EPILOG = """\
examples:
  dmsc capture --read results/demo.pcapng
  dmsc capture -i sg1-eth0 -i sg1-eth1 --count 20 --write sg1.pcapng
  dmsc capture --netns ns1 -i veth0 --all     (an `ip netns` namespace: re-runs inside it)
  dmsc> sg1 dmsc capture -i sg1-eth0          (in the DMSC CLI: a Mininet host's own namespace)
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "capture",
        help="print DMSC signalling decoded, from a pcap file or live interfaces",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--read", type=Path, metavar="FILE", help="read a pcap or pcapng file")
    source.add_argument(
        "-i",
        "--interface",
        dest="interfaces",
        action="append",
        metavar="IFACE",
        help="sniff this interface live (repeat for several)",
    )
    parser.add_argument(
        "--count", type=_positive_int, metavar="N", help="stop after N messages (frames with --all)"
    )
    parser.add_argument(
        "--timeout", type=_positive_float, metavar="S", help="stop a live capture after S seconds"
    )
    parser.add_argument(
        "--write", type=Path, metavar="FILE", help="also save the captured frames (pcapng)"
    )
    parser.add_argument(
        "--netns", metavar="NAME", help="capture inside this `ip netns` namespace (re-runs there)"
    )
    parser.add_argument(
        "--all",
        dest="show_all",
        action="store_true",
        help="also list every other frame in one line (ICMPv6, gRPC, OpenFlow, data plane)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    _check_options(args)
    if args.netns:
        return run_in_namespace(args)
    capture = _capture_module()
    if args.read:
        stats = capture.print_capture(args.read, sys.stdout, args.show_all, args.count)
    else:
        options = capture.LiveOptions(
            tuple(args.interfaces), args.count, args.timeout, args.write, args.show_all
        )
        stats = capture.live_capture(options, sys.stdout)
    print(stats.summary(), file=sys.stderr)
    return 130 if stats.interrupted else 0


def _capture_module():
    """Scapy loads here, not when ``dmsc`` starts (and, with --netns, in the namespace)."""
    try:
        from dmsc.wire import capture
    except ModuleNotFoundError as error:
        if error.name != "scapy":
            raise
        raise ConfigError("dmsc capture needs scapy: pip install scapy") from None
    return capture


def _check_options(args: argparse.Namespace) -> None:
    if args.read:
        live_only = [f"--{n}" for n in ("timeout", "write", "netns") if getattr(args, n)]
        if live_only:
            raise ConfigError(f"{', '.join(live_only)}: only for a live capture (-i IFACE)")


# ---------------------------------------------------------------------- --netns


def capture_argv(args: argparse.Namespace) -> list[str]:
    """The ``dmsc capture`` arguments of ``args`` for a live capture, without ``--netns``."""
    argv = [item for name in args.interfaces for item in ("-i", name)]
    if args.count:
        argv += ["--count", str(args.count)]
    if args.timeout:
        argv += ["--timeout", str(args.timeout)]
    if args.write:
        argv += ["--write", str(args.write.absolute())]
    if args.show_all:
        argv.append("--all")
    return argv


def namespace_command(args: argparse.Namespace) -> list[str]:
    """``ip netns exec`` runs a fresh process in the namespace, with /sys of that namespace, so
    scapy sees its interfaces (switching the running process would leave scapy's interface
    table, read at import, describing the old one)."""
    python = [sys.executable, "-m", "dmsc", "capture"]
    return ["ip", "netns", "exec", args.netns, *python, *capture_argv(args)]


def run_in_namespace(args: argparse.Namespace) -> int:
    _check_namespace(args.netns)
    environment = dict(os.environ)
    path = [str(PACKAGE_ROOT), environment.get("PYTHONPATH", "")]
    environment["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
    with subprocess.Popen(namespace_command(args), env=environment) as process:
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:
                continue  # the child got the same Ctrl-C: it prints its counts and exits


def _check_namespace(name: str) -> None:
    if os.geteuid() != 0:
        raise ConfigError("--netns needs root (it runs `ip netns exec`); try sudo")
    if "/" in name or not (NETNS_DIR / name).exists():
        known = sorted(p.name for p in NETNS_DIR.glob("*")) if NETNS_DIR.is_dir() else []
        raise ConfigError(
            f"no network namespace {name!r} (known: {', '.join(known) or 'none'}; "
            "see `ip netns list`)"
        )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value
