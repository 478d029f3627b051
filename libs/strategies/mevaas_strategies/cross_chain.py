"""`cross_chain_arbitrage`: the same token pair priced differently on two configured chains.

With inventory on both chains, the trade is two simultaneous swaps: on the cheap chain spend `x`
of the base token for `y` of the other token; on the dear chain sell `y` of the other token (from
inventory there) for `z` of the base token. Tokens are matched across chains by symbol (and must
have the same decimals, checked at validation). Because the second swap's input is exactly the
first swap's output, the pair of pools composes like a two-hop cycle, so the exact optimum and
the contracts' integer amounts come from the same `optimize` as on-chain cycles; the input is
capped by `max_position` (the inventory allotted per trade). Profit is `z - x` in base units.
Gas is one swap transaction per chain, each priced at its own chain's gas price.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import ClassVar

from mevaas_chain.amm.v2 import SwapLeg
from mevaas_chain.pool_index import Pool
from mevaas_chain.registry import ChainRegistry
from mevaas_strategies.actions import CrossChainLeg, CrossChainSwaps, Hop
from mevaas_strategies.arbitrage import GAS_BASE, GAS_PER_HOP, gas_cost_in, sized
from mevaas_strategies.market import ChainMarket, MarketView
from mevaas_strategies.model import StrategySpec
from mevaas_strategies.plugins import Candidate, Changed, Violation

GAS_PER_LEG = GAS_BASE + GAS_PER_HOP

# (buy chain, buy pool, sell chain, sell pool, other token symbol)
Route = tuple[int, str, int, str, str]


class CrossChainArbitrage:
    type_name: ClassVar[str] = "cross_chain_arbitrage"
    reads_lending: ClassVar[bool] = False

    def __init__(self, spec: StrategySpec) -> None:
        self.spec = spec

    @classmethod
    def validate(cls, spec: StrategySpec, chains: ChainRegistry) -> list[Violation]:
        violations: list[Violation] = []
        if len(spec.chain_ids) != 2:
            violations.append(
                Violation("parameters.chain_ids", "must name exactly two chains", "OUT_OF_RANGE")
            )
            return violations
        if spec.base_token.chain_id not in spec.chain_ids:
            violations.append(
                Violation("allocation.token.chain_id", "must be one of parameters.chain_ids", "UNKNOWN_CHAIN")
            )
        symbols: dict[int, dict[str, int]] = defaultdict(dict)
        for token in spec.tokens:
            try:
                config = chains.get(token.chain_id).token(token.address)
            except KeyError:
                continue  # reported by the generic token check
            symbols[token.chain_id][config.symbol] = config.decimals
        first, second = spec.chain_ids
        shared = set(symbols[first]) & set(symbols[second])
        if len(shared) < 2:
            violations.append(
                Violation(
                    "parameters.tokens",
                    "needs at least two token symbols present on both chains",
                    "OUT_OF_RANGE",
                )
            )
        for symbol in sorted(shared):
            if symbols[first][symbol] != symbols[second][symbol]:
                violations.append(
                    Violation(
                        "parameters.tokens",
                        f"{symbol} has different decimals on chains {first} and {second}",
                        "BAD_FORMAT",
                    )
                )
        return violations

    def _routes(
        self, view: MarketView, a: ChainMarket, b: ChainMarket
    ) -> tuple[list[Route], dict[str, list[int]]]:
        spec = self.spec
        key = ("xchain", a.chain_id, a.epoch, b.chain_id, b.epoch, spec.base_token, spec.tokens, spec.dexes)
        cached = view.memo.get(key)
        if cached is None:
            base_symbol = (
                a.symbols.get(spec.base_token.address)
                if spec.base_token.chain_id == a.chain_id
                else (b.symbols.get(spec.base_token.address))
            )
            by_pair: dict[int, dict[str, list[Pool]]] = {}
            for market in (a, b):
                tokens = spec.tokens_on(market.chain_id)
                bases = [t for t in tokens if market.symbols.get(t) == base_symbol]
                pools: dict[str, list[Pool]] = defaultdict(list)
                for pool in market.pools.values():
                    if spec.dexes and pool.dex not in spec.dexes:
                        continue
                    if pool.token0 not in tokens or pool.token1 not in tokens:
                        continue
                    for base in bases:
                        if base in (pool.token0, pool.token1):
                            other = pool.token1 if pool.token0 == base else pool.token0
                            pools[market.symbols.get(other, other)].append(pool)
                by_pair[market.chain_id] = pools
            routes: list[Route] = []
            for symbol in sorted(set(by_pair[a.chain_id]) & set(by_pair[b.chain_id])):
                for pa in by_pair[a.chain_id][symbol]:
                    for pb in by_pair[b.chain_id][symbol]:
                        routes.append((a.chain_id, pa.address, b.chain_id, pb.address, symbol))
                        routes.append((b.chain_id, pb.address, a.chain_id, pa.address, symbol))
            by_pool: dict[str, list[int]] = defaultdict(list)
            for i, (_, buy, _, sell, _) in enumerate(routes):
                by_pool[buy].append(i)
                by_pool[sell].append(i)
            cached = (routes, dict(by_pool))
            view.memo[key] = cached
        result: tuple[list[Route], dict[str, list[int]]] = cached
        return result

    def on_market_update(self, market: MarketView, changed: Changed) -> list[Candidate]:
        if len(self.spec.chain_ids) != 2:
            return []
        a, b = (market.chain(c) for c in self.spec.chain_ids)
        if a is None or b is None:
            return []
        routes, by_pool = self._routes(market, a, b)
        ids: Sequence[int]
        if changed is None:
            ids = range(len(routes))
        else:
            touched: set[int] = set()
            for chain_id in self.spec.chain_ids:
                for pool in changed.get(chain_id, ()):
                    touched.update(by_pool.get(pool, ()))
            ids = sorted(touched)
        markets = {a.chain_id: a, b.chain_id: b}
        found = [self._evaluate(market, markets, routes[i]) for i in ids]
        return [c for c in found if c is not None]

    def _evaluate(self, view: MarketView, markets: dict[int, ChainMarket], route: Route) -> Candidate | None:
        spec = self.spec
        buy_chain, buy_address, sell_chain, sell_address, _ = route
        buy_market, sell_market = markets[buy_chain], markets[sell_chain]
        buy, sell = buy_market.pools[buy_address], sell_market.pools[sell_address]
        base_symbol = markets[spec.base_token.chain_id].symbols.get(spec.base_token.address)
        base_buy = buy.token0 if buy_market.symbols.get(buy.token0) == base_symbol else buy.token1
        other_buy = buy.token1 if base_buy == buy.token0 else buy.token0
        other_symbol = buy_market.symbols.get(other_buy)
        other_sell = sell.token0 if sell_market.symbols.get(sell.token0) == other_symbol else sell.token1
        base_sell = sell.token1 if other_sell == sell.token0 else sell.token0
        legs = [
            SwapLeg(*buy.reserves_for(base_buy), buy.fee_bps),
            SwapLeg(*sell.reserves_for(other_sell), sell.fee_bps),
        ]
        sizing = sized(view, legs, spec.max_position)
        if sizing is None:
            return None
        amount_in, amounts = sizing
        costs = [
            gas_cost_in(view, buy_market, base_buy, GAS_PER_LEG),
            gas_cost_in(view, sell_market, base_sell, GAS_PER_LEG),
        ]
        if costs[0] is None or costs[1] is None:
            return None
        gas_cost = costs[0] + costs[1]
        profit = amounts[-1] - amount_in
        if profit - gas_cost <= 0 or profit - gas_cost < spec.min_profit:
            return None
        return Candidate(
            chain_id=buy_chain,
            chain_ids=(buy_chain, sell_chain),
            action=CrossChainSwaps(
                (
                    CrossChainLeg(
                        buy_chain,
                        (
                            Hop(
                                buy_chain,
                                buy.address,
                                buy.dex,
                                base_buy,
                                other_buy,
                                amounts[0],
                                amounts[1],
                                buy.fee_bps,
                            ),
                        ),
                        amounts[0],
                    ),
                    CrossChainLeg(
                        sell_chain,
                        (
                            Hop(
                                sell_chain,
                                sell.address,
                                sell.dex,
                                other_sell,
                                base_sell,
                                amounts[1],
                                amounts[2],
                                sell.fee_bps,
                            ),
                        ),
                        amounts[1],
                    ),
                )
            ),
            expected_profit=profit,
            profit_token=spec.base_token,
            gas_estimate=2 * GAS_PER_LEG,
            gas_price=buy_market.gas_price,
            gas_cost=gas_cost,
        )
