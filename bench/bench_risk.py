"""Risk pre-trade check benchmark: our atomic decision through PostgreSQL against baselines, in one run.

* ours: `RiskEngine.decide`: one transaction per opportunity that locks the tenant's risk-state
  row, checks for an earlier decision, reads limits, kill switches, open reservations and today's
  PnL, decides, and writes the decision and its reservation;
* unlocked: the very same transaction without the row lock (what a naive implementation does);
* in-memory: the same checks (domain.checks.decide) serially against Python dicts, no database:
  the floor of the decision logic itself.

Two workloads:
1. throughput: 8 tenants, every opportunity within limits (so each one writes a reservation),
   16 in flight; decisions/s and p50/p99 latency per decision (queueing included), then p50/p99
   with one decision in flight;
2. contention: 200 opportunities of one tenant at once with max_concurrent_executions = 5; how
   many each variant approves (ours must approve exactly 5; the unlocked one over-reserves).

    .venv/bin/python bench/bench_risk.py [--decisions 2000] [--concurrency 16]

Set DATABASE_URL (a superuser DSN) to measure against an external PostgreSQL instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_core.db import create_pool, provision_service_database, tenant_transaction
from mevaas_core.migrations import apply_migrations
from mevaas_local.embedded import EmbeddedPostgres
from mevaas_risk import store
from mevaas_risk.domain.checks import Exposure, OpportunityFacts, RiskContext, decide
from mevaas_risk.domain.limits import Limits, TokenKey
from mevaas_risk.engine import RiskEngine
from mevaas_risk.server import SERVICE

WETH = common_pb2.Token(chain_id=1, address="0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2")
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
TENANTS = 8
SINGLE = 300  # decisions timed one at a time: the latency a lone opportunity sees


class UnlockedEngine(RiskEngine):
    async def serialise(self, conn: asyncpg.Connection, tenant_id: str) -> None:
        return None


def opportunity(tenant_id: str, amount_in: int = 10**18) -> events_pb2.Opportunity:
    hops = [
        events_pb2.RouteHop(chain_id=1, token_in=WETH.address, token_out=USDC, dex="uniswap_v2"),
        events_pb2.RouteHop(chain_id=1, token_in=USDC, token_out=WETH.address, dex="sushiswap"),
    ]
    return events_pb2.Opportunity(
        event_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        opportunity_id=uuid.uuid4().hex,
        strategy_id="strategy-1",
        chain_id=1,
        chain_ids=[1],
        swap_cycle=events_pb2.SwapCycleAction(
            hops=hops, amount_in=str(amount_in), financing=events_pb2.FINANCING_INVENTORY
        ),
        expected_profit="2000000000000000",
        expected_profit_net_of_gas="1500000000000000",
        profit_token=WETH,
        gas_estimate=250_000,
        gas_price="2000000000",
        detected_block=100,
        deadline_block=102,
    )


def limits(max_concurrent: int) -> common_pb2.RiskLimits:
    return common_pb2.RiskLimits(
        denomination=WETH,
        max_position=str(10**30),
        max_gas_price_wei="100000000000",
        min_profit="1",
        daily_loss_limit=str(10**20),
        max_concurrent_executions=max_concurrent,
        allowed_chain_ids=[1],
    )


async def seed_limits(pool: asyncpg.Pool, tenant_id: str, max_concurrent: int) -> None:
    async with tenant_transaction(pool, tenant_id) as conn:
        await store.put_limits(
            conn,
            tenant_id=tenant_id,
            strategy_id="",
            limits=limits(max_concurrent).SerializeToString(),
            updated_by="bench",
        )


async def drive(
    engine: RiskEngine, opportunities: list[events_pb2.Opportunity], concurrency: int
) -> tuple[float, list[float], int]:
    """Decide every opportunity with `concurrency` in flight: (decisions/s, latencies, approved)."""
    queue: asyncio.Queue[events_pb2.Opportunity] = asyncio.Queue()
    for opp in opportunities:
        queue.put_nowait(opp)
    latencies: list[float] = []
    approved = 0

    async def worker() -> None:
        nonlocal approved
        while not queue.empty():
            opp = queue.get_nowait()
            started = time.perf_counter()
            outcome = await engine.decide(opp)
            latencies.append(time.perf_counter() - started)
            approved += outcome.decision.outcome == events_pb2.RISK_DECISION_OUTCOME_APPROVED

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(opportunities) / (time.perf_counter() - started), latencies, approved


def in_memory(opportunities: list[events_pb2.Opportunity]) -> tuple[float, list[float]]:
    """The same checks serially against dicts: limits per tenant, open reservations, PnL."""
    tenant_limits = Limits.from_proto(limits(0))
    exposure: dict[str, Exposure] = {}
    latencies: list[float] = []
    started = time.perf_counter()
    for opp in opportunities:
        began = time.perf_counter()
        facts = OpportunityFacts.from_proto(opp)
        current = exposure.get(opp.tenant_id, Exposure())
        verdict = decide(
            facts,
            RiskContext(
                tenant_limits=tenant_limits,
                strategy_limits=Limits(),
                plan_max_concurrent=0,
                tenant_exposure=current,
                strategy_exposure=current,
                tenant_pnl_today=0,
                strategy_pnl_today=0,
            ),
        )
        if verdict.approved:
            token = TokenKey.of(1, WETH.address)
            reserved = dict(current.reserved)
            reserved[token] = reserved.get(token, 0) + facts.exposure_amount
            exposure[opp.tenant_id] = Exposure(current.open_count + 1, reserved)
        latencies.append(time.perf_counter() - began)
    return len(opportunities) / (time.perf_counter() - started), latencies


def pct(latencies: list[float], q: int) -> float:
    return statistics.quantiles(latencies, n=100)[q - 1] * 1000


@asynccontextmanager
async def postgres() -> AsyncIterator[str]:
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    with tempfile.TemporaryDirectory() as tmp:
        async with EmbeddedPostgres(Path(tmp) / "pg", durable=False) as pg:
            yield pg.dsn


async def main(decisions: int, concurrency: int) -> None:
    async with postgres() as admin_dsn:
        dsns = await provision_service_database(admin_dsn, "risk", secrets.token_hex(8), secrets.token_hex(8))
        assert SERVICE.migrations is not None
        await apply_migrations(dsns.owner_dsn, "risk", SERVICE.migrations)
        pool = await create_pool(dsns.app_dsn, min_size=concurrency, max_size=concurrency)
        try:
            ours, unlocked = RiskEngine(pool), UnlockedEngine(pool)
            rows: dict[str, tuple[float, float, float]] = {}
            alone: dict[str, tuple[float, float]] = {}
            for name, engine in (
                ("ours (row lock, atomic reservation)", ours),
                ("unlocked baseline", unlocked),
            ):
                tenants = [f"bench-{uuid.uuid4().hex[:8]}" for _ in range(TENANTS)]
                for tenant_id in tenants:
                    await seed_limits(pool, tenant_id, 0)
                warmup = [opportunity(tenants[i % TENANTS]) for i in range(100)]
                await drive(engine, warmup, concurrency)
                batch = [opportunity(tenants[i % TENANTS]) for i in range(decisions)]
                rate, latencies, _ = await drive(engine, batch, concurrency)
                rows[name] = (rate, pct(latencies, 50), pct(latencies, 99))
                single = [opportunity(tenants[i % TENANTS]) for i in range(SINGLE)]
                _, latencies, _ = await drive(engine, single, 1)
                alone[name] = (pct(latencies, 50), pct(latencies, 99))
            rate, latencies = in_memory([opportunity(f"mem-{i % TENANTS}") for i in range(decisions)])
            rows["in-memory serial check (no database)"] = (rate, pct(latencies, 50), pct(latencies, 99))

            contention: dict[str, int] = {}
            for name, engine in (("ours", ours), ("unlocked", unlocked)):
                tenant_id = f"bench-{uuid.uuid4().hex[:8]}"
                await seed_limits(pool, tenant_id, 5)
                _, _, approved = await drive(
                    engine, [opportunity(tenant_id) for _ in range(200)], concurrency
                )
                contention[name] = approved
        finally:
            await pool.close()

    print(f"risk pre-trade check: {decisions} decisions over {TENANTS} tenants, {concurrency} in flight")
    for name, (rate, p50, p99) in rows.items():
        print(f"  {name:40s} {rate:9.0f} decisions/s   p50 {p50:7.3f} ms   p99 {p99:7.3f} ms")
    ours_rate = rows["ours (row lock, atomic reservation)"][0]
    print(f"  ratio ours / unlocked throughput: {ours_rate / rows['unlocked baseline'][0]:.2f}")
    print(
        f"  ratio ours / in-memory throughput: {ours_rate / rows['in-memory serial check (no database)'][0]:.4f}"
    )
    print(f"latency with one decision in flight ({SINGLE} decisions)")
    for name, (p50, p99) in alone.items():
        print(f"  {name:40s} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms")
    print("contention: 200 opportunities of one tenant at once, max_concurrent_executions = 5")
    print(f"  ours approved {contention['ours']} (limit 5); unlocked approved {contention['unlocked']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(args.decisions, args.concurrency))
