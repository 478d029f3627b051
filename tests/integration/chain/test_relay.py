"""The devnet relay: bundles land atomically at the top of their block, or not at all."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from eth_account import Account

from mevaas_chain import abi
from mevaas_chain.client import ChainClient, RpcError
from mevaas_local.devnet import DevAccount, Devnet, DevnetChain

pytestmark = pytest.mark.integration


def _account(devnet: Devnet, index: int) -> DevAccount:
    return devnet.accounts[index]


async def _sign(
    chain: DevnetChain, account: DevAccount, nonce: int, to: str, data: bytes, gas: int = 200_000
) -> str:
    tx: dict[str, Any] = {
        "chainId": chain.spec.chain_id,
        "nonce": nonce,
        "to": to,
        "value": 0,
        "data": data,
        "gas": gas,
        "maxFeePerGas": 50 * 10**9,
        "maxPriorityFeePerGas": 10**9,
    }
    signed = Account.sign_transaction(tx, account.private_key)
    return "0x" + bytes(signed.raw_transaction).hex()


async def _nonce(client: ChainClient, address: str) -> int:
    return int(await client.request("eth_getTransactionCount", [address, "latest"]), 16)


def _transfer(to: str, amount: int) -> bytes:
    return abi.encode_call("transfer(address,uint256)", to, amount)


async def test_bundle_goes_first_in_its_block(devnet: Devnet) -> None:
    chain = devnet.main
    usdc = chain.deployment.token("USDC").address
    searcher, public_sender = _account(devnet, 3), _account(devnet, 4)
    async with ChainClient(chain.relay.url + "/relay") as relay:
        head = await relay.block_number()
        # The public transaction arrives first, yet the bundle is ordered before it.
        public_n = await _nonce(relay, public_sender.address)
        public_tx = await _sign(chain, public_sender, public_n, usdc, _transfer(searcher.address, 1))
        public_hash = await relay.request("eth_sendRawTransaction", [public_tx])
        n = await _nonce(relay, searcher.address)
        txs = [
            await _sign(chain, searcher, n + i, usdc, _transfer(public_sender.address, i + 1))
            for i in range(2)
        ]
        reply = await relay.request("eth_sendBundle", [{"txs": txs, "blockNumber": hex(head + 1)}])
        assert reply["bundleHash"].startswith("0x")
        (block,) = await chain.mine()
    assert block.number == head + 1
    assert block.bundles == [reply["bundleHash"]]
    bundle_hashes = [abi.keccak_hex(bytes.fromhex(t[2:])) for t in txs]
    assert block.transactions[:2] == bundle_hashes
    assert public_hash in block.transactions[2:]


async def test_reverting_bundle_is_never_included(devnet: Devnet) -> None:
    chain = devnet.main
    usdc = chain.deployment.token("USDC").address
    searcher = _account(devnet, 3)
    async with ChainClient(chain.relay.url) as relay:
        head = await relay.block_number()
        n = await _nonce(relay, searcher.address)
        good = await _sign(chain, searcher, n, usdc, _transfer(searcher.address, 1))
        # Far more USDC than the searcher holds: reverts.
        bad = await _sign(chain, searcher, n + 1, usdc, _transfer(searcher.address, 10**30))
        simulated = await relay.request(
            "eth_callBundle", [{"txs": [good, bad], "blockNumber": hex(head + 1)}]
        )
        assert "error" not in simulated["results"][0] and simulated["results"][1]["error"]
        assert await relay.block_number() == head
        reply = await relay.request("eth_sendBundle", [{"txs": [good, bad], "blockNumber": hex(head + 1)}])
        (block,) = await chain.mine()
        assert reply["bundleHash"] in block.dropped_bundles
        assert block.bundles == []
        # Nothing of it landed, not even the good first transaction.
        assert await _nonce(relay, searcher.address) == n
        assert (
            await relay.request("eth_getTransactionReceipt", [abi.keccak_hex(bytes.fromhex(good[2:]))])
            is None
        )


async def test_every_reverting_bundle_is_dropped_in_one_rebuild(devnet: Devnet) -> None:
    """Many searchers after one gap: the bundles that only reverted are all dropped in one
    rebuild of the block (not one rebuild per loser), and the good bundle after them lands."""
    chain = devnet.main
    usdc = chain.deployment.token("USDC").address
    losers, winner = [_account(devnet, i) for i in (4, 5, 6)], _account(devnet, 7)
    async with ChainClient(chain.relay.url) as relay:
        head = await relay.block_number()
        bundles = [
            [await _sign(chain, a, await _nonce(relay, a.address), usdc, _transfer(a.address, 10**30))]
            for a in losers
        ]
        bundles.append(
            [
                await _sign(
                    chain, winner, await _nonce(relay, winner.address), usdc, _transfer(winner.address, 0)
                )
            ]
        )
        hashes = [
            (await relay.request("eth_sendBundle", [{"txs": txs, "blockNumber": hex(head + 1)}]))[
                "bundleHash"
            ]
            for txs in bundles
        ]
        # anvil numbers its snapshots in order: the ids around the block tell how often it was built.
        before = int(await relay.request("evm_snapshot"), 16)
        (block,) = await chain.mine()
        after = int(await relay.request("evm_snapshot"), 16)
    assert block.bundles == [hashes[-1]]
    assert set(block.dropped_bundles) == set(hashes[:-1])
    assert after - before - 1 == 2  # the first build and one rebuild


async def test_bundle_for_a_past_block_is_rejected(devnet: Devnet) -> None:
    chain = devnet.main
    searcher = _account(devnet, 3)
    usdc = chain.deployment.token("USDC").address
    async with ChainClient(chain.relay.url + "/relay") as relay:
        head = await relay.block_number()
        tx = await _sign(
            chain, searcher, await _nonce(relay, searcher.address), usdc, _transfer(searcher.address, 1)
        )
        for block_number in (head, head - 1):
            with pytest.raises(RpcError, match="past"):
                await relay.request("eth_sendBundle", [{"txs": [tx], "blockNumber": hex(block_number)}])
        # A bundle that misses its block is discarded, not carried over.
        await relay.request("eth_sendBundle", [{"txs": [tx], "blockNumber": hex(head + 2)}])
        await chain.mine(3)
        assert (
            await relay.request("eth_getTransactionReceipt", [abi.keccak_hex(bytes.fromhex(tx[2:]))])
            is not None
        )
        tx2 = await _sign(
            chain, searcher, await _nonce(relay, searcher.address), usdc, _transfer(searcher.address, 1)
        )
        await relay.request("eth_sendBundle", [{"txs": [tx2], "blockNumber": hex(head + 4)}])
        await chain.client.request("evm_mine")
        await chain.mine()
        assert (
            await relay.request("eth_getTransactionReceipt", [abi.keccak_hex(bytes.fromhex(tx2[2:]))]) is None
        )


async def test_a_simulation_is_never_seen_by_readers(devnet: Devnet) -> None:
    """A reader polling the relay while eth_callBundle simulates never sees a simulated block
    (it would take it for a block reorged away): the simulation mines nothing."""
    chain = devnet.main
    usdc = chain.deployment.token("USDC").address
    searcher = _account(devnet, 3)
    async with ChainClient(chain.relay.url) as relay:
        head = await relay.block_number()
        n = await _nonce(relay, searcher.address)
        txs = [await _sign(chain, searcher, n + i, usdc, _transfer(searcher.address, 1)) for i in range(3)]
        seen: set[int] = set()
        simulating = True

        async def poll() -> None:
            while simulating:
                seen.add(await relay.block_number())

        pollers = [asyncio.create_task(poll()) for _ in range(4)]
        try:
            for _ in range(5):
                simulated = await relay.request(
                    "eth_callBundle", [{"txs": txs, "blockNumber": hex(head + 1)}]
                )
                assert simulated["stateBlockNumber"] == head
                assert all("error" not in r for r in simulated["results"]), simulated
        finally:
            simulating = False
            await asyncio.gather(*pollers)
        assert seen == {head}
        assert await _nonce(relay, searcher.address) == n


async def test_a_simulation_reports_gas_reverts_and_refuses_bad_bundles_clearly(devnet: Devnet) -> None:
    """eth_callBundle runs the bundle in order on the head's state (a later transaction sees the
    earlier one's effects), reports a revert per transaction, and refuses what could never be
    included (a nonce gap, a past block) with a clear error; nothing is mined, nothing rewound
    (a balance written straight to anvil meanwhile stays)."""
    chain = devnet.main
    usdc = chain.deployment.token("USDC").address
    searcher, other = _account(devnet, 3), _account(devnet, 5)
    async with ChainClient(chain.relay.url) as relay:
        head = await relay.block_number()
        n = await _nonce(relay, searcher.address)
        balance = int(await relay.request("eth_call", [_balance_call(usdc, searcher.address), "latest"]), 16)
        # The whole balance out, then one more unit: the second reverts only after the first.
        txs = [
            await _sign(chain, searcher, n, usdc, _transfer(other.address, balance)),
            await _sign(chain, searcher, n + 1, usdc, _transfer(other.address, 1)),
        ]
        simulated = await relay.request("eth_callBundle", [{"txs": txs, "blockNumber": hex(head + 1)}])
        first, second = simulated["results"]
        assert simulated["stateBlockNumber"] == head
        assert "error" not in first and first["gasUsed"] > 21_000
        assert second["error"] == "execution reverted" and second["gasUsed"] > 0
        assert first["fromAddress"].lower() == searcher.address.lower()
        assert simulated["totalGasUsed"] == first["gasUsed"] + second["gasUsed"]
        gap = await _sign(chain, searcher, n + 2, usdc, _transfer(other.address, 1))
        with pytest.raises(RpcError, match=f"has nonce {n + 2}: .* next is {n}"):
            await relay.request("eth_callBundle", [{"txs": [gap]}])
        with pytest.raises(RpcError, match="in the past"):
            await relay.request("eth_callBundle", [{"txs": txs[:1], "blockNumber": hex(head)}])
        await chain.client.request("anvil_setBalance", [other.address, hex(12345 * 10**18)])
        await relay.request("eth_callBundle", [{"txs": txs}])
        assert await relay.block_number() == head
        assert await _nonce(relay, searcher.address) == n
        assert int(await relay.request("eth_getBalance", [other.address, "latest"]), 16) == 12345 * 10**18


def _balance_call(token: str, owner: str) -> dict[str, str]:
    return {"to": token, "data": "0x" + abi.encode_call("balanceOf(address)", owner).hex()}
