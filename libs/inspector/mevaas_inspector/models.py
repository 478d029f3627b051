"""Typed, immutable records of what the inspector reads and finds. Amounts are exact ints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ETH_TOKEN = "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
WETH_TOKEN = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

TraceAddress = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Trace:
    """One Parity/Erigon trace. `reverted` is true when this call or any ancestor failed, because
    the node reports an error only on the frame that raised it while its children were undone too."""

    block_number: int
    transaction_hash: str | None
    transaction_position: int | None
    trace_address: TraceAddress
    type: str
    call_type: str | None
    from_address: str
    to_address: str
    value: int
    input: str
    output: str
    gas_used: int
    subtraces: int
    error: str | None
    reverted: bool


@dataclass(frozen=True, slots=True)
class Receipt:
    transaction_hash: str
    transaction_index: int
    gas_used: int
    effective_gas_price: int
    cumulative_gas_used: int
    to_address: str | None
    status: int | None = None


@dataclass(frozen=True, slots=True)
class BlockData:
    block_number: int
    miner: str
    base_fee_per_gas: int
    block_timestamp: int | None
    traces: tuple[Trace, ...]
    receipts: tuple[Receipt, ...]


@dataclass(frozen=True, slots=True)
class Transfer:
    """A movement of a token (ETH_TOKEN for native ether). `kind` is erc20, eth, weth_deposit or
    weth_withdraw; deposits mint from ZERO_ADDRESS, withdrawals burn to it."""

    transaction_hash: str
    transaction_position: int
    trace_address: TraceAddress
    token_address: str
    from_address: str
    to_address: str
    amount: int
    kind: str
    reverted: bool


@dataclass(frozen=True, slots=True)
class Swap:
    transaction_hash: str
    transaction_position: int
    trace_address: TraceAddress
    protocol: str
    abi_name: str
    contract_address: str
    from_address: str
    to_address: str
    token_in_address: str
    token_in_amount: int
    token_out_address: str
    token_out_amount: int
    error: str | None


@dataclass(frozen=True, slots=True)
class GasInfo:
    """What a transaction paid: gas, its cost, and what of it (plus direct transfers) reached the
    miner. `priority_fee` is the part of the gas price above the base fee (all of it pre-London)."""

    gas_used: int
    gas_price: int
    gas_cost: int
    priority_fee: int
    coinbase_transfer: int

    @property
    def miner_payment(self) -> int:
        return self.priority_fee + self.coinbase_transfer


@dataclass(frozen=True, slots=True)
class FlashLoan:
    transaction_hash: str
    trace_address: TraceAddress
    protocol: str
    lender: str
    borrower: str
    token_address: str
    amount: int
    fee: int


@dataclass(frozen=True, slots=True)
class Arbitrage:
    """`gross_profit_amount` is the reference's figure (end - start); `profit_amount` also
    subtracts fees paid on flash loans taken in the profit token, which the reference ignores."""

    transaction_hash: str
    transaction_position: int
    account_address: str
    profit_token_address: str
    start_amount: int
    end_amount: int
    gross_profit_amount: int
    flash_loan_fee: int
    profit_amount: int
    swaps: tuple[Swap, ...]
    error: str | None
    gas: GasInfo | None


@dataclass(frozen=True, slots=True)
class Sandwich:
    """`profit_amount` is pro-rated: when the backrun sells a different amount than the frontrun
    bought, only the matched fraction of the frontrun's cost is charged against the backrun."""

    sandwicher_address: str
    frontrun_swap: Swap
    backrun_swap: Swap
    sandwiched_swaps: tuple[Swap, ...]
    profit_token_address: str
    profit_amount: int
    unprorated_profit_amount: int
    frontrun_gas: GasInfo | None
    backrun_gas: GasInfo | None


@dataclass(frozen=True, slots=True)
class Liquidation:
    transaction_hash: str
    transaction_position: int
    trace_address: TraceAddress
    protocol: str
    liquidator_user: str
    liquidated_user: str
    debt_token_address: str
    debt_purchase_amount: int
    received_token_address: str
    received_amount: int
    gas: GasInfo | None


@dataclass(frozen=True, slots=True)
class BlockInspection:
    block_number: int
    miner: str
    base_fee_per_gas: int
    transfers: tuple[Transfer, ...]
    swaps: tuple[Swap, ...]
    flash_loans: tuple[FlashLoan, ...]
    arbitrages: tuple[Arbitrage, ...]
    sandwiches: tuple[Sandwich, ...]
    liquidations: tuple[Liquidation, ...]
    gas: dict[str, GasInfo] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view; integers stay exact (JSON numbers of any size)."""
        from dataclasses import asdict

        return {
            "block_number": self.block_number,
            "miner": self.miner,
            "base_fee_per_gas": self.base_fee_per_gas,
            "swap_count": len(self.swaps),
            "transfer_count": len(self.transfers),
            "flash_loans": [asdict(f) for f in self.flash_loans],
            "arbitrages": [asdict(a) for a in self.arbitrages],
            "sandwiches": [asdict(s) for s in self.sandwiches],
            "liquidations": [asdict(li) for li in self.liquidations],
        }
