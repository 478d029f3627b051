"""A deterministic synthetic Uniswap V2 market for benchmarks, tests and backtests.

Tokens get a USD price (log-normal) and realistic decimals; the first three are the base tokens
WETH, USDC and WBTC. Every token trades against WETH, many also on a second DEX and against USDC or
WBTC, and the rest of the pools pair random tokens. Pool liquidity is log-normal in USD. Each pool's
price deviates from the token prices by a little noise (mostly inside the fee band) and a few pools
are clearly mispriced, so the market holds a handful of real arbitrage opportunities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mevaas_chain.amm.arbitrage import Pool

BASE_SYMBOLS = ("WETH", "USDC", "WBTC")
_BASE_PRICES = (3000.0, 1.0, 60000.0)
_BASE_DECIMALS = (18, 6, 8)


@dataclass(frozen=True, slots=True)
class SyntheticMarket:
    pools: list[Pool]
    base_tokens: tuple[str, ...]
    token_prices: dict[str, float]
    token_decimals: dict[str, int]

    def usd_to_units(self, token: str, usd: float) -> int:
        return int(usd / self.token_prices[token] * 10 ** self.token_decimals[token])


def _address(prefix: int, i: int) -> str:
    return f"0x{prefix:02x}{i:038x}"


def synthetic_market(
    n_pools: int = 10_000,
    n_tokens: int = 2_000,
    *,
    seed: int = 7,
    noise: float = 0.001,
    mispriced_fraction: float = 0.001,
    mispricing: tuple[float, float] = (0.01, 0.04),
) -> SyntheticMarket:
    """Build the market; the same arguments always give the same pools."""
    if n_tokens < 4 or n_pools < n_tokens:
        raise ValueError("need at least 4 tokens and as many pools as tokens")
    rng = np.random.default_rng(seed)
    tokens = [_address(0xA0, i) for i in range(n_tokens)]
    prices = np.exp(rng.normal(0.0, 2.0, n_tokens))
    decimals = rng.choice([18, 18, 18, 18, 6, 8, 9], n_tokens)
    for i, (price, dec) in enumerate(zip(_BASE_PRICES, _BASE_DECIMALS, strict=True)):
        prices[i], decimals[i] = price, dec
    weth, usdc, wbtc = tokens[0], tokens[1], tokens[2]

    pairs: list[tuple[int, int]] = [(0, 1), (0, 1), (0, 2), (0, 2), (1, 2)]
    others = np.arange(3, n_tokens)
    pairs += [(0, int(t)) for t in others]
    pairs += [(0, int(t)) for t in others[rng.random(others.size) < 0.4]]
    pairs += [(1, int(t)) for t in others[rng.random(others.size) < 0.3]]
    pairs += [(1, int(t)) for t in others[rng.random(others.size) < 0.1]]
    pairs += [(2, int(t)) for t in others[rng.random(others.size) < 0.05]]
    while len(pairs) < n_pools:
        a, b = (int(v) for v in rng.integers(3, n_tokens, 2))
        if a != b:
            pairs.append((a, b))
    pairs = pairs[:n_pools]

    liquidity_usd = np.exp(rng.normal(np.log(300_000.0), 1.2, len(pairs)))
    skew = 1.0 + rng.normal(0.0, noise, len(pairs))
    bad = rng.random(len(pairs)) < mispriced_fraction
    skew[bad] = 1.0 + rng.choice([-1.0, 1.0], int(bad.sum())) * rng.uniform(*mispricing, int(bad.sum()))
    fees = rng.choice([30, 30, 30, 25], len(pairs))

    pools: list[Pool] = []
    for i, (a, b) in enumerate(pairs):
        side_usd = liquidity_usd[i] / 2.0
        amount_a = int(side_usd / prices[a] * 10.0 ** int(decimals[a]))
        amount_b = int(side_usd * skew[i] / prices[b] * 10.0 ** int(decimals[b]))
        ta, tb = tokens[a], tokens[b]
        if ta > tb:
            ta, tb, amount_a, amount_b = tb, ta, amount_b, amount_a
        pools.append(Pool(_address(0xB0, i), ta, tb, max(amount_a, 1000), max(amount_b, 1000), int(fees[i])))
    return SyntheticMarket(
        pools=pools,
        base_tokens=(weth, usdc, wbtc),
        token_prices={t: float(p) for t, p in zip(tokens, prices, strict=True)},
        token_decimals={t: int(d) for t, d in zip(tokens, decimals, strict=True)},
    )


def drift(
    market: SyntheticMarket, n_changed: int, seed: int, scale: float = 0.01
) -> dict[str, tuple[int, int]]:
    """New reserves for `n_changed` random pools, as if swaps moved them by up to `scale` (in price)."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(market.pools), size=n_changed, replace=False)
    moves = rng.uniform(-scale, scale, n_changed)
    updates: dict[str, tuple[int, int]] = {}
    for i, move in zip(chosen.tolist(), moves.tolist(), strict=True):
        pool = market.pools[i]
        # A swap keeps k roughly constant: one side up by a factor, the other down by the same.
        factor = 1.0 + move / 2.0
        updates[pool.address] = (
            max(int(pool.reserve0 * factor), 1000),
            max(int(pool.reserve1 / factor), 1000),
        )
    return updates
