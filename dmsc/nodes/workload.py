"""A client workload, run inside a pod: HTTP requests to a service name at a steady rate.

    python -m dmsc.nodes.workload /B --interval 0.1 --duration 40 --out requests.json

Each request records when it was sent, its latency, which pod answered (the demo HTTP service
says so) and whether it succeeded — the raw material of the latency-over-time figure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import sys
import time
from pathlib import Path

from dmsc.names import name_address


def one_request(address: str, timeout: float) -> dict:
    sent = time.time()
    connection = http.client.HTTPConnection(address, 80, timeout=timeout)
    try:
        connection.request("GET", "/")
        reply = connection.getresponse()
        body = json.loads(reply.read())
        return {
            "time": sent,
            "latency_ms": (time.time() - sent) * 1000,
            "ok": True,
            "served_by": body.get("pod", "?"),
            "error": "",
        }
    except (OSError, ValueError, http.client.HTTPException) as error:
        return {
            "time": sent,
            "latency_ms": (time.time() - sent) * 1000,
            "ok": False,
            "served_by": "",
            "error": type(error).__name__,
        }
    finally:
        connection.close()


def run(
    target: str, interval: float, duration: float, timeout: float, records: list | None = None
) -> list[dict]:
    """Requests until ``duration`` is over, appended to ``records`` (so that a caller that is
    interrupted still has every request made so far)."""
    address = str(name_address(target)) if target.startswith("/") else target
    records = [] if records is None else records
    start = time.time()
    next_at = start
    while next_at < start + duration:
        time.sleep(max(0.0, next_at - time.time()))
        records.append(one_request(address, timeout))
        next_at += interval
        while next_at < time.time():  # a slow request does not make a burst after it
            next_at += interval
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dmsc.nodes.workload", description=__doc__)
    parser.add_argument("target", help="service name (/B) or IPv6 address")
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    records: list[dict] = []
    # SIGTERM (the runner stopping early) ends the loop; what was measured is still written
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run(args.target, args.interval, args.duration, args.timeout, records)
    finally:
        args.out.write_text(json.dumps(records))
    failed = sum(not r["ok"] for r in records)
    print(f"{len(records)} requests, {failed} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
