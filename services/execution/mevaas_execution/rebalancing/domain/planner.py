"""The rebalance planner (pure): targets + what the wallet holds (read from the chain) + the one
price source + the pools' reserves -> the trades, in exact integers.

* Every target token must be a configured token of its chain and must be priced: a target the
  price source cannot price fails the plan with a reason naming the token (its value is never
  taken as 0).
* The portfolio's value V is the USD value (mid prices, exact fractions) of what the wallet holds
  of the target tokens. A ``target_amount`` is absolute (base units); a ``target_weight_percent``
  w asks for V * w / 100 of the token (rounded down to a base unit). Weights sum to at most 100.
* A token above its target is a seller of its excess, one below a buyer of its shortfall. Each
  buyer (largest USD shortfall first) is funded by the sellers on its chain that share a pool
  with it (largest excess first), trade by trade: the seller spends what covers the shortfall at
  mid prices, capped at its excess. Selling only funds buys: excess that no target token needs
  stays where it is. A buyer left short of more than dust fails the plan, naming the token.
* Each trade is one swap through the deepest pool of the two tokens (one DEX); its expected
  output is Uniswap V2's exact ``getAmountOut`` on the reserves as they will be after the trades
  planned before it (trades run one after the other), and it reverts on chain below
  ``expected * (10000 - max_slippage_bps) / 10000``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction

from mevaas_chain.amm.v2 import get_amount_out
from mevaas_chain.pricing import to_decimal

TokenKey = tuple[int, str]


class PlanningError(Exception):
    """The rebalance cannot be planned; the message says why (and names the token)."""


@dataclass(frozen=True, slots=True)
class Target:
    chain_id: int
    # Lower-case token address.
    token: str
    # Exactly one of: an absolute holding in base units, or a share of the portfolio in percent.
    amount: int | None = None
    weight_percent: Decimal | None = None

    @property
    def key(self) -> TokenKey:
        return (self.chain_id, self.token)


@dataclass(frozen=True, slots=True)
class Asset:
    """A target token as seen when planning: the wallet's balance and the token's price."""

    chain_id: int
    token: str
    symbol: str
    decimals: int
    held: int
    # USD per whole token (exact), None when unpriced (then `unpriced_reason` says why).
    usd: Fraction | None
    unpriced_reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.symbol or self.token} ({self.chain_id}:{self.token})"

    def value(self, units: int) -> Fraction:
        assert self.usd is not None
        return self.usd * Fraction(units, 10**self.decimals)

    def units(self, usd: Fraction) -> int:
        """Whole base units worth at most ``usd`` (rounded down)."""
        assert self.usd is not None and self.usd > 0
        return int(usd * 10**self.decimals / self.usd)


@dataclass(frozen=True, slots=True)
class PoolState:
    chain_id: int
    dex: str
    address: str
    token0: str
    token1: str
    reserve0: int
    reserve1: int
    fee_bps: int = 30

    def trades(self, a: str, b: str) -> bool:
        return {self.token0, self.token1} == {a, b} and self.reserve0 > 0 and self.reserve1 > 0

    def reserves_from(self, token_in: str) -> tuple[int, int]:
        return (self.reserve0, self.reserve1) if token_in == self.token0 else (self.reserve1, self.reserve0)

    def after(self, token_in: str, amount_in: int, amount_out: int) -> PoolState:
        if token_in == self.token0:
            return replace(self, reserve0=self.reserve0 + amount_in, reserve1=self.reserve1 - amount_out)
        return replace(self, reserve0=self.reserve0 - amount_out, reserve1=self.reserve1 + amount_in)


@dataclass(frozen=True, slots=True)
class PlannedTrade:
    chain_id: int
    dex: str
    pool: str
    token_in: str
    token_out: str
    amount_in: int
    expected_out: int
    min_amount_out: int
    fee_bps: int


def target_amounts(targets: Sequence[Target], assets: Mapping[TokenKey, Asset]) -> dict[TokenKey, int]:
    """Each target's holding in base units (weights resolved against the portfolio's value)."""
    for target in targets:
        asset = assets.get(target.key)
        if asset is None:
            raise PlanningError(
                f"target token {target.chain_id}:{target.token} is not a configured token of chain "
                f"{target.chain_id}"
            )
        if asset.usd is None or asset.usd <= 0:
            raise PlanningError(
                f"target token {asset.name} cannot be priced: {asset.unpriced_reason or 'no price'}"
            )
    weights = [t.weight_percent for t in targets if t.weight_percent is not None]
    if sum(weights, Decimal(0)) > 100:
        raise PlanningError(f"the target weights sum to {sum(weights, Decimal(0))}%, more than 100%")
    portfolio = sum((assets[t.key].value(assets[t.key].held) for t in targets), Fraction(0))
    out: dict[TokenKey, int] = {}
    for target in targets:
        asset = assets[target.key]
        if target.amount is not None:
            out[target.key] = target.amount
        else:
            assert target.weight_percent is not None
            out[target.key] = asset.units(portfolio * Fraction(target.weight_percent) / 100)
    return out


def plan_trades(
    targets: Sequence[Target],
    assets: Mapping[TokenKey, Asset],
    pools: Sequence[PoolState],
    max_slippage_bps: int,
) -> list[PlannedTrade]:
    if not 0 < max_slippage_bps < 10_000:
        raise PlanningError("max_slippage_bps must be between 1 and 9999")
    wanted = target_amounts(targets, assets)
    excess = {key: assets[key].held - amount for key, amount in wanted.items() if assets[key].held > amount}
    shortfall = {
        key: assets[key].value(amount - assets[key].held)
        for key, amount in wanted.items()
        if amount > assets[key].held
    }
    book = list(pools)
    trades: list[PlannedTrade] = []
    for buyer in sorted(shortfall, key=lambda k: (-shortfall[k], k)):
        need = shortfall[buyer]
        while need > 0:
            sellers = [
                key
                for key, units in excess.items()
                if key[0] == buyer[0] and units > 0 and _deepest(book, key, buyer) is not None
            ]
            if not sellers:
                break
            seller = min(sellers, key=lambda k: (-assets[k].value(excess[k]), k))
            amount_in = min(excess[seller], assets[seller].units(need))
            if amount_in <= 0:
                break
            index = _deepest(book, seller, buyer)
            assert index is not None
            trade, book[index] = _swap(book[index], seller[1], buyer[1], amount_in, max_slippage_bps)
            trades.append(trade)
            excess[seller] -= amount_in
            need -= assets[seller].value(amount_in)
        _check_funded(assets, buyer, need, excess)
    return trades


def _deepest(book: Sequence[PoolState], seller: TokenKey, buyer: TokenKey) -> int | None:
    """Index of the pool with the most of the seller's token among those trading the pair."""
    found = [
        (pool.reserves_from(seller[1])[0], -i, i)
        for i, pool in enumerate(book)
        if pool.chain_id == seller[0] and pool.trades(seller[1], buyer[1])
    ]
    return max(found)[2] if found else None


def _swap(
    pool: PoolState, token_in: str, token_out: str, amount_in: int, max_slippage_bps: int
) -> tuple[PlannedTrade, PoolState]:
    reserve_in, reserve_out = pool.reserves_from(token_in)
    expected = get_amount_out(amount_in, reserve_in, reserve_out, pool.fee_bps)
    minimum = expected * (10_000 - max_slippage_bps) // 10_000
    if minimum <= 0:
        raise PlanningError(
            f"selling {amount_in} of {token_in} on chain {pool.chain_id} yields {expected} of {token_out}: "
            "too little to trade"
        )
    trade = PlannedTrade(
        pool.chain_id, pool.dex, pool.address, token_in, token_out, amount_in, expected, minimum, pool.fee_bps
    )
    return trade, pool.after(token_in, amount_in, expected)


def _check_funded(
    assets: Mapping[TokenKey, Asset], buyer: TokenKey, need: Fraction, excess: Mapping[TokenKey, int]
) -> None:
    """A shortfall left after every possible trade fails the plan, unless it is dust (worth less
    than one base unit of a token on the chain: what rounding to base units leaves)."""
    dust = max(asset.value(1) for key, asset in assets.items() if key[0] == buyer[0])
    if need <= dust:
        return
    asset = assets[buyer]
    stranded = [assets[k].name for k, units in excess.items() if k[0] == buyer[0] and units > 0]
    detail = (
        f"no pool on chain {buyer[0]} trades it against {', '.join(stranded)}"
        if stranded
        else "the other target tokens hold no excess to sell for it"
    )
    raise PlanningError(
        f"target token {asset.name} cannot be reached: {to_decimal(need, 6)} USD of it stay unfunded ({detail})"
    )
