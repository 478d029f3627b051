from __future__ import annotations

import pytest

from mevaas_chain import abi
from mevaas_chain.client import Call, ChainClient
from mevaas_chain.registry import load_registry
from mevaas_local.devnet import Devnet

pytestmark = pytest.mark.integration


async def test_deployment_matches_the_written_registry(devnet: Devnet) -> None:
    assert devnet.data_dir is not None
    registry = load_registry(devnet.data_dir / "chains.json")
    main = registry.get(31337)
    assert {d.name for d in main.dexes} == {"uniswap", "sushiswap"}
    assert {t.symbol: t.decimals for t in main.tokens}.items() >= {
        "USDC": 6,
        "USDT": 6,
        "WBTC": 8,
        "DAI": 18,
        "WETH": 18,
    }.items()
    assert len(main.tokens) >= 9
    assert len(devnet.main.deployment.pools) >= 20
    assert main.contracts["executor"]
    second = registry.get(31338)
    assert len(second.dexes) == 1
    async with ChainClient.for_chain(second) as client:
        assert await client.chain_id() == 31338


async def test_pair_addresses_follow_the_router_init_code_hash(devnet: Devnet) -> None:
    chain = devnet.main
    pools = chain.deployment.pools
    factories = {d.name: d for d in chain.deployment.dexes}
    for pool in pools:
        dex = factories[pool.dex]
        assert abi.pair_address(dex.factory, dex.init_code_hash, pool.token0, pool.token1) == pool.address
    # Router02.pairFor is internal; getAmountsOut goes through it, so a wrong hash would revert.
    pool = pools[0]
    router = factories[pool.dex].router
    assert router is not None
    data = abi.encode_call("getAmountsOut(uint256,address[])", 10**6, [pool.token0, pool.token1])
    (result,) = await chain.client.batch_call([Call(router, data)])
    assert result is not None


async def test_relay_endpoint_serves_the_public_rpc(devnet: Devnet) -> None:
    async with ChainClient(devnet.main.config.rpc_url) as client:
        assert await client.chain_id() == 31337
        assert await client.block_number() == await devnet.main.client.block_number()
