"""inspect_block: one pass over a block's traces, grouped by transaction, then classification."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from mevaas_inspector.classify import arbitrages_in_tx, find_sandwiches
from mevaas_inspector.decode import TxIndex, decode_swaps, is_plain_call
from mevaas_inspector.liquidations import AAVE_POOLS, decode_liquidations
from mevaas_inspector.markets import COMPOUND_MARKETS
from mevaas_inspector.models import (
    Arbitrage,
    BlockData,
    BlockInspection,
    FlashLoan,
    GasInfo,
    Liquidation,
    Swap,
    Trace,
    Transfer,
)
from mevaas_inspector.parse import parse_block


def group_by_transaction(traces: tuple[Trace, ...]) -> list[list[Trace]]:
    """Traces of one transaction are contiguous in `trace_block` output; group without sorting."""
    groups: list[list[Trace]] = []
    current: list[Trace] = []
    current_hash: str | None = None
    for trace in traces:
        if trace.transaction_hash is None:
            continue
        if trace.transaction_hash != current_hash:
            current = []
            groups.append(current)
            current_hash = trace.transaction_hash
        current.append(trace)
    merged: dict[str, list[Trace]] = {}
    for group in groups:
        key = group[0].transaction_hash or ""
        if key in merged:
            merged[key].extend(group)
        else:
            merged[key] = group
    return list(merged.values())


def inspect_block(
    block: dict[str, Any] | BlockData,
    compound_markets: Mapping[str, str] | None = None,
    aave_pools: Iterable[str] = (),
) -> BlockInspection:
    """Find transfers, swaps, flash loans, arbitrages, sandwiches and liquidations in a block.

    `block` is either parsed BlockData or a raw dict in the fixture / JSON-RPC shape.
    `compound_markets` maps Compound cToken -> underlying (defaults to the mainnet list);
    `aave_pools` adds Aave pools to the mainnet ones (a devnet's or another network's)."""
    data = block if isinstance(block, BlockData) else parse_block(block, state_changing_only=True)
    markets = {k.lower(): v.lower() for k, v in (compound_markets or COMPOUND_MARKETS).items()}
    receipts = {r.transaction_hash: r for r in data.receipts}
    pools = AAVE_POOLS | {p.lower() for p in aave_pools}
    transfers: list[Transfer] = []
    swaps: list[Swap] = []
    flash_loans: list[FlashLoan] = []
    arbitrages: list[Arbitrage] = []
    liquidations: list[Liquidation] = []
    gas_by_tx: dict[str, GasInfo] = {}
    for group in group_by_transaction(data.traces):
        tx = TxIndex.build(group)
        gas = _tx_gas(data, tx, receipts)
        if gas is not None:
            gas_by_tx[tx.transaction_hash] = gas
        transfers.extend(tx.transfers)
        liquidations.extend(replace(li, gas=gas) for li in decode_liquidations(tx, markets, pools))
        if not tx.transfers:
            continue
        decoded = decode_swaps(tx)
        swaps.extend(decoded.swaps)
        flash_loans.extend(decoded.flash_loans)
        if len(decoded.swaps) > 1:
            arbitrages.extend(arbitrages_in_tx(decoded.swaps, decoded.flash_loans, gas))
    return BlockInspection(
        block_number=data.block_number,
        miner=data.miner,
        base_fee_per_gas=data.base_fee_per_gas,
        transfers=tuple(transfers),
        swaps=tuple(swaps),
        flash_loans=tuple(flash_loans),
        arbitrages=tuple(arbitrages),
        sandwiches=tuple(find_sandwiches(swaps, gas_by_tx)),
        liquidations=tuple(liquidations),
        gas=gas_by_tx,
    )


def _tx_gas(block: BlockData, tx: TxIndex, receipts: Mapping[str, Any]) -> GasInfo | None:
    receipt = receipts.get(tx.transaction_hash)
    if receipt is None:
        return None
    coinbase = sum(
        t.value
        for t in tx.traces
        if t.value > 0 and not t.reverted and t.to_address == block.miner and is_plain_call(t)
    )
    tip_per_gas = max(receipt.effective_gas_price - block.base_fee_per_gas, 0)
    return GasInfo(
        gas_used=receipt.gas_used,
        gas_price=receipt.effective_gas_price,
        gas_cost=receipt.gas_used * receipt.effective_gas_price,
        priority_fee=receipt.gas_used * tip_per_gas,
        coinbase_transfer=coinbase,
    )
