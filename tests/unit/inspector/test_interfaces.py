"""Input shapes (fixture snake_case and JSON-RPC camelCase/hex), the RPC path and the CLI."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from typer.testing import CliRunner

from mevaas_inspector import inspect_block, inspect_rpc_block, parse_block
from mevaas_inspector.cli import app
from tests.unit.inspector.synth import MINER, Block, addr

SANDWICH_BLOCK = 12775690


def to_rpc_shape(raw: dict[str, Any]) -> dict[str, Any]:
    """What a node returns: camelCase trace keys and hex receipt quantities."""
    traces = []
    for original in raw["traces"]:
        t = dict(original)
        for snake, camel in (
            ("trace_address", "traceAddress"),
            ("transaction_hash", "transactionHash"),
            ("transaction_position", "transactionPosition"),
            ("block_number", "blockNumber"),
            ("block_hash", "blockHash"),
        ):
            t[camel] = t.pop(snake)
        traces.append(t)
    receipts = [
        {
            "transactionHash": r["transaction_hash"],
            "transactionIndex": hex(r["transaction_index"]),
            "gasUsed": hex(r["gas_used"]),
            "effectiveGasPrice": hex(r["effective_gas_price"]),
            "cumulativeGasUsed": hex(r["cumulative_gas_used"]),
            "to": r["to"],
            "status": "0x1",
        }
        for r in raw["receipts"]
    ]
    return {"traces": traces, "receipts": receipts}


@pytest.fixture(scope="module")
def sandwich_raw(mainnet_blocks_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((mainnet_blocks_dir / f"{SANDWICH_BLOCK}.json").read_bytes())
    return data


def test_camel_case_and_hex_input_gives_the_same_result(sandwich_raw: dict[str, Any]) -> None:
    rpc = to_rpc_shape(sandwich_raw)
    rpc.update(blockNumber=hex(SANDWICH_BLOCK), miner=sandwich_raw["miner"], baseFeePerGas="0x0")
    from_rpc = inspect_block(rpc)
    from_fixture = inspect_block(sandwich_raw)
    assert from_rpc.swaps == from_fixture.swaps
    assert from_rpc.sandwiches == from_fixture.sandwiches
    assert from_rpc.gas == from_fixture.gas
    assert from_rpc.block_number == SANDWICH_BLOCK


def test_children_of_a_failed_frame_are_reverted() -> None:
    block = Block()
    tx = block.tx(0).call([], addr(1), addr(2), "0x12345678")
    tx.call([0], addr(2), addr(3), "0x12345678", error="Reverted")
    tx.call([0, 0], addr(3), addr(4), "0x12345678")
    tx.call([1], addr(2), addr(5), "0x12345678")
    parsed = parse_block(block.raw())
    assert [t.reverted for t in parsed.traces] == [False, True, True, False]


def test_gas_and_miner_payment_after_london() -> None:
    block = Block(base_fee=30 * 10**9)
    tx = block.tx(0, gas_used=200_000, gas_price=32 * 10**9)
    tx.call([], addr(1), addr(2), "0x12345678")
    tx.call([0], addr(2), MINER, value=10**16)
    gas = inspect_block(block.raw()).gas[tx.hash]
    assert gas.gas_cost == 200_000 * 32 * 10**9
    assert gas.priority_fee == 200_000 * 2 * 10**9
    assert gas.coinbase_transfer == 10**16
    assert gas.miner_payment == 200_000 * 2 * 10**9 + 10**16


@pytest.fixture
async def fake_node(sandwich_raw: dict[str, Any]) -> AsyncIterator[str]:
    """A JSON-RPC endpoint answering the inspector's batch like an Erigon/anvil node."""
    rpc = to_rpc_shape(sandwich_raw)
    header = {"number": hex(SANDWICH_BLOCK), "miner": sandwich_raw["miner"], "timestamp": "0x60e4c6c4"}
    results = {
        "eth_getBlockByNumber": header,
        "trace_block": rpc["traces"],
        "eth_getBlockReceipts": rpc["receipts"],
    }

    async def handle(request: web.Request) -> web.Response:
        batch = await request.json()
        replies = []
        for call in batch:
            assert call["params"][0] == hex(SANDWICH_BLOCK)
            replies.append({"jsonrpc": "2.0", "id": call["id"], "result": results[call["method"]]})
        return web.Response(body=json.dumps(replies), content_type="application/json")

    server = web.Application()
    server.router.add_post("/", handle)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def test_rpc_path_finds_the_sandwich(fake_node: str) -> None:
    result = await inspect_rpc_block(fake_node, SANDWICH_BLOCK)
    [sandwich] = result.sandwiches
    assert sandwich.profit_amount == 49991481915322274
    assert len(result.swaps) == 21


def test_cli_json_output(mainnet_blocks_dir: Path) -> None:
    outcome = CliRunner().invoke(app, [str(mainnet_blocks_dir / "13244807.json"), "--json"])
    assert outcome.exit_code == 0, outcome.output
    report = json.loads(outcome.output)
    [li] = report["liquidations"]
    assert li["received_amount"] == 8182733924513576561
    assert li["trace_address"] == [1, 1, 6]


def test_cli_table_output(mainnet_blocks_dir: Path) -> None:
    outcome = CliRunner().invoke(app, [str(mainnet_blocks_dir / "12914944.json")])
    assert outcome.exit_code == 0, outcome.output
    assert "52 swaps, 2 arbitrages" in outcome.output


def test_cli_needs_a_source() -> None:
    outcome = CliRunner().invoke(app, [])
    assert outcome.exit_code != 0
