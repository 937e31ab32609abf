"""Thin gRPC adapters around :class:`SpaAuthority` (signalling type 3, SG -> SPA).

The server side only reads the clock, takes a lock and hands the request to the authority;
requests that are not protobuf are answered INVALID_ARGUMENT and counted as ``UNDECODABLE``
(:mod:`dmsc.proto.rpc`). The client side turns every transport failure (SPA down, deadline,
refused) into an ordinary reject with ``REJECT_SPA_UNAVAILABLE``, so an SG treats "cannot ask"
like "not authenticated": the prefix is not advertised, and the SG never crashes because its SPA
did.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent import futures

import grpc

from dmsc.errors import ConfigError, DecodeError
from dmsc.proto import dmsc_pb2, dmsc_pb2_grpc
from dmsc.proto.rpc import add_decoding_servicer
from dmsc.spa.authority import UNDECODABLE, SpaAuthority

log = logging.getLogger(__name__)

Clock = Callable[[], float]
DEFAULT_ADDRESS = "[::]:50051"
MAX_WORKERS = 4


class PrefixAuthenticationServicer(dmsc_pb2_grpc.PrefixAuthenticationServicer):
    """Serves ``Authenticate`` from one authority; calls are serialized by a lock."""

    def __init__(self, authority: SpaAuthority, clock: Clock = time.time) -> None:
        self.authority = authority
        self.clock = clock
        self._lock = threading.Lock()

    def Authenticate(  # name fixed by the generated base class
        self, request: dmsc_pb2.AuthRequest, context: grpc.ServicerContext
    ) -> dmsc_pb2.AuthReply:
        with self._lock:
            return self.authority.authenticate(request, self.clock())

    def count_undecodable(self, _method: str, _error: DecodeError) -> None:
        with self._lock:
            self.authority.counters[UNDECODABLE] += 1


def start_server(
    authority: SpaAuthority, address: str = DEFAULT_ADDRESS, clock: Clock = time.time
) -> tuple[grpc.Server, int]:
    """Start serving on ``address`` and return the server and the bound port (useful with
    port 0, which asks the kernel for a free one)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_WORKERS))
    servicer = PrefixAuthenticationServicer(authority, clock)
    add_decoding_servicer(server, "PrefixAuthentication", servicer, servicer.count_undecodable)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as error:  # grpc >= 1.49 raises instead of returning 0
        server.stop(None)
        raise ConfigError(
            f"SPA cannot listen on {address!r}: {error} (address in use or not local?)"
        ) from None
    if port == 0:
        server.stop(None)
        raise ConfigError(f"SPA cannot listen on {address!r} (address in use or not local?)")
    server.start()
    log.info("SPA (key %s) listening on %s, port %d", authority.key_id, address, port)
    return server, port


def serve(
    authority: SpaAuthority, address: str = DEFAULT_ADDRESS, clock: Clock = time.time
) -> grpc.Server:
    """Start serving on ``address``; the caller stops the returned server."""
    server, _port = start_server(authority, address, clock)
    return server


class SpaClient:
    """The SG's side of type 3. Every failure to get an answer is a reject, never an exception."""

    def __init__(self, target: str, timeout_s: float = 2.0) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self._channel = grpc.insecure_channel(target)
        self._stub = dmsc_pb2_grpc.PrefixAuthenticationStub(self._channel)

    def authenticate(self, request: dmsc_pb2.AuthRequest) -> dmsc_pb2.AuthReply:
        try:
            return self._stub.Authenticate(request, timeout=self.timeout_s)
        except grpc.RpcError as error:
            return dmsc_pb2.AuthReply(
                accepted=False,
                code=dmsc_pb2.REJECT_SPA_UNAVAILABLE,
                reason=self._describe(error),
            )

    def _describe(self, error: grpc.RpcError) -> str:
        code = error.code() if isinstance(error, grpc.Call) else None
        details = error.details() if isinstance(error, grpc.Call) else str(error)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"SPA at {self.target} did not answer within {self.timeout_s:g} s"
        status = code.name if code is not None else type(error).__name__
        return f"SPA at {self.target} unavailable ({status}: {details})"

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> SpaClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
