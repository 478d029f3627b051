"""`mevaas backtests`: the tenant's past backtests (StrategyService.ListBacktests) and one of them in
full (GetBacktest). PnL is shown in whole tokens of the backtest's denomination (`--raw`: base
units); ids are printed whole."""

from __future__ import annotations

from typing import Annotated

import typer

from mevaas.common.v1 import common_pb2
from mevaas.strategy.v1 import strategy_pb2
from mevaas_sdk.cli_support import JsonOption, RawOption, console, emit, enum_name, run_call, table
from mevaas_sdk.client import MevaasClient
from mevaas_sdk.units import format_units

app = typer.Typer(help="Backtests: list past runs, show one.", no_args_is_help=True)
PAGE_SIZE = 200


def pnl(metrics: common_pb2.PerformanceMetrics, raw: bool) -> str:
    token = metrics.denomination
    if not metrics.total_pnl or not token.address:
        return ""
    amount = metrics.total_pnl if raw else format_units(metrics.total_pnl, token.decimals)
    return f"{amount} {token.symbol or token.address}"


@app.command("list")
def backtests_list(
    strategy: Annotated[str, typer.Option(help="Only this strategy's backtests.")] = "",
    limit: Annotated[int, typer.Option(help="At most this many (newest first); 0 = all.")] = 0,
    raw: RawOption = False,
    as_json: JsonOption = False,
) -> None:
    """List your backtests, newest first (every page, or --limit)."""

    async def pages(client: MevaasClient) -> strategy_pb2.ListBacktestsResponse:
        combined = strategy_pb2.ListBacktestsResponse()
        token = ""
        while True:
            size = min(PAGE_SIZE, limit - len(combined.backtests)) if limit else PAGE_SIZE
            page = await client.strategies.ListBacktests(
                strategy_pb2.ListBacktestsRequest(
                    page=common_pb2.PageRequest(page_size=size, page_token=token), strategy_id=strategy
                )
            )
            combined.backtests.extend(page.backtests)
            token = page.page.next_page_token
            if not token or (limit and len(combined.backtests) >= limit):
                return combined

    response = run_call(pages)
    if as_json:
        emit(response, True)
        return
    shown = table("backtest_id", "strategy_id", "version", "status", "blocks", "trades", "pnl", "created_at")
    for b in response.backtests:
        span = b.block_range
        shown.add_row(
            b.backtest_id,
            b.strategy_id,
            str(b.strategy_version),
            enum_name(strategy_pb2.BacktestStatus, b.status),
            f"{span.chain_id}:{span.from_block}-{span.to_block}",
            str(b.metrics.trade_count),
            pnl(b.metrics, raw) or b.error,
            b.created_at.ToJsonString() if b.HasField("created_at") else "",
        )
    console.print(shown)


@app.command("get")
def backtests_get(backtest_id: str) -> None:
    """One backtest in full, with its trades and PnL series (JSON)."""
    response = run_call(
        lambda c: c.strategies.GetBacktest(strategy_pb2.GetBacktestRequest(backtest_id=backtest_id))
    )
    emit(response, True)
