"""MEV inspector: decode transfers and swaps from a block's traces and receipts, then classify
arbitrages, sandwiches and liquidations with exact integer profits."""

from mevaas_inspector.inspector import inspect_block
from mevaas_inspector.models import (
    ETH_TOKEN,
    WETH_TOKEN,
    Arbitrage,
    BlockData,
    BlockInspection,
    FlashLoan,
    GasInfo,
    Liquidation,
    Receipt,
    Sandwich,
    Swap,
    Trace,
    Transfer,
)
from mevaas_inspector.parse import load_block_file, parse_block
from mevaas_inspector.rpc import inspect_rpc_block

__all__ = [
    "ETH_TOKEN",
    "WETH_TOKEN",
    "Arbitrage",
    "BlockData",
    "BlockInspection",
    "FlashLoan",
    "GasInfo",
    "Liquidation",
    "Receipt",
    "Sandwich",
    "Swap",
    "Trace",
    "Transfer",
    "inspect_block",
    "inspect_rpc_block",
    "load_block_file",
    "parse_block",
]
