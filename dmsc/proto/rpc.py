"""Register a dmsc.v1 gRPC service whose methods decode their own requests.

grpc's generated ``add_*Servicer_to_server`` decodes each request before the servicer runs, so a
request that is not valid protobuf never reaches it: grpc logs a traceback and answers INTERNAL
or UNKNOWN. Here every method of the service is registered with raw bytes in
(``request_deserializer=None``) and the request is parsed inside with
:func:`dmsc.proto.codec.parse_message`; bytes that do not decode are counted (``on_undecodable``),
logged as one line and answered INVALID_ARGUMENT, and the server carries on. Method paths and
reply encoding are those of the generated code, so its typed client stubs work unchanged.

Works for both server kinds: ``grpc.server`` with plain methods (the SPA) and ``grpc.aio.server``
with coroutine methods (the SG's PodGateway).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

import grpc

from dmsc.errors import DecodeError
from dmsc.proto import dmsc_pb2
from dmsc.proto.codec import parse_message

log = logging.getLogger(__name__)

#: Called with the method's full path (``/dmsc.v1.PodGateway/Withdraw``) and the decode error.
UndecodableHook = Callable[[str, DecodeError], None]


def add_decoding_servicer(
    server: grpc.Server | grpc.aio.Server,
    service_name: str,
    servicer: object,
    on_undecodable: UndecodableHook = lambda _method, _error: None,
) -> None:
    """Serve every method of ``dmsc.v1.<service_name>`` from the same-named servicer method."""
    service = dmsc_pb2.DESCRIPTOR.services_by_name[service_name]
    handlers = {}
    for method in service.methods:
        path = f"/{service.full_name}/{method.name}"
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _decoding(
                getattr(servicer, method.name),
                getattr(dmsc_pb2, method.input_type.name),
                path,
                on_undecodable,
            ),
            request_deserializer=None,  # raw bytes: decoded in _decoding
            response_serializer=getattr(dmsc_pb2, method.output_type.name).SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)


def _decoding(behaviour, request_type, path: str, on_undecodable: UndecodableHook):
    """Wrap ``behaviour(request, context)`` to take the request's raw bytes."""

    def parse(data: bytes, context) -> tuple[object | None, str]:
        """The request, or None and why not (counted and logged here, once)."""
        try:
            return parse_message(request_type, data, f"{path} request ({len(data)} bytes)"), ""
        except DecodeError as error:
            on_undecodable(path, error)
            log.warning("undecodable request from %s: %s", context.peer(), error)
            return None, str(error)

    if inspect.iscoroutinefunction(behaviour):

        async def handle_async(data: bytes, context: grpc.aio.ServicerContext):
            request, problem = parse(data, context)
            if request is None:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
            return await behaviour(request, context)

        return handle_async

    def handle(data: bytes, context: grpc.ServicerContext):
        request, problem = parse(data, context)
        if request is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)  # raises
        return behaviour(request, context)

    return handle
