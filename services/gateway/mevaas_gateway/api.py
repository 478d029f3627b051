"""The HTTP/JSON API: each request is transcoded to the service's gRPC RPC and the reply (or
its google.rpc.Status) back to JSON. The gateway authenticates only to know whose cache and
which live events a caller may see; whether a call is allowed is decided by the service."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message

from mevaas_core import jsoninput
from mevaas_core.auth import Principal, TokenVerifier
from mevaas_core.errors import ApiError
from mevaas_core.grpckit.ratelimit import TenantRateLimiter
from mevaas_gateway.domain import http_errors
from mevaas_gateway.domain.cache import ResponseCache
from mevaas_gateway.domain.http_errors import HttpError
from mevaas_gateway.domain.routes import Route, query_to_json
from mevaas_gateway.sessions import CSRF_HEADER, SESSION_COOKIE, Session, SessionSealer
from mevaas_gateway.upstream import FORWARDED_HEADERS, Upstreams

ALL_UPSTREAMS = ("tenancy", "strategy", "risk", "execution", "analytics")
MAX_BODY_BYTES = 1 << 20


class GatewayError(Exception):
    def __init__(self, error: HttpError) -> None:
        super().__init__(error.body.get("message", ""))
        self.error = error


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refused once it passes ``limit`` (``content.read(n)`` returns as soon as
    some bytes arrived: a large body came back cut at a chunk boundary, hence "not JSON")."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise GatewayError(http_errors.error(grpc.StatusCode.INVALID_ARGUMENT, "body too large"))
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class Caller:
    token: str
    principal: Principal
    session: Session | None


def error_response(error: HttpError) -> web.Response:
    return web.json_response(error.body, status=error.http_status, headers=error.headers)


def message_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


class HttpApi:
    def __init__(
        self,
        routes: Mapping[str, Route],
        upstreams: Upstreams,
        verifier: TokenVerifier,
        sealer: SessionSealer,
        cache: ResponseCache,
        limiter: TenantRateLimiter,
    ) -> None:
        self.routes = routes
        self.upstreams = upstreams
        self.verifier = verifier
        self.sealer = sealer
        self.cache = cache
        self.limiter = limiter

    # -- who is calling ---------------------------------------------------------------------

    def session_of(self, request: web.Request) -> Session | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        return self.sealer.unseal(cookie) if cookie else None

    async def caller(self, request: web.Request) -> Caller | None:
        """The caller from `Authorization: Bearer`, `X-API-Key` or the portal session, in that order."""
        header = request.headers.get("Authorization", "")
        session = None
        if header.lower().startswith("bearer "):
            token = header[7:].strip()
        elif request.headers.get("X-API-Key"):
            token = await self._exchange(request.headers["X-API-Key"].strip())
        else:
            session = self.session_of(request)
            if session is None:
                return None
            token = await self._exchange(session.credential)
        try:
            principal = self.verifier.verify(token)
        except ApiError as exc:
            raise GatewayError(http_errors.error(exc.code, exc.message)) from None
        return Caller(token, principal, session)

    async def _exchange(self, credential: str) -> str:
        try:
            return await self.upstreams.access_token(credential)
        except grpc.aio.AioRpcError as exc:
            raise GatewayError(http_errors.from_rpc_error(exc)) from None

    def throttle(self, principal: Principal) -> None:
        """The plan's rate limit, with the same buckets as the services (libs/core): replies served
        from the cache or streamed never reach a service, so the gateway counts them itself."""
        wait = self.limiter.try_acquire(
            f"tenant:{principal.tenant_id}", principal.rate_per_second, principal.burst
        )
        if wait > 0:
            raise GatewayError(
                http_errors.rate_limited(
                    f"rate limit of {principal.rate_per_second:g} calls/s exceeded", wait
                )
            )

    @staticmethod
    def check_csrf(request: web.Request, caller: Caller | None) -> None:
        """A session cookie rides along with any request the browser makes, so a mutating request
        that authenticates by cookie must also prove it came from the portal's own script."""
        if caller is None or caller.session is None or request.method in ("GET", "HEAD"):
            return
        if request.headers.get(CSRF_HEADER, "") != caller.session.csrf:
            raise GatewayError(
                http_errors.error(grpc.StatusCode.PERMISSION_DENIED, "missing or wrong CSRF token")
            )

    # -- the transcoded RPCs ----------------------------------------------------------------

    async def handle_rpc(self, request: web.Request) -> web.StreamResponse:
        route = self.routes.get(request.path)
        if route is None:
            return error_response(
                http_errors.error(grpc.StatusCode.NOT_FOUND, f"no RPC at {request.path}; see /openapi.json")
            )
        if request.method == "GET" and not route.read_only:
            return error_response(
                http_errors.error(grpc.StatusCode.INVALID_ARGUMENT, f"{route.method} changes state: use POST")
            )
        try:
            message = await self.parse(request, route)
            caller = await self.caller(request)
            self.check_csrf(request, caller)
            reply = await self.invoke(request, route, message, caller)
        except GatewayError as exc:
            return error_response(exc.error)
        return web.Response(body=reply, content_type="application/json")

    async def parse(self, request: web.Request, route: Route) -> Message:
        if request.method == "GET":
            data: Any = query_to_json(route, request.query)
        else:
            raw = await read_body(request, MAX_BODY_BYTES)
            try:
                data = jsoninput.loads(raw) if raw.strip() else {}
            except ValueError as exc:
                raise GatewayError(
                    http_errors.error(
                        grpc.StatusCode.INVALID_ARGUMENT, "body is not JSON", ("body", str(exc)[:200])
                    )
                ) from None
        if not isinstance(data, dict):
            # ParseDict takes any iterable and fails with a TypeError on the rest (`1`, `null`).
            raise GatewayError(
                http_errors.error(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"body is not a {route.request_type.DESCRIPTOR.full_name}",
                    ("body", "must be a JSON object"),
                )
            )
        message = route.request_type()
        try:
            json_format.ParseDict(data, message)
        except json_format.ParseError as exc:
            raise GatewayError(
                http_errors.error(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"body is not a {route.request_type.DESCRIPTOR.full_name}",
                    ("body", str(exc)[:200]),  # the parser quotes the value: it may be 1 MB
                )
            ) from None
        return message

    async def invoke(
        self, request: web.Request, route: Route, message: Message, caller: Caller | None
    ) -> bytes:
        """Call the RPC (or answer from the cache) and return the reply as JSON bytes."""
        payload = message.SerializeToString(deterministic=True)
        key = generation = None
        if caller is not None:
            self.throttle(caller.principal)
            if route.cacheable:
                key = self.cache.key(
                    caller.principal.tenant_id, route.upstream, caller.principal.roles, route.path, payload
                )
                hit = self.cache.get(key)
                if hit is not None:
                    return hit
                generation = self.cache.generation(key)
        metadata = [(h, request.headers[h]) for h in FORWARDED_HEADERS if h in request.headers]
        if caller is not None:
            metadata.append(("authorization", f"Bearer {caller.token}"))
        try:
            raw = await self.upstreams.call(route.upstream, route.grpc_path, payload, metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED and caller is not None and caller.session:
                self.upstreams.forget(caller.session.credential)
            raise GatewayError(http_errors.from_rpc_error(exc)) from None
        except LookupError as exc:
            raise GatewayError(http_errors.error(grpc.StatusCode.UNAVAILABLE, str(exc))) from None
        body = json.dumps(message_json(route.response_type.FromString(raw))).encode()
        if key is not None and generation is not None:
            self.cache.put(key, body, generation)
        elif caller is not None and not route.read_only:
            # Events of this change reach the cache later (outbox relay): drop the tenant's replies now.
            self.cache.invalidate(caller.principal.tenant_id, ALL_UPSTREAMS)
        return body

    def add_routes(self, app: web.Application) -> None:
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]] = self.handle_rpc
        app.router.add_route("POST", "/v1/{service}/{method}", handler)
        app.router.add_route("GET", "/v1/{service}/{method}", handler)
