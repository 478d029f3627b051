"""Nonce manager: unique gap-free reservations under concurrency, gap filling, re-seeding."""

from __future__ import annotations

import asyncio
import random

import pytest

from mevaas_chain.nonces import NonceManager, SendOutcomeUnknown

CHAIN = 31337
ADDR = "0x" + "ab" * 20


class FakeChain:
    """Pending nonces per address; a send is accepted only with exactly the next nonce or above."""

    def __init__(self, start: int = 0) -> None:
        self.pending: dict[str, int] = {ADDR.lower(): start}
        self.mempool: dict[str, set[int]] = {ADDR.lower(): set()}
        self.fetches = 0

    async def fetch_pending_nonce(self, chain_id: int, address: str) -> int:
        assert chain_id == CHAIN
        self.fetches += 1
        await asyncio.sleep(0)
        return self.pending[address.lower()]

    async def send(self, address: str, nonce: int) -> None:
        await asyncio.sleep(random.random() / 1000)
        pool = self.mempool[address.lower()]
        if nonce < self.pending[address.lower()] or nonce in pool:
            raise ValueError("nonce too low")
        pool.add(nonce)
        while self.pending[address.lower()] in pool:
            self.pending[address.lower()] += 1


async def test_two_hundred_concurrent_reservations_are_unique_and_gap_free() -> None:
    chain = FakeChain(start=42)
    manager = NonceManager(chain.fetch_pending_nonce)

    async def send_one() -> int:
        async with manager.lease(CHAIN, ADDR) as nonce:
            await chain.send(ADDR, nonce)
        return nonce

    nonces = await asyncio.gather(*(send_one() for _ in range(200)))
    assert sorted(nonces) == list(range(42, 242))
    assert chain.pending[ADDR.lower()] == 242
    assert chain.fetches == 1


async def test_failed_sends_leave_no_gap() -> None:
    chain = FakeChain()
    manager = NonceManager(chain.fetch_pending_nonce)
    failing = {3, 7, 8}

    async def send_one(i: int) -> None:
        async with manager.lease(CHAIN, ADDR) as nonce:
            await asyncio.sleep(random.random() / 1000)
            if i in failing:
                raise RuntimeError("simulation reverted")
            await chain.send(ADDR, nonce)

    results = await asyncio.gather(*(send_one(i) for i in range(20)), return_exceptions=True)
    assert sum(isinstance(r, RuntimeError) for r in results) == 3
    # Released nonces are handed out first, so three more sends close every gap.
    for _ in range(3):
        async with manager.lease(CHAIN, ADDR) as nonce:
            await chain.send(ADDR, nonce)
    assert chain.pending[ADDR.lower()] == 20
    assert await manager.reserve(CHAIN, ADDR) == 20


async def test_releasing_the_highest_nonce_steps_back() -> None:
    chain = FakeChain(start=5)
    manager = NonceManager(chain.fetch_pending_nonce)
    a = await manager.reserve(CHAIN, ADDR)
    b = await manager.reserve(CHAIN, ADDR)
    await manager.release(CHAIN, ADDR, a)
    await manager.release(CHAIN, ADDR, b)
    assert await manager.reserve(CHAIN, ADDR) == 5
    assert await manager.reserve(CHAIN, ADDR) == 6


async def test_unknown_outcome_resyncs_from_chain() -> None:
    chain = FakeChain()
    manager = NonceManager(chain.fetch_pending_nonce)
    with pytest.raises(SendOutcomeUnknown):
        async with manager.lease(CHAIN, ADDR) as nonce:
            await chain.send(ADDR, nonce)  # it did land
            raise SendOutcomeUnknown("timeout after sending")
    # The chain says nonce 0 is used, so the manager does not hand it out again.
    assert await manager.reserve(CHAIN, ADDR) == 1
    await manager.release(CHAIN, ADDR, 1)

    # And if it did not land, the chain's pending nonce brings the counter back down.
    with pytest.raises(SendOutcomeUnknown):
        async with manager.lease(CHAIN, ADDR) as nonce:
            raise SendOutcomeUnknown("connection reset")
    assert await manager.reserve(CHAIN, ADDR) == 1


async def test_resync_never_goes_below_in_flight_nonces_and_adopts_external_sends() -> None:
    chain = FakeChain()
    manager = NonceManager(chain.fetch_pending_nonce)
    in_flight = [await manager.reserve(CHAIN, ADDR) for _ in range(3)]
    assert in_flight == [0, 1, 2]
    await manager.resync(CHAIN, ADDR)
    assert await manager.reserve(CHAIN, ADDR) == 3  # chain still says 0, but 0..2 are in flight
    # Another process used the account: the chain is ahead, the manager follows after a resync.
    chain.pending[ADDR.lower()] = 50
    await manager.resync(CHAIN, ADDR)
    assert await manager.reserve(CHAIN, ADDR) == 50


async def test_restart_reseeds_from_pending_nonce() -> None:
    chain = FakeChain(start=7)
    first = NonceManager(chain.fetch_pending_nonce)
    for _ in range(5):
        async with first.lease(CHAIN, ADDR) as nonce:
            await chain.send(ADDR, nonce)
    restarted = NonceManager(chain.fetch_pending_nonce)
    assert await restarted.reserve(CHAIN, ADDR.upper().replace("0X", "0x")) == 12
