"""The Protect RPC's one error table (protection/failures.py): each kind of failure is the JSON-RPC
code, HTTP status and Retry-After a client can act on, and nothing internal is shown."""

from __future__ import annotations

import asyncpg
import pytest
from aiohttp import web

from mevaas_chain.client import RpcError, TransientRpcError
from mevaas_core.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from mevaas_core.outages import SAFE_MESSAGE
from mevaas_execution.protection.domain import jsonrpc as j
from mevaas_execution.protection.failures import Failure, failure


@pytest.mark.parametrize(
    ("exc", "code", "status", "retry_after"),
    [
        (j.JsonRpcError(j.INVALID_PARAMS, "bad"), -32602, 200, None),
        (j.JsonRpcError(j.INVALID_REQUEST, "no chain", http_status=404), -32600, 404, None),
        (RpcError(3, "execution reverted", "0x08c379a0"), 3, 200, None),
        (Unauthenticated("API key refused"), -32004, 401, None),
        (PermissionDenied("suspended"), -32004, 403, None),
        (ResourceExhausted("rate limit", 2.3), -32005, 429, 3),
        (ResourceExhausted("rate limit", 0.01), -32005, 429, 1),
        (Unavailable("tenancy is unavailable"), -32002, 503, 2),
        (NotFound("protected transaction", "0x01"), -32001, 200, None),
        (InvalidArgument(FieldViolation("sender", "bad")), -32000, 200, None),
        (web.HTTPRequestEntityTooLarge(max_size=1, actual_size=2), -32005, 413, None),
        (web.HTTPMethodNotAllowed("GET", ["POST"]), -32600, 405, None),
        (web.HTTPNotFound(), -32600, 404, None),
    ],
)
def test_each_failure_maps_to_its_code_status_and_retry_after(
    exc: BaseException, code: int, status: int, retry_after: int | None
) -> None:
    fail = failure(exc)
    assert (fail.code, fail.http_status, fail.retry_after_seconds) == (code, status, retry_after)
    assert ("Retry-After" in fail.headers()) == (retry_after is not None)
    if retry_after is not None:
        assert fail.headers()["Retry-After"] == str(retry_after)
        assert fail.data == {"retryAfterSeconds": retry_after}


def test_outages_are_503_with_a_safe_message_and_bugs_are_500_showing_nothing() -> None:
    cause = asyncpg.PostgresConnectionError("connection to 10.0.0.5:5432 refused (user svc_app)")
    try:
        raise RuntimeError("while listing") from cause
    except RuntimeError as wrapped:
        outage = failure(wrapped)
    assert (outage.code, outage.http_status, outage.message) == (-32002, 503, SAFE_MESSAGE)
    assert outage.headers() == {"Retry-After": "2"}
    chain = failure(TransientRpcError("http://node.internal:8545 refused"))
    assert (chain.code, chain.http_status) == (-32002, 503) and "node.internal" not in chain.message
    bug = failure(KeyError("protected_transaction_id"))
    assert bug == Failure(j.INTERNAL_ERROR, "internal error", 500)


def test_an_id_that_is_not_a_valid_id_is_answered_as_null() -> None:
    assert j.echo_id({"id": 7}) == 7 and j.echo_id({"id": "a"}) == "a" and j.echo_id({}) is None
    for invalid in (True, 1.5, {"x": 1}, [1], "x" * (j.MAX_ID_CHARS + 1)):
        assert j.echo_id({"id": invalid}) is None
        with pytest.raises(j.JsonRpcError) as caught:
            j.parse({"jsonrpc": "2.0", "id": invalid, "method": "eth_chainId"})
        assert caught.value.code == j.INVALID_REQUEST
    assert j.echo_id([1]) is None
