"""A chain's pending transactions, as batches of transactions not seen before.

Two sources, one interface (`PendingSource.batches`):

* `TxpoolPoller` polls the node's pool (`txpool_content`, geth's and anvil's; the devnet relay
  answers it for the public transactions it holds), falling back to `eth_pendingTransactions`
  on nodes without the txpool namespace;
* `PendingSubscription` keeps an `eth_subscribe newPendingTransactions` open over WebSocket and
  fetches the announced hashes in one batch per frame burst (a node announcing full
  transactions is taken as is).

Each yields a transaction once (a bounded memory of hashes), with its swap decoded when it calls a
Uniswap V2 router (`swaps.decode_router_swap`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from mevaas_chain.client import ChainClient, RpcError
from mevaas_chain.swaps import RouterSwap, decode_router_swap

log = logging.getLogger(__name__)

_METHOD_NOT_FOUND = -32601
_REMEMBERED = 50_000


@dataclass(frozen=True, slots=True)
class PendingTx:
    chain_id: int
    tx_hash: str
    sender: str
    to: str
    value: int
    data: bytes
    gas: int
    # gasPrice (legacy) or maxFeePerGas.
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    nonce: int
    swap: RouterSwap | None


def _int(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    return int(str(value), 16) if str(value).startswith("0x") else int(str(value))


def parse_rpc_transaction(chain_id: int, tx: dict[str, Any]) -> PendingTx:
    """A node's JSON transaction object (eth_getTransactionByHash, txpool_content entries)."""
    data = bytes.fromhex(str(tx.get("input") or tx.get("data") or "0x")[2:])
    to = str(tx.get("to") or "")
    value = _int(tx.get("value"))
    fee = tx.get("maxFeePerGas") if tx.get("maxFeePerGas") is not None else tx.get("gasPrice")
    return PendingTx(
        chain_id=chain_id,
        tx_hash=str(tx["hash"]).lower(),
        sender=str(tx["from"]),
        to=to,
        value=value,
        data=data,
        gas=_int(tx.get("gas")),
        max_fee_per_gas=_int(fee),
        max_priority_fee_per_gas=_int(tx.get("maxPriorityFeePerGas")),
        nonce=_int(tx.get("nonce")),
        swap=decode_router_swap(to, value, data),
    )


class PendingSource(Protocol):
    chain_id: int

    def batches(self) -> AsyncIterator[list[PendingTx]]:
        """New pending transactions, a batch at a time, until cancelled."""
        ...


class _Seen:
    def __init__(self) -> None:
        self._hashes: OrderedDict[str, None] = OrderedDict()

    def fresh(self, txs: Iterable[PendingTx]) -> list[PendingTx]:
        out = []
        for tx in txs:
            if tx.tx_hash in self._hashes:
                continue
            self._hashes[tx.tx_hash] = None
            out.append(tx)
        while len(self._hashes) > _REMEMBERED:
            self._hashes.popitem(last=False)
        return out


def txpool_transactions(content: dict[str, Any]) -> list[dict[str, Any]]:
    """The transactions of a `txpool_content` answer (pending, then queued), by sender and nonce."""
    out: list[dict[str, Any]] = []
    for section in ("pending", "queued"):
        for by_nonce in (content.get(section) or {}).values():
            out.extend(by_nonce[n] for n in sorted(by_nonce, key=int))
    return out


class TxpoolPoller:
    def __init__(self, client: ChainClient, chain_id: int, *, interval_s: float = 0.2) -> None:
        self.client = client
        self.chain_id = chain_id
        self.interval_s = interval_s
        self._seen = _Seen()
        self._txpool = True

    async def poll(self) -> list[PendingTx]:
        """One look at the pool: the transactions not returned before."""
        if self._txpool:
            try:
                raw = txpool_transactions(await self.client.request("txpool_content"))
            except RpcError as exc:
                if exc.code != _METHOD_NOT_FOUND:
                    raise
                self._txpool = False
        if not self._txpool:
            raw = list(await self.client.request("eth_pendingTransactions") or [])
        return self._seen.fresh(parse_rpc_transaction(self.chain_id, tx) for tx in raw)

    async def batches(self) -> AsyncIterator[list[PendingTx]]:
        while True:
            try:
                fresh = await self.poll()
            except (RpcError, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("chain %s: pending pool poll failed: %r", self.chain_id, exc)
                fresh = []
            if fresh:
                yield fresh
            await asyncio.sleep(self.interval_s)


class PendingSubscription:
    def __init__(self, client: ChainClient, chain_id: int, ws_url: str) -> None:
        self.client = client
        self.chain_id = chain_id
        self.ws_url = ws_url
        self._seen = _Seen()

    async def _fetch(self, items: list[Any]) -> list[PendingTx]:
        hashes = [i for i in items if isinstance(i, str)]
        full = [i for i in items if isinstance(i, dict)]
        if hashes:
            replies = await self.client.batch([("eth_getTransactionByHash", [h]) for h in hashes])
            # A hash already mined or dropped answers null: nothing to watch.
            full.extend(r for r in replies if isinstance(r, dict))
        return self._seen.fresh(parse_rpc_transaction(self.chain_id, tx) for tx in full)

    async def batches(self) -> AsyncIterator[list[PendingTx]]:
        retry_s = 1.0
        while True:
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.ws_connect(self.ws_url, heartbeat=10.0) as ws,
                ):
                    request = {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe"}
                    await ws.send_str(json.dumps(request | {"params": ["newPendingTransactions"]}))
                    async for frame in ws:
                        if frame.type != aiohttp.WSMsgType.TEXT:
                            break
                        message = json.loads(frame.data)
                        if message.get("id") == 1 and "error" in message:
                            raise ConnectionError(f"eth_subscribe refused: {message['error']}")
                        item = (message.get("params") or {}).get("result")
                        if message.get("method") != "eth_subscription" or item is None:
                            continue
                        fresh = await self._fetch([item])
                        if fresh:
                            yield fresh
                        retry_s = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("chain %s: pending subscription failed (%r); retrying", self.chain_id, exc)
            await asyncio.sleep(retry_s)
            retry_s = min(30.0, retry_s * 2)
