"""Treasury acceptance (issue 9) through the running fleet (tenancy, strategy, risk, execution and
analytics, each its own runtime, over NATS and gRPC) on the devnet:

* after a ``flash_arbitrage`` session, and again after a ``dex_arbitrage`` one, GetPositions
  equals balanceOf / eth_getBalance of every wallet and executor of the tenant for every token of
  both chains (and the native coin), to the wei, at the block it names; every token with a pool
  path is valued at the pool mid price read back from the chain at the recorded block (source,
  block, and the time of that block), and a token without one (ORPH, deployed with no pool) is shown unpriced, no value;
* the executor holds exactly the sessions' realised gross profit (plus what was deposited);
* Withdraw moves the executor's profit to the wallet (the wallet pays only the gas) and positions
  still equal the chain;
* bad input (a destination outside the allow-list, more than the balance, another tenant's
  wallet, a zero amount) is refused naming the field, and nothing moves;
* before a Deposit, dex_arbitrage's failure names the missing inventory; Deposit funds the
  executor from the wallet (no hand transfer to it) and dex_arbitrage then trades.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import grpc
import pytest
import pytest_asyncio

from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from mevaas_chain import abi
from mevaas_chain.contracts import load_artifact
from mevaas_chain.pricing import to_decimal
from mevaas_chain.registry import ChainRegistry, TokenConfig
from mevaas_core.bus import Bus
from mevaas_core.runtime import ServiceRuntime
from mevaas_local.devnet import Devnet, DevnetChain
from mevaas_local.devnet.deploy import Batch, deploy_data, mint_tokens
from mevaas_sdk import MevaasClient
from tests.fixtures.e2e import (
    FINAL,
    blocks_pass,
    collect_opportunities,
    create_strategy,
    default_wallet,
    executor_of,
    new_tenant,
    reservations_released,
    session_executions,
    start_fleet_execution,
    start_running,
    stop_session,
    tenant_client,
    tenant_of,
)
from tests.fixtures.execution import (
    ETHER,
    ExecutionHarness,
    block_production,
    execution_stub,
    fund,
    open_gap,
    wait_for,
)
from tests.fixtures.platform import StartService
from tests.fixtures.strategy import strategy_config
from tests.integration.tenancy.helpers import field_violations

pytestmark = pytest.mark.integration

S = common_pb2
ZERO = "0x" + "00" * 20
STABLES = {"USDC", "USDT", "DAI"}
DEPOSIT = 10 * ETHER  # twice the strategy's max_position (5 WETH)


@dataclass
class World:
    client: MevaasClient  # the tenant's owner on strategy, risk, execution and analytics
    tenant_id: str
    devnet: Devnet
    registry: ChainRegistry  # what execution and analytics follow: the devnet's, plus ORPH
    wallet: str  # the default wallet (sessions trade from it)
    spare: str  # a second wallet, never given an executor
    orphan: str  # a token no pool prices
    foreign_wallet: str  # another tenant's wallet

    @property
    def execution(self) -> Any:
        return execution_stub(self.client)

    @property
    def portfolio(self) -> portfolio_pb2_grpc.PortfolioServiceAsyncStub:
        stub: portfolio_pb2_grpc.PortfolioServiceAsyncStub = self.client.stub(
            "analytics", portfolio_pb2_grpc.PortfolioServiceStub
        )
        return stub


async def deploy_orphan(chain: DevnetChain) -> str:
    """A token with no pool anywhere (so no price path), owned by the devnet's deployer."""
    batch = Batch(chain.client)
    art = load_artifact("MockToken")
    address = await batch.deploy(
        chain.deployer, deploy_data(art.bytecode, ["string", "string", "uint8"], ["Orphan", "ORPH", 18])
    )
    await batch.flush(chain.transact)
    return address


async def mint_orphan(chain: DevnetChain, token: str, to: str, amount: int) -> None:
    batch = Batch(chain.client)
    await batch.call(chain.deployer, token, abi.encode_call("mint(address,uint256)", to, amount), gas=100_000)
    await batch.flush(chain.transact)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(
    execution_harness: ExecutionHarness,
    start_service: StartService,
    tenancy_service: Any,
    strategy_service: Any,
    risk_service: Any,
    devnet: Devnet,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[World]:
    from mevaas_analytics.server import SERVICE, AnalyticsRuntime, AnalyticsSettings

    main = devnet.main
    orphan = await deploy_orphan(main)
    chains = [
        c.model_copy(update={"tokens": [*c.tokens, TokenConfig(address=orphan, symbol="ORPH", decimals=18)]})
        if c.chain_id == main.spec.chain_id
        else c
        for c in devnet.registry.chains
    ]
    registry = ChainRegistry(chains=chains)
    chains_file = tmp_path_factory.mktemp("treasury-fleet") / "chains.json"
    registry.write(chains_file)
    # Analytics prices from the devnet's pools (pool-mid, no configured table).
    analytics: ServiceRuntime[Any] = await start_service(
        SERVICE,
        AnalyticsRuntime,
        AnalyticsSettings,
        durable_prefix=f"analytics-treasury-{uuid.uuid4().hex[:6]}",
        chains_file=str(chains_file),
        market_history_dir=str(tmp_path_factory.mktemp("market-history-treasury")),
    )
    execution = await start_fleet_execution(execution_harness, chains_file=str(chains_file))
    tenant, other = await new_tenant(tenancy_service), await new_tenant(tenancy_service)
    runtimes = {
        "strategy": strategy_service,
        "risk": risk_service,
        "execution": execution,
        "analytics": analytics,
    }
    async with tenant_client(tenancy_service, other.owner_key, execution=execution) as foreigner:
        foreign_wallet = (await default_wallet(foreigner)).address
    try:
        async with tenant_client(tenancy_service, tenant.owner_key, **runtimes) as client:
            spare = (
                await execution_stub(client).CreateWallet(
                    execution_pb2.CreateWalletRequest(idempotency_key=str(uuid.uuid4()), label="spare")
                )
            ).wallet.address
            wallet = (await default_wallet(client)).address
            for chain in devnet.chains:
                await fund(chain, wallet)
                await fund(chain, spare, 3 * ETHER)
            await mint_orphan(main, orphan, wallet, 7 * ETHER + 1)
            await mint_orphan(main, orphan, spare, 3)
            await mint_tokens(
                main.client,
                main.transact,
                main.deployment,
                deployer=main.deployer,
                to=spare,
                amounts={"USDC": 1_234_567, "WETH": 5 * 10**17},
            )
            yield World(
                client,
                await tenant_of(client),
                devnet,
                registry,
                wallet,
                spare,
                orphan,
                foreign_wallet,
            )
    finally:
        await execution_harness.stop(execution)


async def balance(chain: DevnetChain, holder: str, token: str, block: int | str = "latest") -> int:
    tag = hex(block) if isinstance(block, int) else block
    if token in ("", ZERO):
        return int(await chain.client.request("eth_getBalance", [holder, tag]), 16)
    return abi.decode_uint(await chain.client.call(token, abi.balance_of(holder), block))


async def all_positions(world: World) -> portfolio_pb2.GetPositionsResponse:
    """Every position (zero ones too), over all pages; the totals of the last page."""
    positions: list[portfolio_pb2.Position] = []
    token = ""
    while True:
        got = await world.portfolio.GetPositions(
            portfolio_pb2.GetPositionsRequest(
                include_zero=True, page=common_pb2.PageRequest(page_size=100, page_token=token)
            )
        )
        positions += got.positions
        token = got.page.next_page_token
        if not token:
            del got.positions[:]
            got.positions.extend(positions)
            return got


async def mid_price(world: World, chain_id: int, source: str, quote_block: int) -> tuple[str, Fraction]:
    """(base symbol, USD price) of a `pool-mid:<chain>:A/B@pool,B/C@pool,...` path recomputed from
    each pool's reserves read from the chain at the quote block (the last quote a stablecoin)."""
    chain = next(c for c in world.devnet.chains if c.spec.chain_id == chain_id)
    config = world.registry.get(chain_id)
    prefix = f"pool-mid:{chain_id}:"
    assert source.startswith(prefix), source
    price = Fraction(1)
    hops = source.removeprefix(prefix).split(",")
    for hop in hops:
        pair, pool = hop.split("@")
        base, quote = (config.token(symbol) for symbol in pair.split("/"))
        r0, r1 = abi.decode_reserves(await chain.client.call(pool, abi.GET_RESERVES, quote_block))
        base_reserve, quote_reserve = (r0, r1) if base.address.lower() < quote.address.lower() else (r1, r0)
        price *= Fraction(quote_reserve, 10**quote.decimals) / Fraction(base_reserve, 10**base.decimals)
    assert hops[-1].split("@")[0].split("/")[1] in STABLES, source
    return hops[0].split("/")[0], price


async def positions_equal_the_chain(world: World) -> portfolio_pb2.GetPositionsResponse:
    """GetPositions against the chain, position by position (see the module docstring)."""

    async def priced_feed() -> portfolio_pb2.GetPositionsResponse | None:
        # Analytics' market feed replays the chain's blocks from the stream; until it has, a
        # token may still lack a price. Once it has, ORPH (one wallet: the spare's is its own
        # position) is all that is unpriced.
        got = await all_positions(world)
        return got if got.unpriced_count == 2 else None

    got: portfolio_pb2.GetPositionsResponse = await wait_for(priced_feed, timeout_s=90)
    listed = await world.execution.ListWallets(execution_pb2.ListWalletsRequest())
    executors = {
        (w.address.lower(), e.chain_id): e.address.lower() for w in listed.wallets for e in w.executors
    }
    assert {w.address.lower() for w in listed.wallets} == {world.wallet.lower(), world.spare.lower()}
    # The default wallet has its executor on every chain the sessions trade; the spare has none.
    assert (world.wallet.lower(), world.devnet.main.spec.chain_id) in executors
    assert not [key for key in executors if key[0] == world.spare.lower()]
    expected = {
        (w.address.lower(), c.chain_id, t)
        for w in listed.wallets
        for c in world.registry.chains
        for t in [ZERO, *(token.address.lower() for token in c.tokens)]
    }
    keys = [(p.wallet_address.lower(), p.token.chain_id, p.token.address.lower()) for p in got.positions]
    assert sorted(keys) == sorted(expected)
    priced_total = Decimal(0)
    for p in got.positions:
        chain = next(c for c in world.devnet.chains if c.spec.chain_id == p.token.chain_id)
        wallet, token = p.wallet_address.lower(), p.token.address.lower()
        executor = executors.get((wallet, p.token.chain_id), "")
        assert p.executor_address.lower() == executor, p
        assert int(p.wallet_balance) == await balance(chain, wallet, token, p.as_of_block), p
        held = await balance(chain, executor, token, p.as_of_block) if executor else 0
        assert int(p.executor_balance) == held, p
        total = int(p.wallet_balance) + int(p.executor_balance)
        assert int(p.balance) == total and p.reserved == "0"
        assert Decimal(p.amount) == Decimal(total).scaleb(-p.token.decimals)
        config = world.registry.get(p.token.chain_id)
        symbol = config.native_symbol if token == ZERO else config.token(token).symbol
        assert p.token.symbol == symbol, p
        if token == world.orphan.lower():
            assert p.unpriced and "no price" in p.unpriced_reason, p
            assert not p.HasField("notional_value") and not p.HasField("price") and not p.price_source
            continue
        assert not p.unpriced and not p.unpriced_reason, p
        if symbol in STABLES:
            assert p.price_source == f"peg:{p.token.chain_id}:{symbol}", p
            price = Fraction(1)
        else:
            assert 0 < p.quote_block <= p.as_of_block, p
            # The quote's time is its block's, whether analytics saw it live or seeded its book
            # from the reserves it recorded before it started.
            quoted = await chain.client.get_block(p.quote_block)
            assert quoted is not None and p.price_time.seconds == int(quoted["timestamp"], 16), p
            base, price = await mid_price(world, p.token.chain_id, p.price_source, p.quote_block)
            assert base == ("WETH" if token == ZERO else symbol), p
        assert Decimal(p.price.amount) == to_decimal(price), p
        value = to_decimal(Fraction(total, 10**p.token.decimals) * price)
        assert Decimal(p.notional_value.amount) == value and p.notional_value.currency_code == "USD", p
        priced_total += value
    assert Decimal(got.priced_notional_value.amount) == priced_total
    assert not got.HasField("total_notional_value")  # ORPH is unpriced: no total that leaves it out
    return got


def by_key(got: portfolio_pb2.GetPositionsResponse) -> dict[tuple[str, int, str], portfolio_pb2.Position]:
    return {(p.wallet_address.lower(), p.token.chain_id, p.token.address.lower()): p for p in got.positions}


async def trade(world: World, bus: Bus, strategy_type: int) -> tuple[str, list[execution_pb2.Execution]]:
    """Run a session of ``strategy_type`` on the main chain: it starts, a test swap opens a price
    gap, the session's executions settle, it stops and risk releases everything. Returns (session
    id, executions), all final, each of an opportunity the strategy engine published."""
    chain = world.devnet.main
    strategy = await create_strategy(
        world.client,
        strategy_config(chain.config, name=f"treasury-{uuid.uuid4().hex[:8]}", type_=strategy_type),
    )
    opportunities = await collect_opportunities(bus, world.tenant_id, strategy.strategy_id)
    session_id = ""
    try:
        # Blocks a second apart: on a loaded machine the pipeline still meets the deadlines (in blocks).
        async with block_production(*world.devnet.chains, block_time_s=1.0):
            session_id = await start_running(world.client, strategy.strategy_id)
            await blocks_pass(chain)
            await open_gap(chain, share=15)
            await settled(world, chain, session_id)
            await stop_session(world.client, session_id)
            session_id, stopped = "", session_id
            await reservations_released(world.client, stopped)
    finally:
        await opportunities.close()
        if session_id:
            # A failed run must not leave a session trading on the shared devnet for later tests.
            await stop_session(world.client, session_id)
    executions = await session_executions(world.client, stopped)
    assert all(e.opportunity_id in opportunities.items for e in executions)
    return stopped, executions


async def settled(world: World, chain: DevnetChain, session_id: str) -> None:
    """Wait until the session has executions, all final, and no new one appeared for 3 blocks
    (the gap is traded or refused, and nothing is left in flight)."""
    quiet = {"count": -1, "since": 0}

    async def done() -> bool:
        executions = await session_executions(world.client, session_id)
        head = await chain.client.block_number()
        if len(executions) != quiet["count"] or any(e.status not in FINAL for e in executions):
            quiet.update(count=len(executions), since=head)
            return False
        return bool(executions) and head >= quiet["since"] + 3

    await wait_for(done, timeout_s=90)


def gross(executions: list[execution_pb2.Execution]) -> int:
    """What the included executions' executor kept: realised profit plus the gas it was net of
    (profit and gas both in wei: WETH and ETH are 1:1)."""
    return sum(
        int(e.realized_profit) + int(e.gas_cost)
        for e in executions
        if e.status == S.EXECUTION_RESULT_STATUS_INCLUDED
    )


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_flash_session_positions_equal_the_chain_and_withdraw_moves_the_profit(
    world: World, bus: Bus
) -> None:
    chain = world.devnet.main
    weth = chain.deployment.weth.lower()
    _session, executions = await trade(world, bus, S.STRATEGY_TYPE_FLASH_ARBITRAGE)
    assert any(e.status == S.EXECUTION_RESULT_STATUS_INCLUDED for e in executions), [
        (S.ExecutionResultStatus.Name(e.status), e.error) for e in executions
    ]
    executor = (await executor_of(world.client, world.wallet, chain.spec.chain_id)).lower()
    # Capital-free: the new executor holds exactly the sessions' gross profit.
    profit = await balance(chain, executor, weth)
    # (An execution booked DROPPED whose transaction landed anyway shows here, and as treasury drift.)
    assert profit == gross(executions) > 0, [
        (S.ExecutionResultStatus.Name(e.status), e.error, list(e.tx_hashes)) for e in executions
    ]
    before = by_key(await positions_equal_the_chain(world))
    assert int(before[(world.wallet.lower(), chain.spec.chain_id, weth)].executor_balance) == profit

    async with block_production(chain):
        moved = (
            await world.execution.Withdraw(
                execution_pb2.WithdrawRequest(
                    idempotency_key=str(uuid.uuid4()),
                    chain_id=chain.spec.chain_id,
                    wallet_address=world.wallet,
                    token_address=chain.deployment.weth,
                    amount=str(profit),
                )
            )
        ).transfer
    assert moved.status == "included" and int(moved.amount) == profit, moved
    assert moved.executor_address.lower() == executor and moved.to_address.lower() == world.wallet.lower()
    block = moved.block_number
    assert await balance(chain, executor, weth, block) == 0
    assert (
        await balance(chain, world.wallet, weth, block) - await balance(chain, world.wallet, weth, block - 1)
        == profit
    )
    # The wallet paid the transfer's gas and nothing else in ETH.
    assert (
        await balance(chain, world.wallet, "", block - 1) - await balance(chain, world.wallet, "", block)
        == int(moved.gas_cost_wei)
        > 0
    )
    after = by_key(await positions_equal_the_chain(world))
    position = after[(world.wallet.lower(), chain.spec.chain_id, weth)]
    assert int(position.executor_balance) == 0
    old = before[(world.wallet.lower(), chain.spec.chain_id, weth)]
    assert int(position.wallet_balance) == int(old.wallet_balance) + profit


async def test_bad_transfers_are_refused_naming_the_field_and_nothing_moves(world: World) -> None:
    chain = world.devnet.main
    chain_id = chain.spec.chain_id
    executor = await executor_of(world.client, world.wallet, chain_id)
    # Give the executor something to withdraw (a Deposit, the API way).
    async with block_production(chain):
        await world.execution.Deposit(
            execution_pb2.DepositRequest(
                idempotency_key=str(uuid.uuid4()),
                chain_id=chain_id,
                wallet_address=world.wallet,
                amount=str(ETHER),
            )
        )
    held = await balance(chain, executor, "")
    assert held >= ETHER
    outsider = "0x" + uuid.uuid4().hex[:8] + "11" * 16
    holders = [world.wallet, executor, outsider, world.foreign_wallet]
    tokens = ["", chain.deployment.weth, world.orphan]

    async def snapshot() -> tuple[list[int], list[int]]:
        nonces = [
            int(await chain.client.request("eth_getTransactionCount", [h, "latest"]), 16)
            for h in (world.wallet, world.foreign_wallet)
        ]
        return [await balance(chain, h, t) for h in holders for t in tokens], nonces

    before = await snapshot()
    positions_before = by_key(await positions_equal_the_chain(world))

    def withdraw(**fields: Any) -> execution_pb2.WithdrawRequest:
        values: dict[str, Any] = {
            "idempotency_key": str(uuid.uuid4()),
            "chain_id": chain_id,
            "wallet_address": world.wallet,
            "token_address": "",
            "amount": str(held),
        }
        values.update(fields)
        return execution_pb2.WithdrawRequest(**values)

    async with block_production(chain):
        outside = await rpc_error(world.execution.Withdraw(withdraw(to_address=outsider)))
        assert outside.code() == grpc.StatusCode.INVALID_ARGUMENT, outside.details()
        assert field_violations(outside) == ["to_address"] and "allowlist" in (outside.details() or "")
        too_much = await rpc_error(world.execution.Withdraw(withdraw(amount=str(held + 1))))
        assert too_much.code() == grpc.StatusCode.FAILED_PRECONDITION, too_much.details()
        assert f"amount {held + 1} exceeds the executor's balance of {held}" in (too_much.details() or "")
        foreign = await rpc_error(world.execution.Withdraw(withdraw(wallet_address=world.foreign_wallet)))
        assert foreign.code() == grpc.StatusCode.NOT_FOUND, foreign.details()
        assert "wallet" in (foreign.details() or "") and world.foreign_wallet in (foreign.details() or "")
        zero = await rpc_error(world.execution.Withdraw(withdraw(amount="0")))
        assert zero.code() == grpc.StatusCode.INVALID_ARGUMENT and field_violations(zero) == ["amount"]
        deposit_too_much = await rpc_error(
            world.execution.Deposit(
                execution_pb2.DepositRequest(
                    idempotency_key=str(uuid.uuid4()),
                    chain_id=chain_id,
                    wallet_address=world.wallet,
                    token_address=world.orphan,
                    amount=str(7 * ETHER + 2),
                )
            )
        )
        assert deposit_too_much.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "amount" in (deposit_too_much.details() or "")
        # Blocks went by while they were refused: none of them moved anything.
        await blocks_pass(chain)
    assert await snapshot() == before
    after = by_key(await positions_equal_the_chain(world))
    assert {k: (p.wallet_balance, p.executor_balance) for k, p in after.items()} == {
        k: (p.wallet_balance, p.executor_balance) for k, p in positions_before.items()
    }


async def test_dex_arbitrage_names_the_missing_inventory_until_a_deposit_funds_it(
    world: World, bus: Bus
) -> None:
    chain = world.devnet.main
    chain_id = chain.spec.chain_id
    weth = chain.deployment.weth.lower()
    executor = await executor_of(world.client, world.wallet, chain_id)
    assert await balance(chain, executor, weth) == 0  # the flash profit was withdrawn
    session, unfunded = await trade(world, bus, S.STRATEGY_TYPE_DEX_ARBITRAGE)
    # Nothing was sent, and the reason is the inventory the executor lacks, not a bare selector.
    # (On a loaded machine an opportunity can also go stale before its simulation: sent neither.)
    failed = [e for e in unfunded if e.status == S.EXECUTION_RESULT_STATUS_FAILED]
    assert failed and all(
        e.status in (S.EXECUTION_RESULT_STATUS_FAILED, S.EXECUTION_RESULT_STATUS_STALE) for e in unfunded
    ), unfunded
    assert all(not e.tx_hashes for e in unfunded)
    for e in failed:
        assert f"executor {executor}" in e.error and "holds less than" in e.error, e.error
        assert "deposit into it first" in e.error, e.error
    status = await world.execution.GetExecutionStatus(
        execution_pb2.GetExecutionStatusRequest(session_id=session)
    )
    assert "holds less than" in status.last_error and "deposit" in status.last_error
    assert await balance(chain, executor, weth) == 0

    # The tenant tops up its own wallet and deposits through the API: no transfer to the executor
    # by hand.
    await mint_tokens(
        chain.client,
        chain.transact,
        chain.deployment,
        deployer=chain.deployer,
        to=world.wallet,
        amounts={"WETH": DEPOSIT},
    )
    async with block_production(chain):
        deposited = (
            await world.execution.Deposit(
                execution_pb2.DepositRequest(
                    idempotency_key=str(uuid.uuid4()),
                    chain_id=chain_id,
                    wallet_address=world.wallet,
                    token_address=chain.deployment.weth,
                    amount=str(DEPOSIT),
                )
            )
        ).transfer
    assert deposited.status == "included" and deposited.to_address.lower() == executor.lower()
    assert await balance(chain, executor, weth, deposited.block_number) == DEPOSIT
    await positions_equal_the_chain(world)

    _session, funded = await trade(world, bus, S.STRATEGY_TYPE_DEX_ARBITRAGE)
    landed = [e for e in funded if e.status == S.EXECUTION_RESULT_STATUS_INCLUDED]
    assert landed, [(S.ExecutionResultStatus.Name(e.status), e.error) for e in funded]
    for e in landed:
        receipt = await chain.client.get_receipt(e.tx_hashes[0])
        assert receipt is not None and int(receipt["status"], 16) == 1
        assert receipt["to"].lower() == executor.lower() and int(e.realized_profit) > 0
    # Own capital: the executor keeps its inventory plus the gross profit of what landed.
    assert await balance(chain, executor, weth) == DEPOSIT + gross(funded)
    final = by_key(await positions_equal_the_chain(world))
    assert int(final[(world.wallet.lower(), chain_id, weth)].executor_balance) == DEPOSIT + gross(funded)
