"""``dmsc name``: a service prefix's address and prefix, or an address back to its name."""

from __future__ import annotations

import argparse
import ipaddress

from dmsc.errors import InvalidName
from dmsc.names import NameRegistry, ServiceName, name_address, name_prefix


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "name",
        help="map service prefixes to IPv6 addresses and back",
        description="Print the address and prefix of each service prefix (e.g. /B/4), or the "
        "name carried by each IPv6 address. Names given on the same line are used to "
        "display addresses.",
    )
    parser.add_argument("items", nargs="+", metavar="NAME|ADDRESS")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    registry = NameRegistry()
    names = [item for item in args.items if item.startswith("/")]
    for text in names:
        registry.register(ServiceName.parse(text))
    for item in args.items:
        if item.startswith("/"):
            print(f"{item:<24} address {name_address(item)!s:<32} prefix {name_prefix(item)}")
        else:
            try:
                address = ipaddress.IPv6Address(item)
            except ValueError:
                raise InvalidName(
                    f"{item!r} is neither a service prefix (starting with '/') nor an IPv6 address"
                ) from None
            print(f"{item:<32} {registry.display(address)}")
    return 0
