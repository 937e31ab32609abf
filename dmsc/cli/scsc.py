"""``dmsc scsc``: run the Scheduling Center (an os-ken OpenFlow 1.3 controller)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from dmsc.errors import DmscError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "scsc",
        help="run the Scheduling Center (os-ken OpenFlow controller of the SGs and SRs)",
        description="Listen for the SGs and SRs (OpenFlow 1.3), learn the topology from their "
        "LSA copies and the QoS from their telemetry, and install forwarding policies when a "
        "service crosses its thresholds. Ready when the OpenFlow port listens and the admin "
        "socket answers 'status'. SIGTERM or SIGINT stops it (exit 0).",
    )
    parser.add_argument("--config", required=True, metavar="FILE.json", help="SCSC configuration")
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dmsc.controllers import launcher

    config = launcher.load_config(args.config)  # refused here, before anything starts
    launcher.setup_logging(config.node_id, args.log_level)
    code = 1
    try:
        code = launcher.run(config)
    except DmscError as error:
        print(f"dmsc scsc: error: {error}", file=sys.stderr)
        code = 2
    except Exception:
        logging.getLogger(__name__).exception("the SCSC failed")
    finally:
        # os-ken's native hub threads (its listener, one loop per switch) cannot be stopped,
        # and the interpreter would wait for them forever: leave once the SCSC cleaned up.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
