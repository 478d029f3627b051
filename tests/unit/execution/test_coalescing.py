"""Concurrent pipeline reads and bundles go out as one JSON-RPC batch, each caller getting its own
replies (a real HTTP JSON-RPC server on 127.0.0.1 counts the requests)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from mevaas_chain.client import ChainClient, RpcError
from mevaas_execution.coalescing import CoalescingRpc


class EchoNode:
    """Answers every call with [method, params]; ``fail`` errors a method."""

    def __init__(self) -> None:
        self.requests: list[list[dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        calls = body if isinstance(body, list) else [body]
        self.requests.append(calls)
        replies = [
            {"jsonrpc": "2.0", "id": c["id"], "error": {"code": -32000, "message": "refused"}}
            if c["method"] == "fail"
            else {"jsonrpc": "2.0", "id": c["id"], "result": [c["method"], c["params"]]}
            for c in calls
        ]
        return web.json_response(replies if isinstance(body, list) else replies[0])


@pytest.fixture
async def node() -> AsyncIterator[tuple[EchoNode, ChainClient]]:
    echo = EchoNode()
    app = web.Application()
    app.router.add_post("/", echo.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    client = ChainClient(f"http://127.0.0.1:{port}", retries=0)
    try:
        yield echo, client
    finally:
        await client.close()
        await runner.cleanup()


async def test_concurrent_batches_share_one_request_and_a_repeated_read_is_sent_once(
    node: tuple[EchoNode, ChainClient],
) -> None:
    echo, client = node
    rpc = CoalescingRpc(client, dedupe=True)
    head = ("eth_getBlockByNumber", ["latest", False])
    first, second, third = await asyncio.gather(
        rpc.batch([head, ("eth_call", [{"data": "0x01"}, "latest"])]),
        rpc.batch([head, ("fail", [])]),
        rpc.batch([("eth_call", [{"data": "0x03"}, "latest"])]),
    )
    assert len(echo.requests) == 1
    assert [c["method"] for c in echo.requests[0]] == ["eth_getBlockByNumber", "eth_call", "fail", "eth_call"]
    assert first == [["eth_getBlockByNumber", ["latest", False]], ["eth_call", [{"data": "0x01"}, "latest"]]]
    assert second[0] == ["eth_getBlockByNumber", ["latest", False]]
    assert isinstance(second[1], RpcError) and second[1].message == "refused"
    assert third == [["eth_call", [{"data": "0x03"}, "latest"]]]
    # Later calls make a request of their own.
    assert await rpc.batch([head]) == [["eth_getBlockByNumber", ["latest", False]]]
    assert len(echo.requests) == 2


async def test_writes_are_never_merged_and_a_refusal_is_raised_to_its_sender(
    node: tuple[EchoNode, ChainClient],
) -> None:
    echo, client = node
    rpc = CoalescingRpc(client, dedupe=False)
    bundle = ("eth_sendBundle", [{"txs": ["0xaa"], "blockNumber": "0x2"}])
    results = await asyncio.gather(
        rpc.request(*bundle), rpc.request(*bundle), rpc.request("fail", []), return_exceptions=True
    )
    assert len(echo.requests) == 1 and len(echo.requests[0]) == 3
    assert results[0] == results[1] == ["eth_sendBundle", [{"txs": ["0xaa"], "blockNumber": "0x2"}]]
    assert isinstance(results[2], RpcError)


async def test_a_failed_request_fails_every_caller_in_it(node: tuple[EchoNode, ChainClient]) -> None:
    _, client = node
    await client.close()
    unreachable = ChainClient("http://127.0.0.1:9", retries=0)
    rpc = CoalescingRpc(unreachable, dedupe=True)
    results = await asyncio.gather(
        rpc.batch([("eth_blockNumber", [])]), rpc.batch([("eth_chainId", [])]), return_exceptions=True
    )
    assert all(isinstance(r, Exception) for r in results)
    await unreachable.close()
