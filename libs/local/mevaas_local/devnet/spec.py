"""What the devnet deploys: tokens with realistic decimals and USD prices, and pools per DEX with
their USD liquidity. Prices on the second DEX are nudged so cross-DEX gaps exist from block one."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TokenSpec:
    symbol: str
    name: str
    decimals: int
    usd_price: float


@dataclass(frozen=True)
class PoolSpec:
    token_a: str
    token_b: str
    usd_liquidity: float


@dataclass(frozen=True)
class DexSpec:
    name: str
    pools: tuple[PoolSpec, ...]
    # Max relative price skew applied per pool (seeded), so DEXes disagree slightly.
    price_skew: float = 0.0


@dataclass(frozen=True)
class ChainSpec:
    chain_id: int
    name: str
    tokens: tuple[TokenSpec, ...]
    dexes: tuple[DexSpec, ...]
    weth_usd_price: float = 3000.0
    seed: int = 7
    demo_accounts: int = 4
    token_grant_usd: float = 5_000_000.0
    # Aave V3 market with this many simulated borrowers (None: no lending market on this chain).
    aave_borrowers: int | None = 40
    # Uniswap V3 (factory, router, quoter, position manager; `uniswap_v3.DEFAULT_V3_POOLS`), traded
    # by the market simulator and allowed by the executor.
    uniswap_v3: bool = False
    extra: dict[str, str] = field(default_factory=dict)


TOKENS = (
    TokenSpec("USDC", "USD Coin", 6, 1.0),
    TokenSpec("USDT", "Tether USD", 6, 1.0),
    TokenSpec("DAI", "Dai Stablecoin", 18, 1.0),
    TokenSpec("WBTC", "Wrapped BTC", 8, 60_000.0),
    TokenSpec("LINK", "ChainLink Token", 18, 15.0),
    TokenSpec("UNI", "Uniswap", 18, 8.0),
    TokenSpec("AAVE", "Aave Token", 18, 150.0),
    TokenSpec("MKR", "Maker", 18, 1_500.0),
)

_M = 1_000_000.0

UNISWAP = DexSpec(
    "uniswap",
    (
        PoolSpec("WETH", "USDC", 20 * _M),
        PoolSpec("WETH", "USDT", 10 * _M),
        PoolSpec("WETH", "DAI", 8 * _M),
        PoolSpec("WBTC", "WETH", 15 * _M),
        PoolSpec("WBTC", "USDC", 6 * _M),
        PoolSpec("USDC", "USDT", 10 * _M),
        PoolSpec("USDC", "DAI", 6 * _M),
        PoolSpec("LINK", "WETH", 4 * _M),
        PoolSpec("UNI", "WETH", 3 * _M),
        PoolSpec("AAVE", "WETH", 3 * _M),
        PoolSpec("MKR", "WETH", 2 * _M),
        PoolSpec("LINK", "USDC", 1.5 * _M),
    ),
)

SUSHISWAP = DexSpec(
    "sushiswap",
    (
        PoolSpec("WETH", "USDC", 8 * _M),
        PoolSpec("WETH", "USDT", 4 * _M),
        PoolSpec("WETH", "DAI", 3 * _M),
        PoolSpec("WBTC", "WETH", 5 * _M),
        PoolSpec("USDC", "USDT", 3 * _M),
        PoolSpec("LINK", "WETH", 2 * _M),
        PoolSpec("UNI", "WETH", 1.5 * _M),
        PoolSpec("AAVE", "WETH", 1.5 * _M),
        PoolSpec("MKR", "WETH", 1 * _M),
        PoolSpec("UNI", "USDC", 1 * _M),
    ),
    price_skew=0.004,
)

MAIN_CHAIN = ChainSpec(chain_id=31337, name="devnet", tokens=TOKENS, dexes=(UNISWAP, SUSHISWAP))

SECOND_CHAIN = ChainSpec(
    chain_id=31338,
    name="devnet-b",
    tokens=tuple(t for t in TOKENS if t.symbol in {"USDC", "USDT", "WBTC", "LINK"}),
    dexes=(
        DexSpec(
            "uniswap",
            (
                PoolSpec("WETH", "USDC", 6 * _M),
                PoolSpec("WETH", "USDT", 4 * _M),
                PoolSpec("WBTC", "WETH", 4 * _M),
                PoolSpec("LINK", "WETH", 2 * _M),
                PoolSpec("USDC", "USDT", 3 * _M),
            ),
            price_skew=0.006,
        ),
    ),
    seed=11,
)
