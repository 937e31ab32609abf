"""``dmsc cli``: start the emulated network and open the Mininet CLI with DMSC commands."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dmsc.errors import DmscError
from dmsc.lifecycle import sigterm_unwinds
from dmsc.topologies import BUILT_IN


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "cli",
        help="start the emulated network (Mininet, root) and open its CLI",
        description="Start SPAs, SGs, SRs and pods on Mininet, wait for convergence, and open "
        "the Mininet CLI with DMSC commands (type 'help'). The network is torn down when the "
        "CLI exits, also on error.",
    )
    parser.add_argument(
        "--topo",
        default="figure2",
        help=f"{', '.join(BUILT_IN)}, topohub:KEY (e.g. topohub:topozoo/Geant2012), "
        "or a GraphML file (default figure2)",
    )
    parser.add_argument(
        "--no-forward", action="store_true", help="control plane only: no Python forwarders"
    )
    parser.add_argument(
        "--scsc",
        action="store_true",
        help="with the Scheduling Center: SGs probe instances, the SCSC installs policies "
        "(thresholds: the built-in defaults; change them with the CLI's 'thresholds')",
    )
    parser.add_argument(
        "--thresholds", metavar="FILE", help="with --scsc: a YAML file of thresholds"
    )
    parser.add_argument(
        "--keys", type=Path, metavar="DIR",
        help="the keys of routers, SPAs and pods from DIR (dmsc keys init); missing ones are "
        "created there (default: fresh random keys for this run)",
    )  # fmt: skip
    parser.add_argument("--script", help="run CLI commands from this file instead of a prompt")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dmsc.nodes.emulation import EmulatedNetwork, ScscOptions
    from dmsc.nodes.mncli import DmscCLI
    from dmsc.topologies.builders import build_topology

    spec = build_topology(args.topo)
    scsc = ScscOptions(thresholds=load_thresholds(args.thresholds)) if args.scsc else None
    if args.thresholds and not args.scsc:
        raise DmscError("--thresholds needs --scsc")
    started = time.monotonic()
    print(
        f"*** starting {spec.name}: {len(spec.gateways)} SGs, {len(spec.routers)} SRs, "
        f"{len(spec.pods)} pods, {len(spec.spas)} SPAs"
    )
    with (
        sigterm_unwinds(),
        EmulatedNetwork(
            spec, forward=not args.no_forward, scsc=scsc, keys_dir=args.keys
        ) as network,
    ):
        waited = network.wait_converged(timeout=60)
        print(
            f"*** converged {time.monotonic() - started:.1f} s after start "
            f"({waited:.2f} s after the last program was up); type 'help'"
        )
        DmscCLI(network, script=args.script)
    return 0


def load_thresholds(path: str | None) -> dict:
    """A thresholds YAML file as a mapping, checked here so a typo fails before Mininet starts."""
    if path is None:
        return {}
    import yaml

    from dmsc.controllers.thresholds import ThresholdTable

    try:
        with open(path) as stream:
            data = yaml.safe_load(stream) or {}
    except OSError as error:
        raise DmscError(f"{path}: cannot read ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise DmscError(f"{path}: not YAML ({error})") from None
    data = data.get("thresholds", data) if isinstance(data, dict) else data
    ThresholdTable.from_mapping(data, path)
    return data
