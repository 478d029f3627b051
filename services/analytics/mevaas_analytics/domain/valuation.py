"""What an execution moved, valued in USD at the time it happened, with the platform's one price
source (`mevaas_chain.pricing`, see docs/pricing.md).

A final execution (INCLUDED or REVERTED) is valued once, when analytics records its result: the
realised profit and the expected profit in the profit token, the gas cost in the chain's native
coin, each priced as of the execution's inclusion block (the pool state at or before it). The
valuation is stored with its price, source and observed block/time; an amount the source cannot
price is stored as unpriced with the reason, never as 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from mevaas.events.v1 import events_pb2
from mevaas_chain.pricing import NATIVE, NATIVE_DECIMALS, PriceSource, Valuation, normalize_token, valuate

FINAL_STATUSES = frozenset({2, 3})  # ExecutionResultStatus INCLUDED, REVERTED: on-chain PnL
REALIZED_PROFIT = "realized_profit"
EXPECTED_PROFIT = "expected_profit"
GAS_COST = "gas_cost"


def token_key(chain_id: int, token: str) -> str:
    """`<chain>:<lower-case address>` or `<chain>:native`, as the read model keys tokens."""
    return f"{chain_id}:{normalize_token(token)}"


@dataclass(frozen=True)
class ComponentValue:
    component: str
    chain_id: int
    token: str
    valuation: Valuation


def value_execution(result: events_pb2.ExecutionResult, source: PriceSource) -> list[ComponentValue]:
    """The valued components of a final execution result (nothing for a non-final one)."""
    if result.status not in FINAL_STATUSES:
        return []
    at_block = result.block_number or None
    values: list[ComponentValue] = []
    token = result.profit_token
    if token.address:
        for component, text in (
            (REALIZED_PROFIT, result.realized_profit),
            (EXPECTED_PROFIT, result.expected_profit),
        ):
            if text:
                chain = token.chain_id or result.chain_id
                # A cross-chain profit token is priced on its own chain, whose blocks differ.
                block = at_block if chain == result.chain_id else None
                values.append(
                    ComponentValue(
                        component,
                        chain,
                        normalize_token(token.address),
                        valuate(source, chain, token.address, int(text), token.decimals, at_block=block),
                    )
                )
    if result.gas_cost:
        values.append(
            ComponentValue(
                GAS_COST,
                result.chain_id,
                NATIVE,
                valuate(
                    source, result.chain_id, NATIVE, int(result.gas_cost), NATIVE_DECIMALS, at_block=at_block
                ),
            )
        )
    return values
