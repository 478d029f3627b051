"""AnalyticsService.InspectBlock on the devnet: the chain registry's RPC node is traced and the
inspector's findings come back with exact amounts; unknown chains and missing blocks fail cleanly."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from mevaas.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from mevaas_core.auth import Role
from mevaas_local.devnet import Devnet
from tests.fixtures.mev_staging import stage_arbitrage, stage_sandwich
from tests.integration.tenancy.helpers import field_violations

pytestmark = pytest.mark.integration

Channel = Callable[[str, Role], tuple[grpc.aio.Channel, list[tuple[str, str]]]]


@pytest.fixture
def devnet_registry(devnet: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Analytics reads the registry per inspection from MEVAAS_CHAINS_FILE (no chains_file set)."""
    path = tmp_path / "chains.json"
    devnet.registry.write(path)
    monkeypatch.delenv("MEVAAS_CHAINS", raising=False)
    monkeypatch.setenv("MEVAAS_CHAINS_FILE", str(path))


async def _inspect(
    analytics_channel: Channel, chain_id: int, block: int, role: Role = Role.VIEWER
) -> analytics_pb2.InspectBlockResponse:
    channel, metadata = analytics_channel(str(uuid.uuid4()), role)
    async with channel:
        stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        request = analytics_pb2.InspectBlockRequest(chain_id=chain_id, block_number=block)
        response: analytics_pb2.InspectBlockResponse = await stub.InspectBlock(request, metadata=metadata)
        return response


async def test_inspect_block_finds_the_staged_sandwich_and_arbitrage(
    devnet: Devnet, devnet_registry: None, analytics_channel: Channel
) -> None:
    chain = devnet.main
    weth = chain.deployment.token("WETH").address.lower()
    sandwich = await stage_sandwich(devnet)
    found = await _inspect(analytics_channel, chain.spec.chain_id, sandwich.block)
    block = await chain.client.get_block(sandwich.block)
    assert block is not None
    assert (found.chain_id, found.block_number, found.block_hash) == (
        chain.spec.chain_id,
        sandwich.block,
        block["hash"],
    )
    assert found.miner == block["miner"].lower()
    assert found.swap_count == 3 and not found.arbitrages and not found.liquidations
    (s,) = found.sandwiches
    assert s.sandwicher == sandwich.attacker.lower()
    assert (s.frontrun.tx_hash, s.backrun.tx_hash) == (
        sandwich.front["transactionHash"],
        sandwich.back["transactionHash"],
    )
    assert [v.tx_hash for v in s.victims] == [sandwich.victim["transactionHash"]]
    assert s.frontrun.pool == sandwich.pool.address.lower()
    assert (s.frontrun.amount_in, s.frontrun.amount_out) == (str(sandwich.front_in), str(sandwich.bought))
    assert (s.profit_token, s.profit) == (weth, str(sandwich.profit))
    assert s.frontrun_gas.gas_used == int(sandwich.front["gasUsed"], 16)

    arbitrage = await stage_arbitrage(devnet)
    found = await _inspect(analytics_channel, chain.spec.chain_id, arbitrage.block, Role.TRADER)
    (a,) = found.arbitrages
    assert (a.tx_hash, a.account, a.profit_token) == (
        arbitrage.receipt["transactionHash"],
        arbitrage.executor.lower(),
        weth,
    )
    assert (a.start_amount, a.end_amount) == (str(arbitrage.weth_in), str(arbitrage.weth_out))
    assert a.profit == a.net_profit == str(arbitrage.executed.profit)
    assert [sw.pool for sw in a.swaps] == [h.pool.address.lower() for h in arbitrage.hops]
    assert a.gas.gas_used == int(arbitrage.receipt["gasUsed"], 16) and not a.error


async def test_inspect_block_rejects_unknown_chains_and_missing_blocks(
    devnet: Devnet, devnet_registry: None, analytics_channel: Channel
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await _inspect(analytics_channel, 999_999, 1)
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "chain_id" in field_violations(unknown.value)

    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await _inspect(analytics_channel, 0, 0)
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {"chain_id", "block_number"} <= set(field_violations(empty.value))

    head = await devnet.main.client.block_number()
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await _inspect(analytics_channel, devnet.main.spec.chain_id, head + 1000)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
