"""AnalyticsService.InspectBlock: fetch a block from the chain's RPC node (it must serve
`trace_block` and `eth_getBlockReceipts`), run the MEV inspector and map its findings to protos."""

from __future__ import annotations

import aiohttp

from mevaas.analytics.v1 import analytics_pb2
from mevaas_core.errors import FailedPrecondition, NotFound, Unavailable
from mevaas_inspector import (
    Arbitrage,
    BlockInspection,
    GasInfo,
    Liquidation,
    Sandwich,
    Swap,
    inspect_block,
    parse_block,
)
from mevaas_inspector.rpc import REQUEST_TIMEOUT_S, RpcError, fetch_block


async def inspect_chain_block(
    chain_id: int, rpc_url: str, block_number: int
) -> analytics_pb2.InspectBlockResponse:
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            raw = await fetch_block(rpc_url, block_number, session=session)
            block_hash = await _block_hash(session, rpc_url, block_number)
    except RpcError as exc:
        if "not found" in str(exc):
            raise NotFound("block", str(block_number)) from exc
        raise FailedPrecondition(f"chain {chain_id} node cannot serve block traces: {exc}") from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unavailable(f"chain {chain_id} node unreachable") from exc
    return inspection_response(
        chain_id, block_hash, inspect_block(parse_block(raw, state_changing_only=True))
    )


async def _block_hash(session: aiohttp.ClientSession, rpc_url: str, block_number: int) -> str:
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "eth_getBlockByNumber",
        "params": [hex(block_number), False],
    }
    async with session.post(rpc_url, json=request) as response:
        response.raise_for_status()
        reply = await response.json(content_type=None)
    header = reply.get("result") or {}
    return str(header.get("hash") or "")


def inspection_response(
    chain_id: int, block_hash: str, found: BlockInspection
) -> analytics_pb2.InspectBlockResponse:
    return analytics_pb2.InspectBlockResponse(
        chain_id=chain_id,
        block_number=found.block_number,
        block_hash=block_hash,
        miner=found.miner,
        base_fee_per_gas=str(found.base_fee_per_gas),
        arbitrages=[_arbitrage(a) for a in found.arbitrages],
        sandwiches=[_sandwich(s) for s in found.sandwiches],
        liquidations=[_liquidation(li) for li in found.liquidations],
        swap_count=len(found.swaps),
        transfer_count=len(found.transfers),
    )


def _swap(swap: Swap) -> analytics_pb2.InspectedSwap:
    return analytics_pb2.InspectedSwap(
        tx_hash=swap.transaction_hash,
        transaction_position=swap.transaction_position,
        trace_address=list(swap.trace_address),
        protocol=swap.protocol,
        pool=swap.contract_address,
        sender=swap.from_address,
        recipient=swap.to_address,
        token_in=swap.token_in_address,
        amount_in=str(swap.token_in_amount),
        token_out=swap.token_out_address,
        amount_out=str(swap.token_out_amount),
    )


def _gas(gas: GasInfo | None) -> analytics_pb2.InspectedGas | None:
    if gas is None:
        return None
    return analytics_pb2.InspectedGas(
        gas_used=gas.gas_used,
        gas_price=str(gas.gas_price),
        gas_cost=str(gas.gas_cost),
        miner_payment=str(gas.miner_payment),
    )


def _arbitrage(a: Arbitrage) -> analytics_pb2.InspectedArbitrage:
    return analytics_pb2.InspectedArbitrage(
        tx_hash=a.transaction_hash,
        transaction_position=a.transaction_position,
        account=a.account_address,
        profit_token=a.profit_token_address,
        start_amount=str(a.start_amount),
        end_amount=str(a.end_amount),
        profit=str(a.gross_profit_amount),
        net_profit=str(a.profit_amount),
        swaps=[_swap(s) for s in a.swaps],
        gas=_gas(a.gas),
        error=a.error or "",
    )


def _sandwich(s: Sandwich) -> analytics_pb2.InspectedSandwich:
    return analytics_pb2.InspectedSandwich(
        sandwicher=s.sandwicher_address,
        frontrun=_swap(s.frontrun_swap),
        backrun=_swap(s.backrun_swap),
        victims=[_swap(v) for v in s.sandwiched_swaps],
        profit_token=s.profit_token_address,
        profit=str(s.profit_amount),
        frontrun_gas=_gas(s.frontrun_gas),
        backrun_gas=_gas(s.backrun_gas),
    )


def _liquidation(li: Liquidation) -> analytics_pb2.InspectedLiquidation:
    return analytics_pb2.InspectedLiquidation(
        tx_hash=li.transaction_hash,
        transaction_position=li.transaction_position,
        protocol=li.protocol,
        liquidator=li.liquidator_user,
        liquidated_user=li.liquidated_user,
        debt_token=li.debt_token_address,
        debt_purchase_amount=str(li.debt_purchase_amount),
        received_token=li.received_token_address,
        received_amount=str(li.received_amount),
        gas=_gas(li.gas),
    )
