"""Run one node program: ``python -m dmsc.nodes {router,pod} --config FILE``.

The emulator starts these inside Mininet hosts; SIGTERM or SIGINT stops them cleanly (an SG/SR
floods a purge of its LSA, a pod withdraws its prefixes).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from dmsc.errors import DmscError
from dmsc.nodes import config as node_config


def build_program(role: str, path: str):
    if role == "pod":
        from dmsc.nodes.pod import Pod

        return Pod(node_config.load(node_config.PodConfig, path))
    from dmsc.nodes.router_node import RouterNode

    config = node_config.load(node_config.RouterConfig, path)
    node = RouterNode(config)
    if config.role == "sg":
        from dmsc.nodes.gateway import Gateway

        node.extensions.append(Gateway(node))
    if config.forward:
        from dmsc.nodes.forwarding import Forwarding

        forwarding = Forwarding(node)
        node.extensions.append(forwarding)
        if config.controller:
            from dmsc.nodes.openflow_link import OpenFlowLink

            openflow = OpenFlowLink(node, forwarding, node.clock)
            node.extensions.append(openflow)
            if config.probe_services:
                from dmsc.nodes.probing import Prober

                node.extensions.append(Prober(node, forwarding, openflow, node.clock))
    elif config.controller:
        raise DmscError(f"node {config.node_id}: the SCSC (controller) needs the forwarder")
    return node


async def run(program) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, program.request_stop)
    await program.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dmsc.nodes", description=__doc__)
    parser.add_argument("role", choices=("router", "pod"))
    parser.add_argument("--config", required=True, help="the node's JSON configuration")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        program = build_program(args.role, args.config)
        asyncio.run(run(program))
    except DmscError as error:
        print(f"dmsc node: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
