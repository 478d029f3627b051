"""Every failure of the Protect RPC as the client sees it, decided in one table: the JSON-RPC 2.0
error object (standard codes for the envelope, EIP-1474's -32000..-32099 server errors for the
rest) and the HTTP status and headers of the response that carries it.

It follows the gRPC interceptor's error mapping (mevaas_core.grpckit.interceptor): a domain error
(``mevaas_core.errors``) says what it is; a database or bus outage is "unavailable" with a safe
message (the driver's text stays in the log); anything else is an internal error, logged, with
nothing of it shown. Over HTTP a wallet or bot must also know when to come back, so an outage is
HTTP 503 and a rate limit HTTP 429, both with ``Retry-After``; a bad or revoked API key is 401.
Errors of a call itself (bad params, a revert, an unknown method) stay HTTP 200, as every
Ethereum node answers them."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from mevaas_chain.client import RpcError, TransientRpcError
from mevaas_core.errors import (
    ApiError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from mevaas_core.outages import SAFE_MESSAGE, is_outage
from mevaas_execution.protection.domain import jsonrpc as j

log = logging.getLogger(__name__)

# How long a client should wait after an outage before it tries again: long enough for a
# restarted dependency's health check and a channel's reconnect, short for a wallet's user.
UNAVAILABLE_RETRY_AFTER_SECONDS = 2
CHAIN_UNREACHABLE = "the chain's node behind this endpoint is unreachable; retry later"


@dataclass(frozen=True, slots=True)
class Failure:
    code: int
    message: str
    http_status: int = 200
    data: Any = None
    retry_after_seconds: int | None = None

    def headers(self) -> dict[str, str]:
        if self.retry_after_seconds is None:
            return {}
        return {"Retry-After": str(self.retry_after_seconds)}


def _unavailable(message: str) -> Failure:
    return Failure(
        j.RESOURCE_UNAVAILABLE,
        message,
        503,
        {"retryAfterSeconds": UNAVAILABLE_RETRY_AFTER_SECONDS},
        UNAVAILABLE_RETRY_AFTER_SECONDS,
    )


def _api_failure(exc: ApiError) -> Failure:
    if isinstance(exc, ResourceExhausted):
        seconds = max(1, math.ceil(exc.retry_after_seconds))
        return Failure(j.LIMIT_EXCEEDED, exc.message, 429, {"retryAfterSeconds": seconds}, seconds)
    if isinstance(exc, Unavailable):
        return _unavailable(exc.message)
    if isinstance(exc, Unauthenticated):
        return Failure(j.UNAUTHORIZED, exc.message, 401)
    if isinstance(exc, PermissionDenied):
        return Failure(j.UNAUTHORIZED, exc.message, 403)
    if isinstance(exc, NotFound):
        return Failure(j.RESOURCE_NOT_FOUND, exc.message)
    return Failure(j.INVALID_INPUT, exc.message)


def _http_failure(exc: web.HTTPException) -> Failure:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return Failure(j.LIMIT_EXCEEDED, "the request body is too large (at most 1 MiB)", 413)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return Failure(j.INVALID_REQUEST, "JSON-RPC requests are POSTed", 405)
    if isinstance(exc, web.HTTPNotFound):
        return Failure(j.INVALID_REQUEST, "no such endpoint: POST /rpc/<chain id>[/<API key>]", 404)
    if exc.status < 500:
        return Failure(j.INVALID_REQUEST, exc.reason, exc.status)
    return Failure(j.INTERNAL_ERROR, "internal error", 500)


def failure(exc: BaseException, what: str = "Protect RPC") -> Failure:
    """The client's view of ``exc``, raised while serving ``what`` (named in the log)."""
    if isinstance(exc, j.JsonRpcError):
        return Failure(exc.code, exc.message, exc.http_status, exc.data)
    if isinstance(exc, RpcError):  # the chain's own answer to a read, passed on as is
        return Failure(exc.code, exc.message, 200, exc.data)
    if isinstance(exc, ApiError):
        return _api_failure(exc)
    if isinstance(exc, web.HTTPException):
        return _http_failure(exc)
    if isinstance(exc, TransientRpcError):
        log.warning("%s: the chain is unreachable: %s", what, exc)
        return _unavailable(CHAIN_UNREACHABLE)
    if is_outage(exc):
        log.warning("%s: dependency unavailable: %r", what, exc)
        return _unavailable(SAFE_MESSAGE)
    log.error("%s failed", what, exc_info=exc)
    return Failure(j.INTERNAL_ERROR, "internal error", 500)


def response(fail: Failure, ids: list[Any] | None, *, batch: bool) -> web.Response:
    """The response for a failure of the whole request: one error object per request in it (each
    with its id), or one with a null id when the requests could not be read."""
    errors = [j.error(rid, fail.code, fail.message, fail.data) for rid in (ids or [None])]
    return web.json_response(
        errors if batch and ids else errors[0], status=fail.http_status, headers=fail.headers()
    )


@web.middleware
async def json_rpc_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Whatever escapes a handler (an unknown path, a body over the limit, an outage while
    reading the ordering log, a bug) still answers a JSON-RPC error object, never aiohttp's
    plain-text page."""
    try:
        reply: web.StreamResponse = await handler(request)
        return reply
    except Exception as exc:
        # The route's pattern, not the path: a path can hold the caller's API key.
        resource = request.match_info.route.resource
        where = resource.canonical if resource is not None else "an unknown path"
        return response(failure(exc, f"{request.method} {where}"), None, batch=False)
