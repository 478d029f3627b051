"""Nonce manager per (chain id, address) for concurrent senders.

Reservations are atomic (one asyncio lock per account), so concurrent sends never share a nonce.
The first reservation, and the first after `resync`, seeds from the chain's pending nonce through the
injected `fetch_pending_nonce(chain_id, address)`; a restarted process therefore picks up where the
chain (including its mempool) is, with no state of its own to persist.

Gaps. A nonce that was reserved but never reached the chain leaves a gap: every later transaction
of the account waits in the mempool behind it. So:

- `release(nonce)` (the send certainly failed, e.g. rejected by the node or by our own simulation)
  makes the nonce free again. If it was the highest one handed out the counter simply steps back;
  otherwise it goes to a free list and the next reservation takes the lowest free nonce first, so
  the gap is filled by the very next send.
- `release(nonce, maybe_sent=True)` (the outcome is unknown, e.g. a timeout after the request went
  out) and `resync()` (e.g. after "nonce too low") do not guess: the next reservation re-seeds from
  the chain's pending nonce, never below a nonce still in flight, and forgets free nonces the chain
  has already used. A transaction that was dropped from the mempool is detected the same way: the
  pending nonce falls below our counter and the counter follows it down.

`lease()` wraps reserve/confirm/release around a send.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

FetchPendingNonce = Callable[[int, str], Awaitable[int]]


class SendOutcomeUnknown(Exception):
    """Raise inside `lease()` when a transaction may or may not have reached the network."""


@dataclass
class _Account:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_nonce: int | None = None
    stale: bool = True
    in_flight: set[int] = field(default_factory=set)
    free: set[int] = field(default_factory=set)


class NonceManager:
    def __init__(self, fetch_pending_nonce: FetchPendingNonce) -> None:
        self._fetch = fetch_pending_nonce
        self._accounts: dict[tuple[int, str], _Account] = {}

    def _account(self, chain_id: int, address: str) -> _Account:
        key = (chain_id, address.lower())
        account = self._accounts.get(key)
        if account is None:
            account = self._accounts[key] = _Account()
        return account

    async def reserve(self, chain_id: int, address: str) -> int:
        """The next nonce to use; unique among all reservations not yet released."""
        account = self._account(chain_id, address)
        async with account.lock:
            if account.stale or account.next_nonce is None:
                pending = await self._fetch(chain_id, address)
                floor = max(account.in_flight, default=pending - 1) + 1
                account.next_nonce = max(pending, floor)
                account.free = {n for n in account.free if pending <= n < account.next_nonce}
                account.stale = False
            if account.free:
                nonce = min(account.free)
                account.free.remove(nonce)
            else:
                nonce = account.next_nonce
                account.next_nonce += 1
            account.in_flight.add(nonce)
            return nonce

    async def confirm(self, chain_id: int, address: str, nonce: int) -> None:
        """The transaction with `nonce` was accepted by the node."""
        account = self._account(chain_id, address)
        async with account.lock:
            account.in_flight.discard(nonce)

    async def release(self, chain_id: int, address: str, nonce: int, *, maybe_sent: bool = False) -> None:
        """The send with `nonce` failed; with `maybe_sent` the chain decides on the next reservation."""
        account = self._account(chain_id, address)
        async with account.lock:
            account.in_flight.discard(nonce)
            if maybe_sent:
                account.stale = True
                return
            if account.next_nonce is not None and nonce == account.next_nonce - 1:
                account.next_nonce -= 1
                while account.next_nonce - 1 in account.free:
                    account.free.remove(account.next_nonce - 1)
                    account.next_nonce -= 1
            elif account.next_nonce is not None and nonce < account.next_nonce:
                account.free.add(nonce)

    async def resync(self, chain_id: int, address: str) -> None:
        """Re-seed from the chain's pending nonce on the next reservation."""
        account = self._account(chain_id, address)
        async with account.lock:
            account.stale = True

    @asynccontextmanager
    async def lease(self, chain_id: int, address: str) -> AsyncIterator[int]:
        """Reserve a nonce for one send: confirmed if the block exits normally, released if it
        raises (as possibly sent on `SendOutcomeUnknown` or cancellation)."""
        nonce = await self.reserve(chain_id, address)
        try:
            yield nonce
        except (SendOutcomeUnknown, asyncio.CancelledError):
            # A cancelled send may already be on the wire: let the chain decide.
            await self.release(chain_id, address, nonce, maybe_sent=True)
            raise
        except BaseException:
            await self.release(chain_id, address, nonce)
            raise
        await self.confirm(chain_id, address, nonce)
