"""A devnet whose spec has Uniswap V3 (what `make run` starts): the registry names the V3 factory,
the executor allows it, the market simulator trades V3 pools as well as V2 ones, and a pool index
built from the registry follows them to the wei."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from mevaas_chain.pool_index import PoolIndex
from mevaas_chain.v3_pools import read_pool_state
from mevaas_local.devnet import Devnet

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def v3_devnet(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Devnet]:
    net = Devnet(
        block_time_s=None,
        data_dir=Path(tmp_path_factory.mktemp("devnet-v3")),
        sim_swaps_per_block=0,
        uniswap_v3=True,
    )
    await net.start()
    try:
        yield net
    finally:
        await net.stop()


async def test_simulator_trades_v3_pools_and_the_index_follows(v3_devnet: Devnet) -> None:
    chain = v3_devnet.main
    config = chain.config
    (v3_dex,) = config.v3_dexes
    assert len(chain.simulator.v3_pools) == 5
    index = PoolIndex(chain.client, config.dexes, v3_dexes=config.v3_dexes)
    await index.load()
    assert set(index.v3_pools) == {p.address for p in chain.simulator.v3_pools}
    before = {a: p.state for a, p in index.v3_pools.items()}
    for _ in range(5):
        await chain.simulator.queue_swaps(30)
        await chain.mine()
    await index.sync()
    moved = [a for a, p in index.v3_pools.items() if p.state.sqrt_price_x96 != before[a].sqrt_price_x96]
    assert len(moved) >= 4, moved
    assert await index.verify() == []
    for address, pool in index.v3_pools.items():
        assert pool.state == await read_pool_state(chain.client, address, index.head[0])
    assert v3_dex.factory == chain.deployment.contracts["uniswap_v3_factory"]
