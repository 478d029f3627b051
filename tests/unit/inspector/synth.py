"""Build minimal synthetic blocks in the `trace_block` fixture shape."""

from __future__ import annotations

from typing import Any

WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
MINER = "0x00000000000000000000000000000000000000aa"


def addr(n: int) -> str:
    return "0x" + f"{n:040x}"


def word(value: int | str) -> str:
    if isinstance(value, str):
        return value.removeprefix("0x").rjust(64, "0")
    return f"{value:064x}"


def calldata(selector: str, *args: int | str) -> str:
    return selector + "".join(word(a) for a in args)


def transfer(to: str, amount: int) -> str:
    return calldata("0xa9059cbb", to, amount)


def transfer_from(sender: str, to: str, amount: int) -> str:
    return calldata("0x23b872dd", sender, to, amount)


def v2_swap(to: str, amount0_out: int = 0, amount1_out: int = 0) -> str:
    return calldata("0x022c0d9f", amount0_out, amount1_out, to, 0x80, 0)


class Block:
    def __init__(self, number: int = 1, base_fee: int = 0) -> None:
        self.number = number
        self.base_fee = base_fee
        self.traces: list[dict[str, Any]] = []
        self.receipts: list[dict[str, Any]] = []

    def tx(self, position: int, gas_used: int = 100_000, gas_price: int = 10**9) -> Tx:
        tx_hash = "0x" + f"{position + 1:064x}"
        self.receipts.append(
            {
                "block_number": self.number,
                "transaction_hash": tx_hash,
                "transaction_index": position,
                "gas_used": gas_used,
                "effective_gas_price": gas_price,
                "cumulative_gas_used": gas_used * (position + 1),
                "to": None,
            }
        )
        return Tx(self, tx_hash, position)

    def raw(self) -> dict[str, Any]:
        return {
            "block_number": self.number,
            "miner": MINER,
            "base_fee_per_gas": self.base_fee,
            "traces": self.traces,
            "receipts": self.receipts,
        }


class Tx:
    def __init__(self, block: Block, tx_hash: str, position: int) -> None:
        self.block = block
        self.hash = tx_hash
        self.position = position

    def call(
        self,
        trace_address: list[int],
        frm: str,
        to: str,
        data: str = "0x",
        value: int = 0,
        error: str | None = None,
        call_type: str = "call",
    ) -> Tx:
        self.block.traces.append(
            {
                "action": {
                    "from": frm,
                    "callType": call_type,
                    "gas": "0x0",
                    "input": data,
                    "to": to,
                    "value": hex(value),
                },
                "block_hash": "0x" + "00" * 32,
                "block_number": self.block.number,
                "result": None if error else {"gasUsed": "0x0", "output": "0x"},
                "subtraces": 0,
                "trace_address": trace_address,
                "transaction_hash": self.hash,
                "transaction_position": self.position,
                "type": "call",
                "error": error,
            }
        )
        return self

    def v2_swap(
        self,
        at: list[int],
        trader: str,
        pool: str,
        token_in: str,
        amount_in: int,
        token_out: str,
        amount_out: int,
    ) -> Tx:
        """Pay the pool first (a prior transfer), then call swap, which pays out to the trader."""
        self.call(at, trader, token_in, transfer(pool, amount_in))
        swap_at = [*at[:-1], at[-1] + 1]
        self.call(swap_at, trader, pool, v2_swap(trader, amount1_out=amount_out))
        self.call([*swap_at, 0], pool, token_out, transfer(trader, amount_out))
        return self
