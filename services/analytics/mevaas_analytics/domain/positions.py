"""Pure: a treasury holding (wallet and executor balances read from the chain) as a priced
position: exact whole-token amounts, the USD value with its price source and time, or an explicit
unpriced flag with the reason (never a value of 0)."""

from __future__ import annotations

from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas.portfolio.v1 import portfolio_pb2
from mevaas_analytics.domain.fees import whole_tokens
from mevaas_chain.pricing import NATIVE, Priced, Valuation, to_decimal

ZERO_ADDRESS = "0x" + "00" * 20


def token_key(token: common_pb2.Token) -> str:
    """The price sources' key: a lower-case address, or NATIVE for the zero address."""
    address = token.address.lower()
    return NATIVE if address in ("", ZERO_ADDRESS) else address


def exact(amount: int, decimals: int) -> str:
    """Base units as whole tokens, exactly, in plain notation ("1.5", "0.000001", "0")."""
    return f"{whole_tokens(amount, decimals):f}"


def usd(value: Decimal) -> common_pb2.Money:
    return common_pb2.Money(currency_code="USD", amount=f"{value:f}")


def position(
    holding: execution_pb2.TreasuryHolding, valuation: Valuation, realized_pnl: int
) -> portfolio_pb2.Position:
    wallet, executor = int(holding.wallet_balance), int(holding.executor_balance)
    total = wallet + executor
    decimals = holding.token.decimals
    out = portfolio_pb2.Position(
        token=holding.token,
        wallet_address=holding.wallet_address,
        balance=str(total),
        reserved="0",
        available=str(total),
        realized_pnl=str(realized_pnl),
        as_of_block=holding.block_number,
        updated_at=holding.read_at,
        wallet_balance=str(wallet),
        executor_balance=str(executor),
        executor_address=holding.executor_address,
        amount=exact(total, decimals),
        wallet_amount=exact(wallet, decimals),
        executor_amount=exact(executor, decimals),
    )
    if isinstance(valuation, Priced):
        price = valuation.price
        out.notional_value.CopyFrom(usd(to_decimal(valuation.usd)))
        out.price.CopyFrom(usd(to_decimal(price.usd)))
        out.price_source = price.source
        out.quote_block = price.block_number
        if price.observed_at is not None:
            stamp = Timestamp()
            stamp.FromDatetime(price.observed_at)
            out.price_time.CopyFrom(stamp)
    else:
        out.unpriced = True
        out.unpriced_reason = valuation.reason
    return out


def totals(positions: list[portfolio_pb2.Position], response: portfolio_pb2.GetPositionsResponse) -> None:
    """Sums over all pages: the priced value, the unpriced count, and the total only when every
    position is priced (a total that silently left a token out would understate it)."""
    priced = sum((Decimal(p.notional_value.amount) for p in positions if not p.unpriced), Decimal(0))
    unpriced = sum(1 for p in positions if p.unpriced)
    response.priced_notional_value.CopyFrom(usd(priced))
    response.unpriced_count = unpriced
    if not unpriced:
        response.total_notional_value.CopyFrom(usd(priced))
