"""``dmsc keys``: a routing domain's keys in a directory, for ``dmsc cli --keys DIR``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dmsc.errors import ConfigError
from dmsc.topologies import BUILT_IN


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "keys",
        help="make or show a routing domain's keys (operator, link, routers, SPAs, pods)",
        description="By default every emulated network makes fresh random keys for its run. "
        "To keep or supply your own, make them here and pass the directory to "
        "`dmsc cli --keys DIR`: keys already in DIR are kept, missing ones are created.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = actions.add_parser("init", help="create the keys of a topology's nodes in DIR")
    init.add_argument("directory", type=Path)
    init.add_argument("--topo", default="figure2", help=f"{', '.join(BUILT_IN)}, topohub:KEY, "
                      "or a GraphML file (default figure2)")  # fmt: skip
    init.set_defaults(func=initialise)
    show = actions.add_parser("show", help="the trust anchor and the routers enrolled in DIR")
    show.add_argument("directory", type=Path)
    show.set_defaults(func=describe)


def initialise(args: argparse.Namespace) -> int:
    from dmsc.routing.domain import RoutingDomain
    from dmsc.spa.keys import generate_private_key, save_private_key
    from dmsc.topologies.builders import build_topology

    spec = build_topology(args.topo)
    args.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    domain = RoutingDomain.open_directory(args.directory)
    now = time.time()
    for name in (*spec.gateways, *spec.routers):
        domain.write_router(args.directory, name, "sg" if name in spec.gateways else "sr", now)
    for name in (*spec.spas, *(pod.name for pod in spec.pods)):
        path = args.directory / f"{name}.key"
        if not path.exists():
            save_private_key(generate_private_key(), path)
    print(f"{args.directory}: trust anchor {domain.anchor_text}")
    return describe(args)


def describe(args: argparse.Namespace) -> int:
    from dmsc.proto import dmsc_pb2
    from dmsc.routing.domain import read_certificate, read_link_keys

    if not (args.directory / "operator.key").exists():
        raise ConfigError(f"{args.directory}: no operator.key; make one with `dmsc keys init`")
    link_keys = read_link_keys(args.directory / "link.key")
    print(f"link keys: {sorted(link_keys)}")
    for path in sorted(args.directory.glob("*.cert")):
        body = dmsc_pb2.RouterCertificateBody.FromString(read_certificate(path).body)
        until = time.strftime("%Y-%m-%d", time.gmtime(body.expires_at))
        print(f"  {body.node_id:<12} {body.role}  enrolled until {until} by {body.anchor_key_id}")
    return 0
