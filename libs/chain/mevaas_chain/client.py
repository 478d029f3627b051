"""JSON-RPC access to one chain: an ``AsyncWeb3`` for general use plus a lean client for raw and
batched calls (the pool index issues thousands of ``eth_call`` per snapshot as JSON-RPC batches).

Transient failures (connection errors, timeouts, HTTP 429/5xx) are retried with exponential
backoff; JSON-RPC errors are deterministic answers and are raised as ``RpcError`` at once.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.providers.rpc.utils import ExceptionRetryConfiguration

from mevaas_chain.registry import ChainConfig

BlockId = int | str


class RpcError(Exception):
    """An error object returned by the node."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data


class TransientRpcError(Exception):
    """The node could not be reached or answered with a retryable HTTP status, after all retries."""


@dataclass(frozen=True)
class Call:
    """One ``eth_call``: target contract and calldata."""

    to: str
    data: bytes


def to_block_param(block: BlockId) -> str:
    return hex(block) if isinstance(block, int) else block


class ChainClient:
    def __init__(
        self,
        rpc_url: str,
        *,
        chain: ChainConfig | None = None,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.1,
        max_batch: int = 500,
    ) -> None:
        self.rpc_url = rpc_url
        self.chain = chain
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_batch = max_batch
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self.w3 = AsyncWeb3(
            AsyncHTTPProvider(
                rpc_url,
                request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout_s)},
                exception_retry_configuration=ExceptionRetryConfiguration(
                    errors=(aiohttp.ClientError, TimeoutError),
                    retries=retries,
                    backoff_factor=backoff_s,
                ),
            )
        )

    @classmethod
    def for_chain(cls, chain: ChainConfig, **kwargs: Any) -> ChainClient:
        return cls(chain.rpc_url, chain=chain, **kwargs)

    async def __aenter__(self) -> ChainClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        provider = self.w3.provider
        if isinstance(provider, AsyncHTTPProvider):
            await provider.disconnect()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    async def _post(self, payload: Any) -> Any:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                async with self._get_session().post(self.rpc_url, json=payload) as resp:
                    if resp.status == 429 or resp.status >= 500:
                        raise TransientRpcError(f"HTTP {resp.status} from {self.rpc_url}")
                    return await resp.json(content_type=None)
            except (aiohttp.ClientConnectionError, TimeoutError, TransientRpcError) as exc:
                if attempt == self.retries:
                    raise TransientRpcError(f"{self.rpc_url}: {exc!r}") from exc
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        """One JSON-RPC call; returns ``result`` or raises ``RpcError``."""
        reply = await self._post(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        )
        return _unwrap(reply)

    async def batch(self, requests: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """JSON-RPC batch; each entry is a result or an ``RpcError`` instance (not raised), in order."""
        results: list[Any] = []
        for start in range(0, len(requests), self.max_batch):
            chunk = requests[start : start + self.max_batch]
            ids = [next(self._ids) for _ in chunk]
            payload = [
                {"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)}
                for i, (m, p) in zip(ids, chunk, strict=True)
            ]
            replies = await self._post(payload)
            if not isinstance(replies, list):
                # A node that rejects the whole batch answers with a single error object.
                error = _as_error(replies)
                results.extend(error for _ in chunk)
                continue
            by_id = {r.get("id"): r for r in replies}
            for i in ids:
                reply = by_id.get(i)
                if reply is None:
                    results.append(RpcError(-32603, "missing reply in batch"))
                elif "error" in reply:
                    results.append(_as_error(reply))
                else:
                    results.append(reply.get("result"))
        return results

    async def batch_call(self, calls: Sequence[Call], block: BlockId = "latest") -> list[bytes | None]:
        """Batched ``eth_call``; ``None`` where a call reverted."""
        tag = to_block_param(block)
        replies = await self.batch(
            [("eth_call", [{"to": c.to, "data": "0x" + c.data.hex()}, tag]) for c in calls]
        )
        return [None if isinstance(r, RpcError) else bytes.fromhex(r.removeprefix("0x")) for r in replies]

    async def call(self, to: str, data: bytes, block: BlockId = "latest") -> bytes:
        result = await self.request(
            "eth_call", [{"to": to, "data": "0x" + data.hex()}, to_block_param(block)]
        )
        return bytes.fromhex(str(result).removeprefix("0x"))

    async def call_from(self, sender: str, to: str, data: bytes, block: BlockId = "latest") -> bytes:
        """``eth_call`` as ``sender`` (for owner-only functions)."""
        tx = {"from": sender, "to": to, "data": "0x" + data.hex()}
        result = await self.request("eth_call", [tx, to_block_param(block)])
        return bytes.fromhex(str(result).removeprefix("0x"))

    async def block_number(self) -> int:
        return int(await self.request("eth_blockNumber"), 16)

    async def chain_id(self) -> int:
        return int(await self.request("eth_chainId"), 16)

    async def get_block(self, block: BlockId, full: bool = False) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.request(
            "eth_getBlockByNumber", [to_block_param(block), full]
        )
        return result

    async def get_receipt(self, tx_hash: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.request("eth_getTransactionReceipt", [tx_hash])
        return result


def _as_error(reply: Any) -> RpcError:
    err = reply.get("error") if isinstance(reply, dict) else None
    if not isinstance(err, dict):
        return RpcError(-32603, f"malformed reply: {reply!r}")
    return RpcError(int(err.get("code", -32603)), str(err.get("message", "")), err.get("data"))


def _unwrap(reply: Any) -> Any:
    if isinstance(reply, dict) and "error" in reply:
        raise _as_error(reply)
    if not isinstance(reply, dict) or "result" not in reply:
        raise RpcError(-32603, f"malformed reply: {reply!r}")
    return reply["result"]
