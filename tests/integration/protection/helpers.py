"""Helpers for the Protect RPC tests: an execution runtime serving it, a tenant's key, a funded
user account that signs its own transactions, and raw JSON-RPC calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from eth_abi.abi import encode
from eth_account import Account
from eth_utils.crypto import keccak

from mevaas_execution.protection.access import ApiKeyAccess
from mevaas_execution.protection.rpc import ProtectRpc
from mevaas_local.devnet import DevnetChain

GWEI = 10**9


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


async def call(
    url: str, method: str, params: list[Any], *, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, headers=headers or {}
        ) as resp,
    ):
        body: dict[str, Any] = await resp.json()
        body["http_status"] = resp.status
        return body


async def signed(
    chain: DevnetChain,
    account: Any,
    *,
    nonce: int,
    to: str,
    data: bytes = b"",
    value: int = 0,
    gas: int = 60_000,
    chain_id: int | None = None,
) -> str:
    block = await chain.client.get_block("latest")
    assert block is not None
    base_fee = int(block.get("baseFeePerGas", "0x0"), 16)
    tx = {
        "chainId": chain_id if chain_id is not None else chain.spec.chain_id,
        "nonce": nonce,
        "to": to,
        "value": value,
        "data": data,
        "gas": gas,
        "maxFeePerGas": 2 * base_fee + 2 * GWEI,
        "maxPriorityFeePerGas": GWEI,
        "type": 2,
    }
    raw: bytes = Account.sign_transaction(tx, account.key).raw_transaction
    return "0x" + raw.hex()


def expired_swap(router: str, sender: str) -> bytes:
    """Router02.swapExactTokensForTokens with a deadline in the past: reverts with
    "UniswapV2Router: EXPIRED" before touching anything."""
    return selector("swapExactTokensForTokens(uint256,uint256,address[],address,uint256)") + encode(
        ["uint256", "uint256", "address[]", "address", "uint256"], [1, 0, [sender, router], sender, 1]
    )


@asynccontextmanager
async def protect_rpc(
    execution: Any, tenancy_address: str, gateway: Any = None, **access: Any
) -> AsyncIterator[str]:
    """A Protect RPC of the running execution service checking keys at ``tenancy_address`` (with
    ApiKeyAccess's ``access`` options, and reaching the chain through ``gateway``, else the
    service's); yields the chain's endpoint URL."""
    gateway = gateway or execution.gateway
    rpc = ProtectRpc(
        execution.core.protected,
        gateway,
        ApiKeyAccess(tenancy_address, execution.verifier(), execution.revocations, **access),
    )
    port = await rpc.start("127.0.0.1", 0)
    chain_id = gateway.chain_ids[0]
    try:
        yield f"http://127.0.0.1:{port}/rpc/{chain_id}"
    finally:
        await rpc.stop()
