"""A pod's request/response service on port 80, over HTTP and UDP: it says which pod and which
address answered, pads its answer to the size asked for, and, where the experiment's call graph
says so, calls other services by name before answering (:class:`CallsConfig`), logging each of
those calls as a hop of the caller's trace (:mod:`dmsc.nodes.calls`).

The service logic (:class:`Answerer`) knows nothing of sockets; the HTTP handler and the UDP
server below only carry its requests and answers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from dmsc.names import ServiceName, name_address
from dmsc.nodes.calls import (
    CALL_HEADER,
    SERVICE_PORT,
    HttpCaller,
    Outcome,
    Request,
    padding,
    parse_http_request,
    parse_udp_request,
    valid_call_id,
)
from dmsc.nodes.config import CallsConfig

log = logging.getLogger(__name__)
#: threads answering UDP requests (an HTTP connection has its own thread)
UDP_WORKERS = 16


class HopLog:
    """One JSON line per call a service made, appended as it ends (``hop_log`` '': none)."""

    def __init__(self, path: str) -> None:
        # open for the pod's lifetime, closed by the pod's cleanups
        self._stream = Path(path).open("a", buffering=1, encoding="utf-8") if path else None  # noqa: SIM115
        self._lock = threading.Lock()

    def write(self, hop: dict) -> None:
        if self._stream is None:
            return
        with self._lock:
            self._stream.write(json.dumps(hop) + "\n")

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


class Answerer:
    """Answers a request that reached ``local`` (an address this pod owns): makes the calls
    of the service it belongs to, then says who answered."""

    def __init__(
        self,
        pod_id: str,
        owned: Mapping[str, str],  # address -> the name it is (/A/1, /A)
        calls: tuple[CallsConfig, ...],
        hops: HopLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pod_id, self.owned, self.hops, self.clock = pod_id, owned, hops, clock
        self.calls = {each.service: each for each in calls}

    def answer(self, local: str, request: Request) -> tuple[bool, dict]:
        """(ok, the reply's JSON object, before padding)."""
        reply = {"pod": self.pod_id, "address": local}
        plan = self._plan_for(self.owned.get(local, ""))
        if plan is None:
            return True, reply
        outcomes = self._make_calls(plan, request.call_id)
        failed = [
            f"{name}: {o.error}" for name, o in zip(plan.calls, outcomes, strict=True) if not o.ok
        ]
        if failed:
            return False, reply | {"error": "; ".join(failed)}
        return True, reply | {"called": [o.served_by for o in outcomes]}

    def _plan_for(self, name: str) -> CallsConfig | None:
        if not name:
            return None
        parsed = ServiceName.parse(name)
        return self.calls.get(name) or self.calls.get(str(parsed.parent))

    def _make_calls(self, plan: CallsConfig, call_id: str) -> list[Outcome]:
        ids = [f"{call_id}.{k}" if call_id else "" for k in range(len(plan.calls))]
        jobs = list(zip(plan.calls, ids, strict=True))
        if plan.parallel and len(jobs) > 1:
            with ThreadPoolExecutor(len(jobs)) as pool:
                return list(pool.map(lambda job: self._call(plan, *job), jobs))
        return [self._call(plan, name, child) for name, child in jobs]

    def _call(self, plan: CallsConfig, name: str, call_id: str) -> Outcome:
        target = HttpCaller(str(name_address(name)), keep_alive=False)
        sent = self.clock()
        outcome = target.call(valid_call_id(call_id) or "", plan.timeout_ms / 1000)
        done = self.clock()
        if call_id:
            self.hops.write(
                {
                    "call_id": call_id,
                    "client": self.pod_id,
                    "service": name,
                    "intended": sent,
                    "sent": sent,
                    "latency_ms": (done - sent) * 1000,
                    "service_ms": (done - sent) * 1000,
                    "ok": outcome.ok,
                    "served_by": outcome.served_by,
                    "error": outcome.error,
                }
            )
        return outcome


# ---------------------------------------------------------------- HTTP


class DualStackHTTPServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A caller that gave up (its timeout) or lost its connection to a reroute is part of
        the experiment: one line, not socketserver's traceback on stderr. Anything else is a
        bug in the handler, logged with its traceback; the service keeps serving either way."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            log.debug("call from %s ended by the caller: %r", client_address, error)
        else:
            log.exception("call from %s failed in the service", client_address)


def http_handler(answerer: Answerer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # persistent connections: the clients' keep-alive mode
        # The head and the body are two writes: with Nagle's algorithm on, the body waits for
        # the client's delayed ACK of the head, 40 ms on Linux, on every call of a connection.
        disable_nagle_algorithm = True
        timeout = 30  # an idle persistent connection is closed, and its thread ends

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def _answer(self) -> None:
            try:
                request = parse_http_request(
                    self.path, self.headers.get(CALL_HEADER), self.headers.get("Content-Length")
                )
            except ValueError as error:
                self._reply(400, {"pod": answerer.pod_id, "error": str(error)}, close=True)
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            ok, reply = answerer.answer(self.connection.getsockname()[0], request)
            self._reply(200 if ok else 502, padding(reply, request.response_bytes))

        def _reply(self, status: int, reply: dict, close: bool = False) -> None:
            body = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    return Handler


class HttpService:
    """The service over HTTP on every address of the pod (``port`` 0: any free one)."""

    def __init__(self, answerer: Answerer, port: int = SERVICE_PORT) -> None:
        self.httpd = DualStackHTTPServer(("::", port), http_handler(answerer))
        self.port = self.httpd.server_address[1]

    def start(self) -> Callable[[], None]:
        threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True).start()

        def stop() -> None:
            self.httpd.shutdown()
            self.httpd.server_close()

        return stop


# ---------------------------------------------------------------- UDP


class UdpService:
    """The same service over UDP: one datagram each way, the reply from the address asked
    (IPV6_PKTINFO), so that an anycast request is answered by the instance that took it."""

    def __init__(self, answerer: Answerer, port: int = SERVICE_PORT) -> None:
        self.answerer = answerer
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        self.sock.bind(("::", port))
        self.port = self.sock.getsockname()[1]
        self.pool = ThreadPoolExecutor(UDP_WORKERS, thread_name_prefix="udp-service")
        self.dropped = 0

    def start(self) -> Callable[[], None]:
        stopping = threading.Event()
        self.sock.settimeout(0.5)  # how long stopping may wait for the receiving thread
        thread = threading.Thread(
            target=self._serve, args=(stopping,), name="udp-service", daemon=True
        )
        thread.start()

        def stop() -> None:
            stopping.set()
            thread.join(2)
            self.sock.close()
            self.pool.shutdown(wait=False, cancel_futures=True)

        return stop

    def _serve(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                data, ancillary, _flags, peer = self.sock.recvmsg(2048, 256)
            except TimeoutError:
                continue
            except OSError as error:
                log.warning("UDP service: %s", error)
                continue
            pktinfo = next(
                (
                    v
                    for level, kind, v in ancillary
                    if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO
                ),
                None,
            )
            self.pool.submit(self._answer, data, pktinfo, peer)

    def _answer(self, data: bytes, pktinfo: bytes | None, peer) -> None:
        try:
            request = parse_udp_request(data)
        except ValueError as error:
            self.dropped += 1
            log.debug("UDP service: bad request from %s: %s", peer[0], error)
            return
        local = socket.inet_ntop(socket.AF_INET6, pktinfo[:16]) if pktinfo else ""
        _ok, reply = self.answerer.answer(local, request)
        extra = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo)] if pktinfo else []
        with contextlib.suppress(OSError):
            body = json.dumps(padding(reply, request.response_bytes)).encode()
            self.sock.sendmsg([body], extra, 0, peer)


def owned_addresses(names: list[str]) -> dict[str, str]:
    return {str(name_address(name)): name for name in names}
