"""The devnet's lending market in motion: an oracle driver that moves the Aave price feeds with the
DEX market (as Chainlink tracks spot, with a deviation threshold), and a population of simulated
borrowers whose health factors start just above 1, so price moves push some of them under.

Borrowers have real private keys (derived from the chain's seed) so tests can sign as them; the
devnet also impersonates them to send their setup transactions unsigned.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from eth_account import Account
from eth_utils.crypto import keccak

from mevaas_chain import abi
from mevaas_chain.client import Call, ChainClient
from mevaas_local.devnet.aave import AaveMarket, AaveReserve, deploy_aave, usd_answer
from mevaas_local.devnet.deploy import MAX_UINT, Batch, Deployment, PoolInfo, Transact, fund
from mevaas_local.devnet.relay import BlockProducer

VARIABLE_RATE = 2


@dataclass(frozen=True)
class Borrower:
    address: str
    private_key: str
    collateral: str  # symbol
    debt: str  # symbol
    target_health_factor: Decimal


def borrower_keys(seed: int, count: int) -> list[tuple[str, str]]:
    """(address, private key) of the chain's simulated borrowers, the same on every run."""
    keys = []
    for i in range(count):
        key = keccak(text=f"mevaas devnet borrower {seed} {i}")
        keys.append((Account.from_key(key).address, "0x" + key.hex()))
    return keys


def pool_mid_price(
    pool: PoolInfo, reserves: tuple[int, int], base: str, decimals: dict[str, int]
) -> Fraction:
    """Units of the other token per one whole ``base`` token, from the pool's reserves."""
    r0, r1 = reserves
    d0, d1 = decimals[pool.token0], decimals[pool.token1]
    price_1_in_0 = Fraction(r0 * 10**d1, r1 * 10**d0)  # token0 per token1
    return price_1_in_0 if base == pool.token1 else 1 / price_1_in_0


class OracleDriver:
    """Before each block, moves each volatile reserve's feed to the price of its pool against WETH
    times WETH's price in USDC on the reference DEX, when it moved more than ``deviation``.
    Stablecoins stay at $1. ``pin`` fixes a price (tests, scripted crashes) and stops following it."""

    def __init__(
        self,
        client: ChainClient,
        producer: BlockProducer,
        deployment: Deployment,
        market: AaveMarket,
        *,
        wallet: str,
        deviation: Fraction = Fraction(1, 400),
    ) -> None:
        self.client = client
        self.producer = producer
        self.market = market
        self.wallet = wallet
        self.deviation = deviation
        self.enabled = True
        self._decimals = {t.address: t.decimals for t in deployment.tokens}
        self._weth = deployment.weth
        self._usdc = deployment.token("USDC").address
        reference = deployment.dexes[0].name
        self._pools = {frozenset((p.token0, p.token1)): p for p in deployment.pools if p.dex == reference}
        self._last: dict[str, int] = {}
        self._pinned: set[str] = set()

    def attach(self) -> None:
        self.producer.before_block.append(self._before_block)

    async def _before_block(self, _block: int) -> None:
        if self.enabled:
            for feed, answer in (await self.updates()).items():
                self.producer.submit_unsigned(self._set_tx(feed, answer))

    def _set_tx(self, feed: str, answer: int) -> dict[str, str]:
        self._last[feed] = answer
        data = abi.encode_call("setAnswer(int256)", answer)
        return {"from": self.wallet, "to": feed, "data": "0x" + data.hex(), "gas": hex(100_000)}

    async def current_answers(self) -> dict[str, int]:
        """Feed address -> its answer on chain now."""
        feeds = [r.feed for r in self.market.reserves]
        raw = await self.client.batch_call([Call(f, abi.encode_call("latestAnswer()")) for f in feeds])
        return {f: abi.decode_result(["int256"], r)[0] for f, r in zip(feeds, raw, strict=True) if r}

    async def spot_answers(self) -> dict[str, int]:
        """Feed address -> the 8-decimal USD answer the DEX market implies, for volatile reserves."""
        volatile = [r for r in self.market.reserves if not r.spec.stable and r.feed not in self._pinned]
        needed = [self._pools.get(frozenset((self._weth, self._usdc)))]
        needed += [
            self._pools.get(frozenset((r.asset, self._weth))) for r in volatile if r.asset != self._weth
        ]
        pools = [p for p in needed if p is not None]
        raw = await self.client.batch_call([Call(p.address, abi.GET_RESERVES) for p in pools])
        reserves = {p.address: abi.decode_reserves(r) for p, r in zip(pools, raw, strict=True) if r}
        weth_pool = needed[0]
        if weth_pool is None or weth_pool.address not in reserves:
            return {}
        weth_usd = pool_mid_price(weth_pool, reserves[weth_pool.address], self._weth, self._decimals)
        answers: dict[str, int] = {}
        for r in volatile:
            if r.asset == self._weth:
                price = weth_usd
            else:
                pool = self._pools.get(frozenset((r.asset, self._weth)))
                if pool is None or pool.address not in reserves:
                    continue
                price = pool_mid_price(pool, reserves[pool.address], r.asset, self._decimals) * weth_usd
            answers[r.feed] = int(price * 10**8)
        return answers

    async def updates(self) -> dict[str, int]:
        """The feed updates due now (moved more than the deviation threshold)."""
        if not self._last:
            self._last = await self.current_answers()
        due: dict[str, int] = {}
        for feed, answer in (await self.spot_answers()).items():
            last = self._last.get(feed)
            if last is None or abs(Fraction(answer - last, last)) > self.deviation:
                due[feed] = answer
        return due

    async def pin(self, symbol: str, usd: Decimal, transact: Transact) -> None:
        """Set ``symbol``'s price now and keep it there (no longer follows the DEX)."""
        reserve = self.market.reserve(symbol)
        self._pinned.add(reserve.feed)
        await transact([self._set_tx(reserve.feed, usd_answer(usd))])

    def unpin(self, symbol: str) -> None:
        self._pinned.discard(self.market.reserve(symbol).feed)


def plan_borrowers(market: AaveMarket, *, seed: int, count: int) -> list[Borrower]:
    """Each borrower supplies one reserve and borrows another, at a health factor between the
    lowest the collateral's LTV allows and 1.3: long volatile collateral against stablecoin debt,
    or stablecoin collateral against WETH debt (short ETH)."""
    rng = random.Random(seed)
    volatile = [r for r in market.reserves if not r.spec.stable]
    stable = [r for r in market.reserves if r.spec.stable]
    weth = [r for r in volatile if r.symbol == "WETH"]
    plans: list[Borrower] = []
    for address, key in borrower_keys(seed, count):
        if weth and rng.random() < 0.2:
            collateral, debt = rng.choice(stable), weth[0]
        else:
            collateral, debt = rng.choice(volatile), rng.choice(stable)
        floor = Decimal(collateral.spec.liquidation_threshold_bps) / Decimal(collateral.spec.ltv_bps)
        floor = floor * Decimal("1.005")
        hf = floor + (max(Decimal("1.3"), floor) - floor) * Decimal(rng.random()) ** 2
        plans.append(Borrower(address, key, collateral.symbol, debt.symbol, hf.quantize(Decimal("0.0001"))))
    return plans


async def seed_borrowers(
    client: ChainClient,
    transact: Transact,
    deployment: Deployment,
    market: AaveMarket,
    borrowers: Sequence[Borrower],
    *,
    deployer: str,
    prices_usd: dict[str, Decimal],
    seed: int,
) -> None:
    """Open each borrower's position: collateral worth $5k-$500k, debt sized to its target HF."""
    rng = random.Random(seed + 1)
    await fund(client, [b.address for b in borrowers], 1_000 * 10**18)
    await client.batch([("anvil_impersonateAccount", [b.address]) for b in borrowers])
    batch = Batch(client)
    sizes: list[tuple[Decimal, int]] = []
    for b in borrowers:
        coll = market.reserve(b.collateral)
        usd = Decimal(5_000) * Decimal(100) ** Decimal(rng.random())
        amount = int(usd / prices_usd[coll.symbol] * 10**coll.decimals)
        sizes.append((usd, amount))
        await _give(batch, deployment, coll, b.address, amount, deployer)
    # Mints come from the deployer: mined before the borrowers' own transactions, whose order
    # relative to another sender's in one block is not guaranteed.
    await batch.flush(transact)
    for b, (usd, amount) in zip(borrowers, sizes, strict=True):
        coll, debt = market.reserve(b.collateral), market.reserve(b.debt)
        await batch.call(
            b.address,
            coll.asset,
            abi.encode_call("approve(address,uint256)", market.pool, MAX_UINT),
            gas=100_000,
        )
        await batch.call(
            b.address,
            market.pool,
            abi.encode_call("supply(address,uint256,address,uint16)", coll.asset, amount, b.address, 0),
            gas=1_000_000,
        )
        debt_usd = usd * Decimal(coll.spec.liquidation_threshold_bps) / 10_000 / b.target_health_factor
        borrow = int(debt_usd / prices_usd[debt.symbol] * 10**debt.decimals)
        await batch.call(
            b.address,
            market.pool,
            abi.encode_call(
                "borrow(address,uint256,uint256,uint16,address)",
                debt.asset,
                borrow,
                VARIABLE_RATE,
                0,
                b.address,
            ),
            gas=1_500_000,
        )
    await batch.flush(transact)


async def _give(
    batch: Batch, deployment: Deployment, reserve: AaveReserve, to: str, amount: int, deployer: str
) -> None:
    if reserve.asset == deployment.weth:
        await batch.call(to, reserve.asset, abi.encode_call("deposit()"), value=amount, gas=100_000)
    else:
        await batch.call(
            deployer, reserve.asset, abi.encode_call("mint(address,uint256)", to, amount), gas=100_000
        )


@dataclass
class Lending:
    """A chain's Aave market with its oracle driver and borrowers."""

    market: AaveMarket
    oracle: OracleDriver
    borrowers: list[Borrower]


async def start_lending(
    client: ChainClient,
    transact: Transact,
    producer: BlockProducer,
    deployment: Deployment,
    *,
    prices_usd: dict[str, Decimal],
    deployer: str,
    oracle_wallet: str,
    borrowers: int,
    seed: int,
) -> Lending:
    """Deploy Aave V3, open ``borrowers`` positions and attach the oracle driver to the producer."""
    market = await deploy_aave(
        client, transact, deployment, deployer=deployer, feed_owner=oracle_wallet, prices_usd=prices_usd
    )
    plans = plan_borrowers(market, seed=seed, count=borrowers)
    await seed_borrowers(
        client, transact, deployment, market, plans, deployer=deployer, prices_usd=prices_usd, seed=seed
    )
    oracle = OracleDriver(client, producer, deployment, market, wallet=oracle_wallet)
    oracle.attach()
    return Lending(market, oracle, plans)


def resume_lending(
    client: ChainClient,
    producer: BlockProducer,
    deployment: Deployment,
    market: AaveMarket,
    *,
    oracle_wallet: str,
    borrowers: int,
    seed: int,
) -> Lending:
    """The lending market of a chain restored from its saved state: nothing is deployed or seeded
    again (the positions are in the state); the borrowers are the same (derived from the seed) and
    the oracle driver follows the DEX market from where it was."""
    oracle = OracleDriver(client, producer, deployment, market, wallet=oracle_wallet)
    oracle.attach()
    return Lending(market, oracle, plan_borrowers(market, seed=seed, count=borrowers))
