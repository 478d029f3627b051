"""Opt-in Uniswap V3 on a running devnet chain, from the npm packages' compiled artifacts.

``deploy_uniswap_v3`` adds a ``UniswapV3Factory``, the periphery's ``NonfungiblePositionManager``
(used to mint positions, so no helper contract of our own is needed), ``QuoterV2`` and
``SwapRouter``, then creates pools over tokens the V2 deployment already has, priced like the
devnet's V2 pools, with liquidity in several tick ranges: full range, wide, narrow, and one-sided
ranges above and below the price, so swaps cross initialised ticks and empty gaps. Nothing calls it
by default: the standard devnet and ``make run`` stay V2-only.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import isqrt

from eth_abi.abi import encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from mevaas_chain import abi
from mevaas_chain.amm.v3 import (
    MAX_TICK,
    MIN_TICK,
    V3PoolState,
    get_sqrt_ratio_at_tick,
    get_tick_at_sqrt_ratio,
    swap,
)
from mevaas_chain.client import Call, ChainClient
from mevaas_chain.contracts import Artifact, node_modules_dir
from mevaas_chain.executor import encode_set_v3_factory
from mevaas_chain.v3_pools import get_pool
from mevaas_local.devnet.deploy import (
    MAX_UINT,
    NO_DEADLINE,
    Batch,
    Deployment,
    DeploymentError,
    Transact,
    deploy_data,
)

ZERO_ADDRESS = "0x" + "00" * 20
TICK_SPACINGS = {500: 10, 3000: 60, 10000: 200}  # what the factory enables at construction
CORE, PERIPHERY = "@uniswap/v3-core", "@uniswap/v3-periphery"


@dataclass(frozen=True)
class V3PoolSpec:
    token_a: str
    token_b: str
    fee: int
    usd_liquidity: float


# (lower, upper) tick offsets from the initial tick, and the share of the pool's USD liquidity each
# position gets; None is the full usable range.
RANGES: tuple[tuple[tuple[int, int] | None, float], ...] = (
    (None, 0.3),
    ((-24000, 24000), 0.25),
    ((-3000, 3000), 0.2),
    ((-600, 600), 0.15),
    ((1200, 4800), 0.05),
    ((-4800, -1200), 0.05),
)

DEFAULT_V3_POOLS = (
    V3PoolSpec("WETH", "USDC", 500, 6_000_000.0),
    V3PoolSpec("WETH", "USDC", 3000, 3_000_000.0),
    V3PoolSpec("WBTC", "WETH", 3000, 3_000_000.0),
    V3PoolSpec("USDC", "USDT", 500, 2_000_000.0),
    V3PoolSpec("LINK", "WETH", 10000, 1_000_000.0),
)


@dataclass(frozen=True)
class V3Pool:
    address: str
    token0: str
    token1: str
    fee: int
    tick_spacing: int


@dataclass(frozen=True)
class V3Deployment:
    factory: str
    position_manager: str
    quoter: str
    router: str
    pools: tuple[V3Pool, ...]


def load_hardhat_artifact(package: str, contract_path: str) -> Artifact:
    """An artifact of a hardhat-built npm package (``artifacts/contracts/<file>.sol/<name>.json``),
    e.g. ``("@uniswap/v3-core", "UniswapV3Factory.sol/UniswapV3Factory")``."""
    path = node_modules_dir() / package / "artifacts" / "contracts" / f"{contract_path}.json"
    data = json.loads(path.read_text())
    return Artifact(
        name=data["contractName"],
        abi=data["abi"],
        bytecode=bytes.fromhex(data["bytecode"].removeprefix("0x")),
        deployed_bytecode=bytes.fromhex(data["deployedBytecode"].removeprefix("0x")),
    )


def sqrt_price_x96(usd0: float, decimals0: int, usd1: float, decimals1: int) -> int:
    """sqrt(token1 raw units per token0 raw unit) as a Q64.96, floored."""
    price = Fraction(usd0) / Fraction(usd1) * Fraction(10) ** (decimals1 - decimals0)
    return isqrt(price.numerator * 2**192 // price.denominator)


def tick_range(offsets: tuple[int, int] | None, tick: int, spacing: int) -> tuple[int, int]:
    if offsets is None:
        return -(MAX_TICK // spacing) * spacing, (MAX_TICK // spacing) * spacing
    lower, upper = ((tick + o) // spacing * spacing for o in offsets)
    return max(lower, -(MAX_TICK // spacing) * spacing), min(upper, (MAX_TICK // spacing) * spacing)


def mint_position_call(
    pool: V3Pool, lower: int, upper: int, amount0: int, amount1: int, recipient: str
) -> bytes:
    params = "(address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256)"
    values = (
        pool.token0,
        pool.token1,
        pool.fee,
        lower,
        upper,
        amount0,
        amount1,
        0,
        0,
        recipient,
        NO_DEADLINE,
    )
    return abi.selector(f"mint({params})") + encode([params], [values])


def decrease_liquidity_call(token_id: int, liquidity: int) -> bytes:
    """NonfungiblePositionManager.decreaseLiquidity calldata: the pool burns ``liquidity``."""
    params = "(uint256,uint128,uint256,uint256,uint256)"
    values = (token_id, liquidity, 0, 0, NO_DEADLINE)
    return abi.selector(f"decreaseLiquidity({params})") + encode([params], [values])


def position_liquidity_call(token_id: int) -> bytes:
    """NonfungiblePositionManager.positions calldata (liquidity is the 8th word of the answer)."""
    return abi.encode_call("positions(uint256)", token_id)


def pool_address(factory: str, token0: str, token1: str, fee: int) -> str:
    """The factory's CREATE2 address for a pool (what ``PoolAddress.computeAddress`` computes)."""
    salt = keccak(encode(["address", "address", "uint24"], [token0, token1, fee]))
    code_hash = keccak(load_hardhat_artifact(CORE, "UniswapV3Pool.sol/UniswapV3Pool").bytecode)
    digest = keccak(b"\xff" + bytes.fromhex(factory.removeprefix("0x")) + salt + code_hash)
    return to_checksum_address(digest[12:])


@dataclass(frozen=True)
class _Position:
    lower: int
    upper: int
    amount0: int
    amount1: int


def _positions(
    spec: V3PoolSpec, start: int, spacing: int, usd0: float, usd1: float, dec0: int, dec1: int
) -> list[_Position]:
    tick = get_tick_at_sqrt_ratio(start)
    positions = []
    for offsets, share in RANGES:
        lower, upper = tick_range(offsets, tick, spacing)
        usd = spec.usd_liquidity * share
        positions.append(_Position(lower, upper, int(usd / usd0 * 10**dec0), int(usd / usd1 * 10**dec1)))
    return positions


async def deploy_uniswap_v3(
    client: ChainClient,
    transact: Transact,
    deployment: Deployment,
    *,
    deployer: str,
    prices: Mapping[str, float],
    pools: Sequence[V3PoolSpec] = DEFAULT_V3_POOLS,
    executor_owner: str | None = None,
) -> V3Deployment:
    """Deploy V3 core + periphery and seed ``pools`` (tokens by symbol, ``prices`` in USD) with
    positions owned by ``deployer``, which also approves the router for later swaps. With
    ``executor_owner`` (unlocked on anvil), the deployment's executor allows the new factory's
    pools (``setV3Factory``), so its cycles can route through them."""
    batch = Batch(client)
    factory = await batch.deploy(
        deployer, deploy_data(load_hardhat_artifact(CORE, "UniswapV3Factory.sol/UniswapV3Factory").bytecode)
    )
    pair_args = (["address", "address"], [factory, deployment.weth])
    manager = await batch.deploy(
        deployer,
        deploy_data(
            load_hardhat_artifact(
                PERIPHERY, "NonfungiblePositionManager.sol/NonfungiblePositionManager"
            ).bytecode,
            ["address", "address", "address"],
            [factory, deployment.weth, ZERO_ADDRESS],
        ),
    )
    quoter = await batch.deploy(
        deployer,
        deploy_data(load_hardhat_artifact(PERIPHERY, "lens/QuoterV2.sol/QuoterV2").bytecode, *pair_args),
    )
    router = await batch.deploy(
        deployer,
        deploy_data(load_hardhat_artifact(PERIPHERY, "SwapRouter.sol/SwapRouter").bytecode, *pair_args),
    )

    plans: list[tuple[V3Pool, int, list[_Position]]] = []
    needed: dict[str, int] = {}
    for spec in pools:
        a, b = deployment.token(spec.token_a), deployment.token(spec.token_b)
        t0, t1 = (a, b) if abi.sort_tokens(a.address, b.address)[0] == a.address else (b, a)
        start = sqrt_price_x96(prices[t0.symbol], t0.decimals, prices[t1.symbol], t1.decimals)
        spacing = TICK_SPACINGS[spec.fee]
        pool = V3Pool(
            pool_address(factory, t0.address, t1.address, spec.fee), t0.address, t1.address, spec.fee, spacing
        )
        positions = _positions(
            spec, start, spacing, prices[t0.symbol], prices[t1.symbol], t0.decimals, t1.decimals
        )
        for sym, amount in (
            (t0.symbol, sum(p.amount0 for p in positions)),
            (t1.symbol, sum(p.amount1 for p in positions)),
        ):
            needed[sym] = needed.get(sym, 0) + amount
        plans.append((pool, start, positions))

    for symbol, amount in needed.items():
        token = deployment.token(symbol).address
        if token == deployment.weth:
            await batch.call(deployer, token, abi.encode_call("deposit()"), value=amount, gas=100_000)
        else:
            await batch.call(
                deployer, token, abi.encode_call("mint(address,uint256)", deployer, amount), gas=100_000
            )
        for spender in (manager, router):
            await batch.call(deployer, token, abi.encode_call("approve(address,uint256)", spender, MAX_UINT))
    for pool, start, positions in plans:
        create = "createAndInitializePoolIfNecessary(address,address,uint24,uint160)"
        await batch.call(
            deployer,
            manager,
            abi.encode_call(create, pool.token0, pool.token1, pool.fee, start),
            gas=6_000_000,
        )
        for p in positions:
            await batch.call(
                deployer,
                manager,
                mint_position_call(pool, p.lower, p.upper, p.amount0, p.amount1, deployer),
                gas=1_000_000,
            )
    executor = deployment.contracts.get("executor")
    if executor_owner is not None and executor is not None:
        await batch.call(executor_owner, executor, encode_set_v3_factory(factory, True))
    await batch.flush(transact)
    v3 = V3Deployment(factory, manager, quoter, router, tuple(pool for pool, _, _ in plans))
    await verify_pools(client, v3)
    return v3


async def verify_pools(client: ChainClient, v3: V3Deployment) -> None:
    """Each computed CREATE2 address must be what the factory registered."""
    replies = await client.batch_call(
        [Call(v3.factory, get_pool(p.token0, p.token1, p.fee)) for p in v3.pools]
    )
    for pool, reply in zip(v3.pools, replies, strict=True):
        if reply is None or abi.decode_address(reply) != pool.address:
            raise DeploymentError(f"V3 pool {pool.address} does not match factory.getPool")


@dataclass(frozen=True)
class V3SwapCase:
    """One swap to try on a pool: ``amount`` > 0 exact input, < 0 exact output; ``limit`` None is
    no price limit."""

    pool: V3Pool
    zero_for_one: bool
    amount: int
    limit: int | None

    @property
    def tokens(self) -> tuple[str, str]:
        """(token in, token out)."""
        return (
            (self.pool.token0, self.pool.token1)
            if self.zero_for_one
            else (self.pool.token1, self.pool.token0)
        )


def random_swap(rng: random.Random, pool: V3Pool, state: V3PoolState) -> V3SwapCase:
    """A swap sized against the pool's own liquidity: it heads for a price a random number of
    ticks away (mostly within the narrow ranges, sometimes across the wide ones) and takes 2% to
    130% of what reaching that price needs; a third of the swaps carry that price as their limit,
    so oversized ones stop there part-filled."""
    zero_for_one = rng.random() < 0.5
    away = min(1 + int(rng.expovariate(1 / 2500)), 40_000)
    target_tick = state.tick - away if zero_for_one else state.tick + away
    target = get_sqrt_ratio_at_tick(min(max(target_tick, MIN_TICK + 1), MAX_TICK - 1))
    reach = swap(state, zero_for_one, 1 << 200, target)
    paid_in = reach.amount0 if zero_for_one else reach.amount1
    paid_out = -(reach.amount1 if zero_for_one else reach.amount0)
    share = rng.uniform(0.02, 1.3)
    amount = max(1, int(paid_in * share)) if rng.random() < 0.5 else -max(1, int(paid_out * share))
    return V3SwapCase(pool, zero_for_one, amount, target if rng.random() < 1 / 3 else None)
