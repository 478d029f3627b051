"""One server interceptor for the whole cross-cutting stack, in a fixed order:

trace (continue the caller's W3C context) -> reject malformed payloads -> authenticate (JWT) ->
authorise (the RPC's role policy) -> rate limit (per tenant, by plan) -> handler -> map errors ->
record metrics. One interceptor instead of six keeps the per-call overhead to a single wrapper.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import grpc
from grpc_status import rpc_status
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode

from mevaas_core.auth import Principal, TokenVerifier
from mevaas_core.errors import (
    ApiError,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from mevaas_core.grpckit.context import _principal
from mevaas_core.grpckit.policy import RpcPolicy
from mevaas_core.grpckit.ratelimit import TenantRateLimiter, peer_host
from mevaas_core.logging import current_tenant_id
from mevaas_core.metrics import GRPC_HANDLED, GRPC_LATENCY

log = logging.getLogger("mevaas.grpc")
if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    Context = Handler = Any
Behaviour = Callable[[Any, Context], Awaitable[Any]]
_tracer = trace.get_tracer("mevaas.grpc")

# Anonymous callers of public RPCs share a bucket per peer address.
PUBLIC_RATE_PER_SECOND = 20.0
PUBLIC_BURST = 40


class _MalformedRequest:
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _safe_deserializer(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    def parse(payload: bytes) -> Any:
        if deserialize is None:
            return payload
        try:
            return deserialize(payload)
        except Exception as exc:
            return _MalformedRequest(f"request payload is not a valid message: {exc.__class__.__name__}")

    return parse


class PlatformInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(
        self,
        service_name: str,
        policies: Mapping[str, RpcPolicy],
        verifier: TokenVerifier,
        limiter: TenantRateLimiter | None = None,
    ) -> None:
        self._service = service_name
        self._policies = policies
        self._verifier = verifier
        self._limiter = limiter or TenantRateLimiter()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        policy = self._policies.get(method)
        # Health and reflection are not ours to guard; only unary RPCs exist in our APIs.
        if handler is None or policy is None or handler.unary_unary is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            self._wrap(method, policy, handler.unary_unary),  # type: ignore[arg-type]
            request_deserializer=_safe_deserializer(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def _wrap(self, method: str, policy: RpcPolicy, inner: Behaviour) -> Behaviour:
        short_method = method.rsplit("/", 1)[-1]

        async def behaviour(request: Any, context: Context) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
            parent = propagate.extract(metadata)
            with _tracer.start_as_current_span(method, context=parent, kind=SpanKind.SERVER) as span:
                principal_token = tenant_token = None
                try:
                    if isinstance(request, _MalformedRequest):
                        raise InvalidArgument(FieldViolation("request", request.reason))
                    principal = self._authenticate(metadata, policy, context)
                    principal_token = _principal.set(principal)
                    if principal is not None:
                        tenant_token = current_tenant_id.set(principal.tenant_id)
                        span.set_attribute("mevaas.tenant_id", principal.tenant_id)
                    return await inner(request, context)
                except ApiError as exc:
                    code = exc.code
                    span.set_status(StatusCode.ERROR, exc.message)
                    status = rpc_status.to_status(exc.to_status())
                    await context.abort(status.code, status.details, status.trailing_metadata)
                except grpc.aio.AbortError:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                except Exception:
                    code = grpc.StatusCode.INTERNAL
                    log.exception("unhandled error in %s", method)
                    span.set_status(StatusCode.ERROR, "internal error")
                    await context.abort(grpc.StatusCode.INTERNAL, "internal error")
                finally:
                    if tenant_token is not None:
                        current_tenant_id.reset(tenant_token)
                    if principal_token is not None:
                        _principal.reset(principal_token)
                    GRPC_HANDLED.labels(self._service, short_method, code.name).inc()
                    GRPC_LATENCY.labels(self._service, short_method).observe(time.perf_counter() - started)

        return behaviour

    def _authenticate(
        self, metadata: Mapping[str, str], policy: RpcPolicy, context: Context
    ) -> Principal | None:
        header = metadata.get("authorization", "")
        if policy.public:
            self._throttle(f"peer:{peer_host(context.peer())}", PUBLIC_RATE_PER_SECOND, PUBLIC_BURST)
            return self._verifier.verify(header[7:]) if header.lower().startswith("bearer ") else None
        if not header.lower().startswith("bearer "):
            raise Unauthenticated("missing 'authorization: Bearer <token>' metadata")
        principal = self._verifier.verify(header[7:].strip())
        if not principal.has_any(policy.roles):
            raise PermissionDenied(
                f"roles {sorted(principal.roles)} may not call this method; needs one of {sorted(policy.roles)}"
            )
        self._throttle(f"tenant:{principal.tenant_id}", principal.rate_per_second, principal.burst)
        return principal

    def _throttle(self, key: str, rate_per_second: float, burst: int) -> None:
        wait = self._limiter.try_acquire(key, rate_per_second, burst)
        if wait > 0:
            raise ResourceExhausted(f"rate limit of {rate_per_second:g} calls/s exceeded", wait)
