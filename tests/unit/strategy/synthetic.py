"""Synthetic chains and pool states for the strategy unit tests (plain addresses, no RPC)."""

from __future__ import annotations

from mevaas_chain.pool_index import Pool
from mevaas_chain.registry import ChainConfig, DexConfig, TokenConfig
from mevaas_strategies.market import ChainMarket

WETH = "0x" + "11" * 20
USDC = "0x" + "22" * 20
LINK = "0x" + "33" * 20
SYMBOLS = {WETH: "WETH", USDC: "USDC", LINK: "LINK"}
DECIMALS = {WETH: 18, USDC: 6, LINK: 18}
E18 = 10**18


def chain_config(chain_id: int = 1, name: str = "alpha") -> ChainConfig:
    return ChainConfig(
        chain_id=chain_id,
        name=name,
        rpc_url="http://127.0.0.1:1",
        wrapped_native=WETH,
        dexes=[
            DexConfig(name="uni", factory="0x" + "aa" * 20, init_code_hash="0x" + "00" * 32),
            DexConfig(name="sushi", factory="0x" + "bb" * 20, init_code_hash="0x" + "00" * 32),
        ],
        tokens=[TokenConfig(address=a, symbol=s, decimals=DECIMALS[a]) for a, s in SYMBOLS.items()],
    )


def pool(address_byte: str, dex: str, token0: str, token1: str, r0: int, r1: int) -> Pool:
    return Pool("0x" + address_byte * 20, dex, token0, token1, 30, r0, r1)


def market(pools: list[Pool], chain_id: int = 1, base_fee: int = 10 * 10**9, block: int = 100) -> ChainMarket:
    return ChainMarket(
        chain_id=chain_id,
        block_number=block,
        block_hash="0x" + f"{block:064x}",
        base_fee=base_fee,
        priority_fee=10**9,
        pools={p.address: p for p in pools},
        wrapped_native=WETH,
        symbols=SYMBOLS,
        decimals=DECIMALS,
        block_time_s=12.0,
    )
