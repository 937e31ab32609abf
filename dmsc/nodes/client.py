"""A tiny client of the pods' demo services, run inside a pod: ``python -m dmsc.nodes.client``.

    python -m dmsc.nodes.client udp fd64:6d73:63:92eb::1 [--count 3]
    python -m dmsc.nodes.client tcp /B/4
    python -m dmsc.nodes.client http /B

Prints one line per exchange (round-trip time, and for HTTP which pod answered); exits 1 if any
exchange failed. Service names are turned into their addresses.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
import urllib.request

from dmsc.names import name_address

ECHO_PORT = 7


def resolve(target: str) -> str:
    return str(name_address(target)) if target.startswith("/") else target


def udp_exchange(address: str, payload: bytes, timeout: float) -> float:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((address, ECHO_PORT))
        start = time.perf_counter()
        sock.send(payload)
        if sock.recv(65536) != payload:
            raise OSError("echo differs from what was sent")
        return time.perf_counter() - start


def tcp_exchange(address: str, payload: bytes, timeout: float) -> float:
    start = time.perf_counter()
    with socket.create_connection((address, ECHO_PORT), timeout=timeout) as sock:
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    if received != payload:
        raise OSError("echo differs from what was sent")
    return time.perf_counter() - start


def http_exchange(address: str, timeout: float) -> tuple[float, dict]:
    start = time.perf_counter()
    with urllib.request.urlopen(f"http://[{address}]/", timeout=timeout) as reply:
        body = json.loads(reply.read())
    return time.perf_counter() - start, body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dmsc.nodes.client", description=__doc__)
    parser.add_argument("protocol", choices=("udp", "tcp", "http"))
    parser.add_argument("target", help="a service name (/B, /B/4) or an IPv6 address")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    address, failures = resolve(args.target), 0
    for sequence in range(args.count):
        payload = f"dmsc {sequence} {time.time()}".encode()
        try:
            if args.protocol == "http":
                rtt, body = http_exchange(address, args.timeout)
                print(
                    f"{args.target} [{address}] http: {rtt * 1000:.2f} ms, answered by "
                    f"{body['pod']} as {body['address']}"
                )
            else:
                exchange = udp_exchange if args.protocol == "udp" else tcp_exchange
                rtt = exchange(address, payload, args.timeout)
                print(f"{args.target} [{address}] {args.protocol} echo: {rtt * 1000:.2f} ms")
        except (OSError, ValueError) as error:
            failures += 1
            print(f"{args.target} [{address}] {args.protocol}: failed: {error}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
