from __future__ import annotations

import pytest

from mevaas_chain import abi
from mevaas_chain.pool_index import BlockUpdate, PoolIndex, Reorg
from mevaas_local.devnet import Devnet
from tests.fixtures.devnet import reserves, send

pytestmark = pytest.mark.integration


async def _assert_matches_chain(index: PoolIndex, devnet: Devnet) -> None:
    assert await index.verify() == []
    for address, pool in index.pools.items():
        assert (pool.reserve0, pool.reserve1) == await reserves(devnet.main, address)


async def test_index_follows_hundreds_of_random_swaps(devnet: Devnet) -> None:
    chain = devnet.main
    index = PoolIndex(chain.client, chain.deployment.dexes)
    await index.load()
    assert set(index.pools) == {p.address for p in chain.deployment.pools}
    touched: set[str] = set()
    for _ in range(6):
        await chain.simulator.queue_swaps(50)
        await chain.mine()
        for event in await index.sync():
            assert isinstance(event, BlockUpdate)
            touched |= event.changed
    assert index.head[0] == await chain.client.block_number()
    assert len(touched) > len(index.pools) // 2
    await _assert_matches_chain(index, devnet)


async def test_index_picks_up_new_pairs(devnet: Devnet) -> None:
    chain = devnet.main
    index = PoolIndex(chain.client, chain.deployment.dexes)
    await index.load()
    dex = chain.deployment.dexes[1]
    mkr, dai = chain.deployment.token("MKR").address, chain.deployment.token("DAI").address
    await send(
        chain,
        chain.deployer,
        dex.factory,
        abi.encode_call("createPair(address,address)", mkr, dai),
        gas=5_000_000,
    )
    (update,) = await index.sync()
    assert isinstance(update, BlockUpdate)
    pair = abi.pair_address(dex.factory, dex.init_code_hash, mkr, dai)
    assert update.new_pools == {pair}
    assert index.pool(pair).dex == dex.name


async def test_reorg_rewinds_and_reapplies(devnet: Devnet) -> None:
    chain = devnet.main
    index = PoolIndex(chain.client, chain.deployment.dexes, depth=16)
    await index.load()
    fork_point = index.head
    snapshot = await chain.client.request("evm_snapshot")
    await chain.simulator.queue_swaps(40)
    await chain.mine(2)
    orphaned = await index.sync()
    orphaned_hashes = {e.hash for e in orphaned if isinstance(e, BlockUpdate)}
    orphan_changed = set().union(*(e.changed for e in orphaned if isinstance(e, BlockUpdate)))
    assert len(orphaned_hashes) == 2

    # A different history from the same parent, one block longer.
    await chain.client.request("evm_revert", [snapshot])
    await chain.simulator.queue_swaps(25)
    await chain.mine(3)
    events = await index.sync()
    reorg = events[0]
    assert isinstance(reorg, Reorg)
    assert (reorg.ancestor_number, reorg.ancestor_hash) == fork_point
    assert set(reorg.orphaned) == orphaned_hashes
    assert reorg.rewound == orphan_changed
    assert [e.number for e in events[1:] if isinstance(e, BlockUpdate)] == [
        fork_point[0] + i for i in (1, 2, 3)
    ]
    await _assert_matches_chain(index, devnet)


async def test_reorg_deeper_than_kept_history_reloads(devnet: Devnet) -> None:
    chain = devnet.main
    index = PoolIndex(chain.client, chain.deployment.dexes, depth=2)
    await index.load()
    snapshot = await chain.client.request("evm_snapshot")
    for _ in range(3):
        await chain.simulator.queue_swaps(5)
        await chain.mine()
        await index.sync()
    await chain.client.request("evm_revert", [snapshot])
    await chain.simulator.queue_swaps(5)
    await chain.mine(4)
    events = await index.sync()
    assert isinstance(events[0], Reorg) and events[0].full_reload
    await index.sync()
    await _assert_matches_chain(index, devnet)
