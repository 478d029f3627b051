"""Fetch a block's traces, receipts and header over JSON-RPC and inspect it.

Works against any node serving `trace_block` and `eth_getBlockReceipts` (Erigon, Reth, Nethermind,
anvil). The three calls go out as one JSON-RPC batch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
import orjson

from mevaas_inspector.inspector import inspect_block
from mevaas_inspector.models import BlockInspection
from mevaas_inspector.parse import parse_block

REQUEST_TIMEOUT_S = 30.0


class RpcError(RuntimeError):
    pass


async def fetch_block(
    rpc_url: str, block_number: int, session: aiohttp.ClientSession | None = None
) -> dict[str, Any]:
    """Return the block in the fixture shape (header fields plus raw `traces` and `receipts`)."""
    tag = hex(block_number)
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber", "params": [tag, False]},
        {"jsonrpc": "2.0", "id": 2, "method": "trace_block", "params": [tag]},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_getBlockReceipts", "params": [tag]},
    ]
    own = session is None
    client = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))
    try:
        async with client.post(
            rpc_url, data=orjson.dumps(batch), headers={"Content-Type": "application/json"}
        ) as response:
            response.raise_for_status()
            replies = orjson.loads(await response.read())
    finally:
        if own:
            await client.close()
    if not isinstance(replies, list):
        raise RpcError(f"node did not answer the batch: {replies!r}")
    by_id: dict[int, Any] = {}
    for reply in replies:
        if reply.get("error"):
            raise RpcError(f"{reply['error'].get('message', reply['error'])} (request {reply.get('id')})")
        by_id[int(reply["id"])] = reply.get("result")
    header = by_id.get(1)
    if header is None:
        raise RpcError(f"block {block_number} not found")
    return {
        "block_number": block_number,
        "miner": header.get("miner", ""),
        "base_fee_per_gas": header.get("baseFeePerGas") or 0,
        "block_timestamp": header.get("timestamp"),
        "traces": by_id.get(2) or [],
        "receipts": by_id.get(3) or [],
    }


async def inspect_rpc_block(
    rpc_url: str,
    block_number: int,
    compound_markets: Mapping[str, str] | None = None,
    session: aiohttp.ClientSession | None = None,
    aave_pools: Iterable[str] = (),
) -> BlockInspection:
    raw = await fetch_block(rpc_url, block_number, session=session)
    return inspect_block(parse_block(raw), compound_markets=compound_markets, aave_pools=aave_pools)
