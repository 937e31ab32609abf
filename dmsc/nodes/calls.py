"""One call to a pod's service, and what travels with it: shared by the load generator and the
pods' services (which call other services before answering, docs/experiments.md "Call graphs").

A call is HTTP/1.1 (``GET /?bytes=N``, or ``POST`` with a body of the request size) to port
80 of a service or instance address, or a UDP request/response to port 80 of the same
address: a JSON object ``{"call": ID, "bytes": N, "pad": "..."}`` answered by ``{"pod": ...,
"address": ..., "pad": "..."}``. The call id travels in the ``X-Dmsc-Call`` header (HTTP) or
the ``call`` field (UDP): ``<trace>`` for a client's request, ``<parent id>.<k>`` for the
``k``-th call a service makes while answering it, so every hop names its trace and its parent.

Everything a peer sends here is untrusted (a pod is a tenant): ids are checked against
:data:`CALL_ID`, sizes against :data:`MAX_BYTES`, and a bad request is answered 400 or ignored,
never raised.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

SERVICE_PORT = 80
CALL_HEADER = "X-Dmsc-Call"
#: a trace id and its dotted call numbers; bounded so a hop log line stays small
CALL_ID = re.compile(r"[A-Za-z0-9_-]{1,48}(\.[0-9]{1,4}){0,16}\Z")
#: the largest request body or response a service accepts to make (1 MiB)
MAX_BYTES = 1 << 20
#: a UDP request or reply fits one datagram on the emulated links' 1500-byte MTU
MAX_UDP_BYTES = 1200
PROTOCOLS = ("http", "udp")


@dataclass(frozen=True)
class Outcome:
    """How one call ended: ``served_by`` is the pod that answered ('' when none did)."""

    ok: bool
    served_by: str = ""
    error: str = ""


def trace_of(call_id: str) -> str:
    return call_id.split(".", 1)[0]


def parent_of(call_id: str) -> str:
    """'' for a client's own request (a trace's root)."""
    return call_id.rpartition(".")[0]


def valid_call_id(text: str | None) -> str:
    """``text`` if it is a well-formed call id, else '' (the call is still answered)."""
    return text if text and CALL_ID.match(text) else ""


def padding(reply: dict, size: int) -> dict:
    """``reply`` with a ``pad`` field making its JSON ``size`` bytes long (or as short as it
    can be, when ``size`` is smaller than the rest)."""
    bare = len(json.dumps({**reply, "pad": ""}).encode())
    return {**reply, "pad": "x" * max(0, size - bare)}


# ---------------------------------------------------------------- the calling side


class HttpCaller:
    """HTTP calls to one address. ``keep_alive``: one connection reused for every call made
    from the same thread (HTTP/1.1 persistent connections), else a new connection per call."""

    def __init__(self, address: str, keep_alive: bool = True, port: int = SERVICE_PORT) -> None:
        self.address, self.keep_alive, self.port = address, keep_alive, port
        self._connections: dict[int, http.client.HTTPConnection] = {}

    def call(
        self, call_id: str, timeout: float, request_bytes: int = 0, response_bytes: int = 0
    ) -> Outcome:
        connection = self._connection(timeout)
        path = f"/?bytes={response_bytes}" if response_bytes else "/"
        headers = {CALL_HEADER: call_id}
        try:
            if request_bytes:
                connection.request("POST", path, body=b"x" * request_bytes, headers=headers)
            else:
                connection.request("GET", path, headers=headers)
            reply = connection.getresponse()
            body = reply.read()
            if reply.status != 200:
                self._drop(connection)
                return Outcome(False, _pod_of(body), f"HTTP {reply.status}")
            if not self.keep_alive or reply.will_close:
                self._drop(connection)
            return Outcome(True, _pod_of(body) or "?")
        except (OSError, http.client.HTTPException) as error:
            self._drop(connection)
            return Outcome(False, "", _error_name(error))

    def close(self) -> None:
        for connection in list(self._connections.values()):
            connection.close()
        self._connections.clear()

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        key = threading.get_ident()
        connection = self._connections.get(key)
        if connection is None:
            connection = http.client.HTTPConnection(self.address, self.port, timeout=timeout)
            self._connections[key] = connection
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        return connection

    def _drop(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        for key, held in list(self._connections.items()):
            if held is connection:
                del self._connections[key]


class UdpCaller:
    """UDP request/response calls to one address: a socket per call, so that a late reply to
    an earlier call is never taken for this one's."""

    def __init__(self, address: str, port: int = SERVICE_PORT) -> None:
        self.address, self.port = address, port

    def call(
        self, call_id: str, timeout: float, request_bytes: int = 0, response_bytes: int = 0
    ) -> Outcome:
        request = padding({"call": call_id, "bytes": response_bytes}, request_bytes)
        try:
            with socket.socket(_family(self.address), socket.SOCK_DGRAM) as sock:
                sock.settimeout(timeout)
                sock.connect((self.address, self.port))
                sock.send(json.dumps(request).encode())
                reply = _json(sock.recv(65536))
        except (OSError, ValueError) as error:
            return Outcome(False, "", _error_name(error))
        if not isinstance(reply, dict) or "error" in reply:
            error = reply.get("error", "bad reply") if isinstance(reply, dict) else "bad reply"
            return Outcome(
                False, str(reply.get("pod", "")) if isinstance(reply, dict) else "", str(error)
            )
        return Outcome(True, str(reply.get("pod", "?")))

    def close(self) -> None:
        pass


def caller(protocol: str, address: str, keep_alive: bool = True) -> HttpCaller | UdpCaller:
    if protocol == "http":
        return HttpCaller(address, keep_alive)
    if protocol == "udp":
        return UdpCaller(address)
    raise ValueError(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _json(data: bytes):
    """JSON from a peer; ValueError also for nesting too deep to decode (a RecursionError)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


def _pod_of(body: bytes) -> str:
    try:
        data = _json(body)
    except ValueError:
        return ""
    return str(data.get("pod", "")) if isinstance(data, dict) else ""


def _error_name(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "Timeout"
    return type(error).__name__


# ---------------------------------------------------------------- the answering side


@dataclass(frozen=True)
class Request:
    """A call as a service received it, checked: ``call_id`` '' when absent or malformed."""

    call_id: str
    response_bytes: int


def parse_http_request(path: str, header: str | None, body_length: str | None) -> Request:
    """Raises ValueError naming what is wrong (the handler answers 400 with it)."""
    query = parse_qs(urlsplit(path).query)
    size = _size(query.get("bytes", ["0"])[0], "bytes")
    _size(body_length or "0", "Content-Length")
    return Request(valid_call_id(header), size)


def parse_udp_request(data: bytes) -> Request:
    """Raises ValueError naming what is wrong (the datagram is then dropped)."""
    if len(data) > MAX_UDP_BYTES:
        raise ValueError(f"{len(data)} bytes, more than {MAX_UDP_BYTES}")
    message = _json(data)
    if not isinstance(message, dict):
        raise ValueError("not a JSON object")
    size = _size(str(message.get("bytes", 0)), "bytes")
    if size > MAX_UDP_BYTES:
        raise ValueError(f"bytes: {size} does not fit a datagram (at most {MAX_UDP_BYTES})")
    call = message.get("call")
    return Request(valid_call_id(call if isinstance(call, str) else None), size)


def _size(text: str, what: str) -> int:
    if not text.isdigit() or int(text) > MAX_BYTES:
        raise ValueError(f"{what}: {text[:20]!r} is not a size from 0 to {MAX_BYTES}")
    return int(text)


def timed(call: Callable[[], Outcome], clock: Callable[[], float] = time.time):
    """(sent, done, outcome) of one call."""
    sent = clock()
    outcome = call()
    return sent, clock(), outcome
