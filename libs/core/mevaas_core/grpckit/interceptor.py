"""One server interceptor for the whole cross-cutting stack, in a fixed order:

trace (continue the caller's W3C context, take the request id) -> reject malformed payloads -> authenticate (JWT, then
the revocation set: a revoked key's or user's token is UNAUTHENTICATED, a suspended or deleted
tenant's PERMISSION_DENIED) -> authorise (the RPC's role policy) -> rate limit (per tenant, by plan) -> handler -> map errors ->
audit (every mutating call the handler did not record itself, every denied call) -> record
metrics. One interceptor instead of six keeps the per-call overhead to a single wrapper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import grpc
from grpc_status import rpc_status
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode

from mevaas_core import audit
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
from mevaas_core.grpckit.ratelimit import SharedRateLimiter, TenantRateLimiter, peer_host
from mevaas_core.logging import current_tenant_id
from mevaas_core.message_rules import message_violations
from mevaas_core.metrics import GRPC_HANDLED, GRPC_LATENCY
from mevaas_core.outages import SAFE_MESSAGE, is_outage
from mevaas_core.revocation import TENANT, RevocationSet

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
        shared_limiter: SharedRateLimiter | None = None,
        revocations: RevocationSet | None = None,
        audit: audit.AuditSink | None = None,
    ) -> None:
        self._service = service_name
        self._policies = policies
        self._verifier = verifier
        self._limiter = limiter or TenantRateLimiter()
        # Tenants' plans hold across the fleet when a shared limiter is given (see ratelimit).
        self._shared_limiter = shared_limiter
        self._revocations = RevocationSet() if revocations is None else revocations
        self._audit = audit

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        policy = self._policies.get(method)
        # Health and reflection are not ours to guard.
        if handler is None or policy is None:
            return handler
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, policy, handler.unary_stream),
                request_deserializer=_safe_deserializer(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_unary is None:
            # Client and bidirectional streams do not exist in our APIs: refused, never unguarded.
            return None  # type: ignore[return-value]
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
            call = audit.AuditCall(self._service, method, _request_id(metadata))
            audit_token = audit.begin_call(call)
            error: ApiError | None = None
            with _tracer.start_as_current_span(method, context=parent, kind=SpanKind.SERVER) as span:
                principal_token = tenant_token = None
                try:
                    principal = await self._admit(request, metadata, policy, context, call)
                    principal_token = _principal.set(principal)
                    if principal is not None:
                        tenant_token = current_tenant_id.set(principal.tenant_id)
                        span.set_attribute("mevaas.tenant_id", principal.tenant_id)
                    return await inner(request, context)
                except ApiError as exc:
                    code, error = exc.code, exc
                    span.set_status(StatusCode.ERROR, exc.message)
                    status = rpc_status.to_status(exc.to_status())
                    await context.abort(status.code, status.details, status.trailing_metadata)
                except grpc.aio.AbortError:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                except Exception as exc:
                    if is_outage(exc):
                        # The driver's text (hosts, DSNs, SQL) stays in the log.
                        code = grpc.StatusCode.UNAVAILABLE
                        log.warning("%s: dependency unavailable: %r", method, exc)
                        span.set_status(StatusCode.ERROR, "dependency unavailable")
                        await context.abort(grpc.StatusCode.UNAVAILABLE, SAFE_MESSAGE)
                    code = grpc.StatusCode.INTERNAL
                    log.exception("unhandled error in %s", method)
                    span.set_status(StatusCode.ERROR, "internal error")
                    await context.abort(grpc.StatusCode.INTERNAL, "internal error")
                finally:
                    self._audit_call(call, policy, request, code, error)
                    audit.end_call(audit_token)
                    if tenant_token is not None:
                        current_tenant_id.reset(tenant_token)
                    if principal_token is not None:
                        _principal.reset(principal_token)
                    GRPC_HANDLED.labels(self._service, short_method, code.name).inc()
                    GRPC_LATENCY.labels(self._service, short_method).observe(time.perf_counter() - started)

        return behaviour

    def _wrap_stream(self, method: str, policy: RpcPolicy, inner: Any) -> Any:
        """A server stream gets the same checks as a unary call before its first message: payload,
        generic rules, token, roles, the tenant's rate limit; errors map the same way."""
        short_method = method.rsplit("/", 1)[-1]

        async def behaviour(request: Any, context: Context) -> AsyncIterator[Any]:
            code = grpc.StatusCode.OK
            metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
            call = audit.AuditCall(self._service, method, _request_id(metadata))
            error: ApiError | None = None
            principal_token = tenant_token = None
            try:
                principal = await self._admit(request, metadata, policy, context, call)
                principal_token = _principal.set(principal)
                if principal is not None:
                    tenant_token = current_tenant_id.set(principal.tenant_id)
                async for item in inner(request, context):
                    yield item
            except ApiError as exc:
                code, error = exc.code, exc
                status = rpc_status.to_status(exc.to_status())
                await context.abort(status.code, status.details, status.trailing_metadata)
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:
                if is_outage(exc):
                    code = grpc.StatusCode.UNAVAILABLE
                    log.warning("%s: dependency unavailable: %r", method, exc)
                    await context.abort(grpc.StatusCode.UNAVAILABLE, SAFE_MESSAGE)
                code = grpc.StatusCode.INTERNAL
                log.exception("unhandled error in %s", method)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            finally:
                self._audit_call(call, policy, request, code, error)
                # The stream may end in another context than it started in (cancellation).
                with contextlib.suppress(ValueError):
                    if tenant_token is not None:
                        current_tenant_id.reset(tenant_token)
                    if principal_token is not None:
                        _principal.reset(principal_token)
                GRPC_HANDLED.labels(self._service, short_method, code.name).inc()

        return behaviour

    async def _admit(
        self,
        request: Any,
        metadata: Mapping[str, str],
        policy: RpcPolicy,
        context: Context,
        call: audit.AuditCall,
    ) -> Principal | None:
        """What every call passes before its handler runs, unary or stream: a payload that parsed,
        the message's generic rules, the token and roles, the tenant's rate limit."""
        if isinstance(request, _MalformedRequest):
            raise InvalidArgument(FieldViolation("request", request.reason))
        if violations := message_violations(request):
            raise InvalidArgument(violations)
        principal = self._authenticate(metadata, policy, context, call)
        if principal is not None and not policy.public:
            await self._throttle_tenant(principal)
        return principal

    def _authenticate(
        self, metadata: Mapping[str, str], policy: RpcPolicy, context: Context, call: audit.AuditCall
    ) -> Principal | None:
        header = metadata.get("authorization", "")
        if policy.public:
            self._throttle(f"peer:{peer_host(context.peer())}", PUBLIC_RATE_PER_SECOND, PUBLIC_BURST)
            return self._verify(header[7:].strip(), call) if header.lower().startswith("bearer ") else None
        if not header.lower().startswith("bearer "):
            raise Unauthenticated("missing 'authorization: Bearer <token>' metadata")
        principal = self._verify(header[7:].strip(), call)
        if not principal.has_any(policy.roles):
            held, needed = ", ".join(sorted(principal.roles)), ", ".join(sorted(policy.roles))
            raise PermissionDenied(f"roles [{held}] may not call this method; it needs one of [{needed}]")
        return principal

    def _audit_call(
        self,
        call: audit.AuditCall,
        policy: RpcPolicy,
        request: Any,
        code: grpc.StatusCode,
        error: ApiError | None,
    ) -> None:
        if self._audit is None or code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return  # a throttled flood is counted in metrics, not written down call by call
        denied = code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
        if not denied and not (policy.mutates and (code != grpc.StatusCode.OK or not call.recorded)):
            return
        outcome = audit.DENIED if denied else audit.SUCCEEDED if code == grpc.StatusCode.OK else audit.FAILED
        details = {"code": code.name}
        if error is not None:
            details["message"] = error.message[:256]
        parsed = not isinstance(request, _MalformedRequest)
        self._audit.submit(
            audit.build(
                call,
                tenant_id=audit.tenant_of(request, call.principal)
                if parsed
                else audit.tenant_of_principal(call.principal),
                target=audit.target_of(request) if parsed else "",
                outcome=outcome,
                details=details,
            )
        )

    def _verify(self, token: str, call: audit.AuditCall) -> Principal:
        principal = self._verifier.verify(token)
        # The signature is good: a refused call (revoked, wrong role) is recorded as this caller's.
        call.principal = principal
        revoked = self._revocations.revoked_by(principal)
        if revoked == TENANT:
            raise PermissionDenied("the tenant is suspended or deleted; its tokens are no longer accepted")
        if revoked is not None:
            raise Unauthenticated("access token revoked")
        return principal

    async def _throttle_tenant(self, principal: Principal) -> None:
        key, rate = f"tenant:{principal.tenant_id}", principal.rate_per_second
        if self._shared_limiter is None:
            self._throttle(key, rate, principal.burst)
            return
        wait = await self._shared_limiter.try_acquire(key, rate, principal.burst)
        if wait > 0:
            raise ResourceExhausted(f"rate limit of {rate:g} calls/s exceeded", wait)

    def _throttle(self, key: str, rate_per_second: float, burst: int) -> None:
        wait = self._limiter.try_acquire(key, rate_per_second, burst)
        if wait > 0:
            raise ResourceExhausted(f"rate limit of {rate_per_second:g} calls/s exceeded", wait)


def _request_id(metadata: Mapping[str, str]) -> str:
    """The caller's `x-request-id` if it is a sane token, else a new one."""
    given = metadata.get("x-request-id", "")
    if 0 < len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    return uuid.uuid4().hex
