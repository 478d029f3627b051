"""`make run` keeps the devnet's chain state across restarts (Devnet(keep_state=True)): a restart
continues the same chain (blocks, balances, contracts, the Aave market); a state that cannot be
loaded starts a new chain and says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mevaas_chain import abi
from mevaas_chain.registry import load_registry
from mevaas_local.devnet import Devnet
from mevaas_local.devnet.deploy import mint_tokens

pytestmark = pytest.mark.integration

HOLDER = "0x00000000000000000000000000000000000C0FFE"


async def usdc_balance(devnet: Devnet, owner: str) -> int:
    chain = devnet.main
    usdc = chain.deployment.token("USDC").address
    return abi.decode_uint(await chain.client.call(usdc, abi.balance_of(owner)))


def started(data_dir: Path) -> Devnet:
    return Devnet(block_time_s=None, data_dir=data_dir, keep_state=True, sim_swaps_per_block=1)


async def test_a_restart_continues_the_same_chain_and_a_broken_state_is_a_reported_reset(
    tmp_path: Path,
) -> None:
    async with started(tmp_path) as first:
        assert [c.restore.was_reset for c in first.chains] == [False]
        assert first.restore_summary() == ["chain 31337: new chain (no saved state)"]
        chain = first.main
        await mint_tokens(
            chain.client,
            chain.transact,
            chain.deployment,
            deployer=chain.deployer,
            to=HOLDER,
            amounts={"USDC": 1_234_567},
        )
        await chain.mine(3)
        head = await chain.client.block_number()
        executor = chain.deployment.contracts["executor"]
        held = await usdc_balance(first, HOLDER)
        executor_held = await usdc_balance(first, executor)
        assert held == 1_234_567
        assert chain.lending is not None
        aave_pool = chain.lending.market.pool
        borrower = chain.lending.borrowers[0].address
        account = await chain.client.call(aave_pool, abi.encode_call("getUserAccountData(address)", borrower))

    async with started(tmp_path) as second:
        chain = second.main
        saved = chain.restore.saved
        assert saved is not None and saved.head_block == head
        assert second.restore_summary()[0].startswith("chain 31337: state kept from ")
        assert await chain.client.block_number() == head
        # Same contracts at the same addresses, holding the same balances, in the registry too.
        assert chain.deployment.contracts["executor"] == executor
        assert load_registry(tmp_path / "chains.json").get(31337).contracts["executor"] == executor
        assert await usdc_balance(second, HOLDER) == held
        assert await usdc_balance(second, executor) == executor_held
        assert chain.lending is not None and chain.lending.market.pool == aave_pool
        assert chain.lending.borrowers[0].address == borrower
        assert (
            await chain.client.call(aave_pool, abi.encode_call("getUserAccountData(address)", borrower))
            == account
        )
        # The chain moves on from there: the producer, simulator and oracle driver run on it.
        await chain.mine(2)
        assert await chain.client.block_number() == head + 2

    state_file = tmp_path / "state" / "chain-31337.json"
    document = json.loads(state_file.read_text())
    assert document["head_block"] == head + 2
    document["anvil_state"] = "0xdeadbeef"
    state_file.write_text(json.dumps(document))

    async with started(tmp_path) as third:
        chain = third.main
        assert chain.restore.was_reset
        (line,) = third.restore_summary()
        assert "DEVNET RESET" in line and "could not be loaded" in line
        # A new chain: deployed from scratch, nothing of the old one on it.
        assert await usdc_balance(third, HOLDER) == 0
    # The new chain's state replaced the broken one.
    assert json.loads(state_file.read_text())["anvil_state"] != "0xdeadbeef"
