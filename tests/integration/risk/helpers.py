"""Helpers for the risk tests: tenants with keys per role, opportunities and results on the bus,
decision collectors, and polling."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.risk.v1 import risk_pb2_grpc
from mevaas.strategy.v1 import strategy_pb2, strategy_pb2_grpc
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_core.bus import Bus, Delivery
from mevaas_core.runtime import ServiceRuntime
from mevaas_local.devnet import Devnet
from mevaas_sdk import MevaasClient
from tests.fixtures.strategy import strategy_config
from tests.integration.tenancy.helpers import create_tenant

T = TypeVar("T")
WETH = common_pb2.Token(chain_id=31337, address="0x" + "a1" * 20)
USDC = common_pb2.Token(chain_id=31337, address="0x" + "b2" * 20)
POOL = "0x" + "c3" * 20


@dataclass
class RiskTenant:
    tenant_id: str
    keys: dict[str, str]
    clients: dict[str, MevaasClient] = field(default_factory=dict)

    def risk(self, role: str = "owner") -> risk_pb2_grpc.RiskServiceAsyncStub:
        stub: risk_pb2_grpc.RiskServiceAsyncStub = self.clients[role].stub(
            "risk", risk_pb2_grpc.RiskServiceStub
        )
        return stub

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()


ROLE_PROTOS = {
    "admin": common_pb2.ROLE_ADMIN,
    "trader": common_pb2.ROLE_TRADER,
    "viewer": common_pb2.ROLE_VIEWER,
    "compliance": common_pb2.ROLE_COMPLIANCE,
}


async def risk_tenant(
    admin: MevaasClient,
    client_for: Callable[..., MevaasClient],
    risk: ServiceRuntime[Any],
    roles: tuple[str, ...] = ("trader", "viewer"),
) -> RiskTenant:
    created = await create_tenant(admin)
    tenant_id = created.tenant.tenant_id
    keys = {"owner": created.owner_key}
    for role in roles:
        key = await admin.tenants.CreateApiKey(
            tenancy_pb2.CreateApiKeyRequest(
                idempotency_key=str(uuid.uuid4()),
                tenant_id=tenant_id,
                name=f"{role} key",
                roles=[ROLE_PROTOS[role]],
            )
        )
        keys[role] = key.secret
    endpoint = f"127.0.0.1:{risk.grpc_port}"
    tenant = RiskTenant(tenant_id, keys)
    tenant.clients = {role: client_for(key, risk=endpoint) for role, key in keys.items()}
    return tenant


def opportunity(
    tenant_id: str,
    strategy_id: str = "s1",
    *,
    amount_in: int = 100,
    net_profit: int = 10,
    gas_price: int = 1_000_000_000,
    detected_block: int = 100,
    deadline_block: int = 102,
    opportunity_id: str | None = None,
) -> events_pb2.Opportunity:
    opp = events_pb2.Opportunity(
        event_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        opportunity_id=opportunity_id or uuid.uuid4().hex,
        strategy_id=strategy_id,
        strategy_version=1,
        type=common_pb2.STRATEGY_TYPE_FLASH_ARBITRAGE,
        chain_id=WETH.chain_id,
        chain_ids=[WETH.chain_id],
        swap_cycle=events_pb2.SwapCycleAction(
            hops=[
                events_pb2.RouteHop(
                    chain_id=WETH.chain_id,
                    pool=POOL,
                    token_in=WETH.address,
                    token_out=USDC.address,
                    dex="uniswap_v2",
                ),
                events_pb2.RouteHop(
                    chain_id=WETH.chain_id,
                    pool=POOL,
                    token_in=USDC.address,
                    token_out=WETH.address,
                    dex="sushiswap",
                ),
            ],
            amount_in=str(amount_in),
            financing=events_pb2.FINANCING_INVENTORY,
        ),
        expected_profit=str(net_profit + 1),
        profit_token=WETH,
        gas_estimate=200_000,
        gas_price=str(gas_price),
        expected_profit_net_of_gas=str(net_profit),
        detected_block=detected_block,
        deadline_block=deadline_block,
    )
    opp.occurred_at.GetCurrentTime()
    return opp


async def publish_opportunity(bus: Bus, opp: events_pb2.Opportunity, *, msg_id: str | None = None) -> None:
    await bus.publish(
        f"opp.{opp.tenant_id}.{opp.strategy_id}",
        opp,
        msg_id=msg_id or opp.opportunity_id,
        tenant_id=opp.tenant_id,
    )


async def publish_result(bus: Bus, result: events_pb2.ExecutionResult, *, msg_id: str | None = None) -> None:
    await bus.publish(
        f"exec.{result.tenant_id}.result",
        result,
        msg_id=msg_id or f"{result.execution_id}:{result.status}",
        tenant_id=result.tenant_id,
    )


class Collector:
    """Every event of one type on a subject, read through a fresh durable consumer."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    @classmethod
    async def start(cls, bus: Bus, stream: str, subject: str, message_type: type[Any]) -> Collector:
        collector = cls()

        async def handle(message: Any, delivery: Delivery) -> None:
            collector.events.append(message)

        await bus.subscribe(stream, f"t-{uuid.uuid4().hex[:12]}", subject, message_type, handle, batch=256)
        return collector

    async def wait(self, count: int, timeout: float = 30.0) -> list[Any]:
        """The events once at least `count` have arrived."""

        async def enough() -> bool:
            return len(self.events) >= count

        await eventually(enough, timeout)
        return self.events


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 30.0) -> T:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def drained(bus: Bus, stream: str, durable: str) -> bool:
    """True when the consumer has nothing pending and nothing unacknowledged."""
    info = await bus.js.consumer_info(stream, durable)
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def create_strategy(
    tenant: RiskTenant, client_for: Callable[..., MevaasClient], strategy: ServiceRuntime[Any], devnet: Devnet
) -> str:
    """A strategy of the tenant's on the strategy service (risk checks strategy ids against it)."""
    client = client_for(tenant.keys["owner"], strategy=f"127.0.0.1:{strategy.grpc_port}")
    try:
        stub: strategy_pb2_grpc.StrategyServiceAsyncStub = client.stub(
            "strategy", strategy_pb2_grpc.StrategyServiceStub
        )
        config = strategy_config(devnet.main.config, name=f"risk-{uuid.uuid4().hex[:8]}")
        created = await stub.CreateStrategy(
            strategy_pb2.CreateStrategyRequest(idempotency_key=str(uuid.uuid4()), config=config)
        )
        return created.strategy.strategy_id
    finally:
        await client.close()
