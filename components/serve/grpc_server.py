"""fareflow's gRPC server: :class:`FareGRPCServer` (a KServe ``GRPCServer``) and its interceptor.

The server listens on the address ``--host`` chooses, without ``SO_REUSEPORT`` (a port in use
is an error, not a second server sharing it). :class:`FareGRPCInterceptor` answers a client's
mistake with the REST messages (INVALID_ARGUMENT, NOT_FOUND, one INFO line) and an oversized
message with the REST limit's message (RESOURCE_EXHAUSTED). See docs/serve.md.
"""

from __future__ import annotations

from concurrent import futures

from kserve.errors import InvalidInput, ModelNotFound
from kserve.logging import logger
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.server import GRPCServer

from components.common.errors import UserError

from .limits import limit_message


class FareGRPCInterceptor(ExceptionToStatusInterceptor):
    """KServe's exception-to-status mapping with one-line INFO logs for a client's mistake and the
    REST limit (and message) for an oversized request."""

    def __init__(self, max_request_bytes: int, request_logging: bool) -> None:
        super().__init__()
        self.max_request_bytes = max_request_bytes
        self.request_logging = request_logging

    async def intercept(self, method, request_or_iterator, context, method_name):
        byte_size = getattr(request_or_iterator, "ByteSize", None)
        if byte_size is not None:
            size = byte_size()
            if size > self.max_request_bytes:
                message = limit_message(size, self.max_request_bytes)
                self._log(method_name, "RESOURCE_EXHAUSTED", message)
                await context.abort(_grpc().StatusCode.RESOURCE_EXHAUSTED, message)
        return await super().intercept(method, request_or_iterator, context, method_name)

    async def handle_exception(self, ex, request_or_iterator, context, method_name):
        grpc = _grpc()
        if isinstance(ex, InvalidInput | UserError):
            self._log(method_name, "INVALID_ARGUMENT", str(ex))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(ex))
        elif isinstance(ex, ModelNotFound):
            self._log(method_name, "NOT_FOUND", str(ex))
            await context.abort(grpc.StatusCode.NOT_FOUND, str(ex))
        else:
            await super().handle_exception(ex, request_or_iterator, context, method_name)

    def _log(self, method_name: str, status: str, message: str) -> None:
        if self.request_logging:
            logger.info("%s %s: %s", status, method_name, message)


def _grpc():
    import grpc

    return grpc


class FareGRPCServer(GRPCServer):
    """KServe's gRPC server on a chosen address, without SO_REUSEPORT (so a port in use is an
    error, not a second server sharing it), with :class:`FareGRPCInterceptor`."""

    def __init__(self, *args, address: str, max_request_bytes: int, request_logging: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.address = address
        self.max_request_bytes = max_request_bytes
        self.request_logging = request_logging

    async def start(self, max_workers):
        from grpc import aio
        from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
        from kserve.protocol.grpc.interceptors import LoggingInterceptor
        from kserve.protocol.grpc.servicer import InferenceServicer

        interceptors = [FareGRPCInterceptor(self.max_request_bytes, self.request_logging)]
        if self.request_logging:
            interceptors.insert(0, LoggingInterceptor())
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=interceptors,
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                # Above the limit, so FareGRPCInterceptor (not the gRPC core) answers up to 4x it.
                ("grpc.max_receive_message_length", 4 * self.max_request_bytes),
            ],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceServicer(self._data_plane, self._model_repository_extension), self._server
        )
        try:
            bound = self._server.add_insecure_port(self.address)
        except RuntimeError:
            bound = 0
        if not bound:
            raise UserError(f"--grpc_port: cannot listen on {self.address} (already in use?)")
        logger.info("Starting gRPC server on %s with %d workers", self.address, max_workers)
        await self._server.start()
        await self._server.wait_for_termination()
