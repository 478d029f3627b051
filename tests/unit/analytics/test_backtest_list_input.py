"""ListBacktests over the bus refuses a page size or page token it did not issue with a 400, before
any query (the bus fuzzer found a negative page size reaching LIMIT as a 500)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.context import Context

from mevaas.strategy.v1 import strategy_pb2
from mevaas_analytics.backtests import Backtests
from mevaas_core.bus import RequestContext, ServiceError
from mevaas_core.pagination import encode_page_token
from mevaas_core.validation import MAX_PAGE_SIZE


class NoPool:
    """Any query is a failure of the test: bad input must be refused before one."""

    def acquire(self) -> Any:
        raise AssertionError("queried the database")


def handlers() -> Backtests:
    return Backtests(NoPool(), None, None, lambda: None)  # type: ignore[arg-type, return-value]


CONTEXT = RequestContext(
    subject="analytics.rpc.backtest.list", headers={}, tenant_id="t1", trace_context=Context()
)


@pytest.mark.parametrize("size", [-1, -(2**31), MAX_PAGE_SIZE + 1])
async def test_a_page_size_out_of_range_is_a_400(size: int) -> None:
    request = strategy_pb2.ListBacktestsRequest()
    request.page.page_size = size
    with pytest.raises(ServiceError) as refused:
        await handlers().list(request, CONTEXT)
    assert refused.value.code == 400 and "page.page_size" in str(refused.value)


@pytest.mark.parametrize(
    "cursor",
    [
        ("", "2026-01-01T00:00:00", "b1"),  # no offset: not one this API issued
        ("", "yesterday", "b1"),
        ("other-strategy", "2026-01-01T00:00:00+00:00", "b1"),
    ],
)
async def test_a_page_token_this_api_did_not_issue_is_a_400(cursor: tuple[str, str, str]) -> None:
    request = strategy_pb2.ListBacktestsRequest()
    request.page.page_token = encode_page_token(*cursor)
    with pytest.raises(ServiceError) as refused:
        await handlers().list(request, CONTEXT)
    assert refused.value.code == 400 and "page.page_token" in str(refused.value)
