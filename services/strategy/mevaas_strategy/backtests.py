"""Backtests are run by analytics, which records the market history they replay: StrategyService
forwards Backtest/GetBacktest/CompareBacktestToLive over NATS request/reply, the caller's tenant in
the tenant-id header. Analytics reads the strategy version it replays from `strategy.rpc.get_strategy`.

Subjects (served by analytics, queue group ``analytics-backtests``):
* ``analytics.rpc.backtest`` strategy.v1.Backtest (id, strategy, version, block range, assumptions)
  -> the finished strategy.v1.Backtest; a known backtest_id answers the stored result, so the id
  (derived from the tenant and the idempotency key) makes Backtest idempotent;
* ``analytics.rpc.backtest.get`` GetBacktestRequest -> GetBacktestResponse;
* ``analytics.rpc.backtest.compare`` CompareBacktestToLiveRequest -> CompareBacktestToLiveResponse;
* ``analytics.rpc.backtest.list`` ListBacktestsRequest -> ListBacktestsResponse (newest first,
  keyset pages; a page token of other filters is 400 on page.page_token).

Errors come back as HTTP-style codes: 400 with "field: description", 404, 412 (precondition).
"""

from __future__ import annotations

import uuid
from typing import TypeVar

from google.protobuf.message import Message

from mevaas_core import subjects
from mevaas_core.bus import Bus, NoRespondersError, RemoteError, RequestTimeoutError
from mevaas_core.errors import (
    ApiError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)

BACKTEST_SUBJECT = subjects.BACKTEST_RUN
GET_BACKTEST_SUBJECT = subjects.BACKTEST_GET
COMPARE_SUBJECT = subjects.BACKTEST_COMPARE
LIST_BACKTESTS_SUBJECT = subjects.BACKTEST_LIST
# A replay of the longest allowed range (100000 blocks) of a devnet-sized market fits well within it.
BACKTEST_TIMEOUT_S = 120.0
QUERY_TIMEOUT_S = 10.0
_BACKTEST_IDS = uuid.UUID("6d3c1f0e-8b4a-4e57-9a51-2f1b8c0d7e42")

R = TypeVar("R", bound=Message)


def backtest_id(tenant_id: str, idempotency_key: str) -> str:
    return str(uuid.uuid5(_BACKTEST_IDS, f"{tenant_id}:{idempotency_key}"))


def remote_error(exc: RemoteError, resource: str, name: str) -> ApiError:
    if exc.code == 400:
        field, _, description = exc.message.partition(": ")
        return InvalidArgument(FieldViolation(field, description or exc.message))
    if exc.code == 404:
        return NotFound(resource, name)
    if exc.code == 412:
        return FailedPrecondition(exc.message, subject=resource)
    return Unavailable(f"analytics could not answer: {exc.message}")


async def ask_analytics(
    bus: Bus,
    subject: str,
    message: Message,
    response_type: type[R],
    *,
    tenant_id: str,
    resource: str,
    name: str,
    timeout: float = QUERY_TIMEOUT_S,
) -> R:
    try:
        return await bus.request(subject, message, response_type, tenant_id=tenant_id, timeout=timeout)
    except RemoteError as exc:
        raise remote_error(exc, resource, name) from exc
    except (NoRespondersError, RequestTimeoutError) as exc:
        raise Unavailable("the backtest service (analytics) is not answering") from exc
