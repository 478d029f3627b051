"""A two-leg cross-chain trade whose second leg is forced to fail, for the execution tests of what
happens to the first leg when it lands alone (unwound, or left open with an alert)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_chain import abi
from mevaas_chain.amm.v2 import get_amount_out
from mevaas_local.devnet import DevnetChain
from mevaas_local.devnet.deploy import mint_tokens
from tests.fixtures.devnet import reserves
from tests.fixtures.e2e import FINAL
from tests.integration.execution.helpers import TenantSession

S = common_pb2
ETHER = 10**18


async def holdings(chain: DevnetChain, wallet: str) -> dict[str, int]:
    """The wallet's native balance and its balance of every devnet token on the chain."""
    out = {"native": int(await chain.client.request("eth_getBalance", [wallet, "latest"]), 16)}
    for token in chain.deployment.tokens:
        out[token.symbol] = abi.decode_uint(await chain.client.call(token.address, abi.balance_of(wallet)))
    return out


async def pool_quote(chain: DevnetChain, token_in: str, token_out: str, amount_in: int) -> tuple[Any, int]:
    pool = next(p for p in chain.deployment.pools if {p.token0, p.token1} == {token_in, token_out})
    r0, r1 = await reserves(chain, pool.address)
    reserve_in, reserve_out = (r0, r1) if pool.token0 == token_in else (r1, r0)
    return pool, get_amount_out(amount_in, reserve_in, reserve_out, 30)


def hop(chain_id: int, pool: Any, token_in: str, token_out: str, amount_in: int, amount_out: int) -> Any:
    return events_pb2.RouteHop(
        chain_id=chain_id,
        pool=pool.address,
        dex=pool.dex,
        token_in=token_in,
        token_out=token_out,
        amount_in=str(amount_in),
        amount_out=str(amount_out),
        fee_bps=30,
    )


@dataclass(frozen=True)
class StrandedTrade:
    opportunity: events_pb2.Opportunity
    amount_in: int  # WETH leg 0 sells on the first chain
    bought: int  # USDC leg 0 buys there (what is stranded if it is not unwound)
    usdc_first: str  # that USDC's address


async def stranded_trade(
    tenant: TenantSession, session: execution_pb2.ExecutionSession, first: DevnetChain, second: DevnetChain
) -> StrandedTrade:
    """Fund the tenant's wallet on both chains and build the trade: leg 0 sells 0.1 WETH for USDC
    on `first` at the pool's exact quote; leg 1 asks `second`'s pool for far more WETH than it
    pays, so the router reverts it."""
    for chain in (first, second):
        await mint_tokens(
            chain.client,
            chain.transact,
            chain.deployment,
            deployer=chain.deployer,
            to=tenant.wallet,
            amounts={"WETH": 10 * ETHER, "USDC": 100_000 * 10**6},
        )
    weth_a, usdc_a = first.deployment.token("WETH").address, first.deployment.token("USDC").address
    weth_b, usdc_b = second.deployment.token("WETH").address, second.deployment.token("USDC").address
    chain_a, chain_b = first.spec.chain_id, second.spec.chain_id
    amount_in = ETHER // 10
    pool_a, bought = await pool_quote(first, weth_a, usdc_a, amount_in)
    pool_b, _ = await pool_quote(second, usdc_b, weth_b, bought)
    head = await first.client.block_number()
    now = Timestamp()
    now.GetCurrentTime()
    opportunity = events_pb2.Opportunity(
        event_id=str(uuid.uuid4()),
        tenant_id=tenant.tenant_id,
        opportunity_id=str(uuid.uuid4()),
        strategy_id=session.strategy_id,
        strategy_version=1,
        type=S.STRATEGY_TYPE_CROSS_CHAIN_ARBITRAGE,
        chain_id=chain_a,
        chain_ids=[chain_a, chain_b],
        cross_chain=events_pb2.CrossChainAction(
            legs=[
                events_pb2.CrossChainLeg(
                    chain_id=chain_a,
                    amount_in=str(amount_in),
                    hops=[hop(chain_a, pool_a, weth_a, usdc_a, amount_in, bought)],
                ),
                # Forced to fail: no pool pays this much for it.
                events_pb2.CrossChainLeg(
                    chain_id=chain_b,
                    amount_in=str(bought),
                    hops=[hop(chain_b, pool_b, usdc_b, weth_b, bought, 1000 * ETHER)],
                ),
            ]
        ),
        expected_profit=str(ETHER),
        expected_profit_net_of_gas=str(ETHER),
        profit_token=S.Token(chain_id=chain_a, address=weth_a, symbol="WETH", decimals=18),
        gas_estimate=300_000,
        gas_price=str(10**9),
        detected_block=head,
        occurred_at=now,
        detected_at=now,
        deadline_block=head + 5,
        submission_mode=S.SUBMISSION_MODE_PUBLIC_MEMPOOL,
    )
    return StrandedTrade(opportunity, amount_in, bought, usdc_a)


async def final_execution(tenant: TenantSession, session_id: str, opportunity_id: str) -> Any:
    """The session's execution of the opportunity once final (None before)."""
    listed = await tenant.stub.ListExecutions(execution_pb2.ListExecutionsRequest(session_id=session_id))
    found = [e for e in listed.executions if e.opportunity_id == opportunity_id]
    return found[0] if found and found[0].status in FINAL else None
