"""A steady stream of numbered UDP echoes, to time data-plane outages: run inside a pod.

    python -m dmsc.nodes.udpprobe /B/4 --interval 0.002 --duration 10 --out probe.json

Sends one datagram every ``interval`` to the echo service (port 7) of a service name or address
and records, per sequence number, when it was sent and when its echo came back (or not). The
result (JSON) is what :func:`outages` reads: gaps in the replies longer than a few intervals.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import socket
import struct
import sys
import time
from pathlib import Path

from dmsc.names import name_address

ECHO_PORT = 7
_PACKET = struct.Struct("!Id")  # sequence, send time


def probe(address: str, interval: float, duration: float) -> dict:
    sent: list[float] = []
    received: dict[int, float] = {}
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.connect((address, ECHO_PORT))
        sock.setblocking(False)
        start = time.time()
        next_send = start
        while (now := time.time()) < start + duration:
            if now >= next_send:
                _send(sock, len(sent), now)
                sent.append(now)
                next_send += interval
            _receive(sock, received, max(0.0, next_send - time.time()))
        _receive(sock, received, 0.5)  # late echoes
    return {
        "address": address,
        "interval": interval,
        "sent": sent,
        "received": {str(k): v for k, v in sorted(received.items())},
    }


def _send(sock: socket.socket, sequence: int, now: float) -> None:
    # no route for a moment (an ICMP unreachable came back): the probe counts as lost
    with contextlib.suppress(OSError):
        sock.send(_PACKET.pack(sequence, now))


def _receive(sock: socket.socket, received: dict[int, float], timeout: float) -> None:
    deadline = time.time() + timeout
    while True:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.time()))
        if not ready:
            return
        try:
            data = sock.recv(64)
        except OSError:
            continue
        if len(data) >= _PACKET.size:
            sequence, _ = _PACKET.unpack_from(data)
            received.setdefault(sequence, time.time())


def outages(result: dict, after: float = 0.0, slack: int = 3) -> list[tuple[float, float]]:
    """(start, duration) of each run of lost echoes longer than ``slack`` intervals, for probes
    sent at or after ``after``; start is the send time of the first lost probe. A run still
    going when probing ended counts up to the end (the true outage is at least that long)."""
    sent, received = result["sent"], result["received"]
    runs, first_lost = [], None
    for sequence, when in enumerate(sent):
        if when < after:
            continue
        if str(sequence) not in received:
            first_lost = sequence if first_lost is None else first_lost
            continue
        if first_lost is not None and sequence - first_lost > slack:
            runs.append((sent[first_lost], when - sent[first_lost]))
        first_lost = None
    if first_lost is not None and len(sent) - first_lost > slack:  # still out at the end
        runs.append((sent[first_lost], sent[-1] - sent[first_lost] + result["interval"]))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dmsc.nodes.udpprobe", description=__doc__)
    parser.add_argument("target", help="service name (/B/4) or IPv6 address")
    parser.add_argument("--interval", type=float, default=0.002)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    address = str(name_address(args.target)) if args.target.startswith("/") else args.target
    result = probe(address, args.interval, args.duration)
    args.out.write_text(json.dumps(result))
    lost = len(result["sent"]) - len(result["received"])
    print(f"{len(result['sent'])} sent, {lost} lost")
    return 0


if __name__ == "__main__":
    sys.exit(main())
