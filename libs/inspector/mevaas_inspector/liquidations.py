"""Decode liquidations from one transaction's traces: Aave `liquidationCall` and Compound-style
`liquidateBorrow` (Compound, Cream), with the collateral actually paid to the liquidator."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mevaas_inspector import abi
from mevaas_inspector.decode import TxIndex, is_plain_call
from mevaas_inspector.markets import CREAM_MARKETS
from mevaas_inspector.models import ETH_TOKEN, Liquidation, Transfer

AAVE_POOLS = frozenset(
    {
        "0x398ec7346dcd622edc5ae82352f02be94c62d119",  # v1 LendingPool
        "0x7d2768de32b0b80b7a3454c06bdac94a69ddc7a9",  # v2 LendingPool
        "0x7937d4799803fbbe595ed57278bc4ca21f3bffcb",  # v2 AMM market
        "0x87870bca3f3fd6335c3f4ce8392d69350b4fa4e2",  # v3 Pool
    }
)
CETHER = "0x4ddc2d193948926d02f9b1fe9e1daa0718270ed5"
CREAM_CETHER = "0xd06527d5e56a3495252a528c4987003b712860ee"


def decode_liquidations(
    tx: TxIndex, compound_markets: Mapping[str, str], aave_pools: frozenset[str] = AAVE_POOLS
) -> list[Liquidation]:
    """Aave `liquidationCall` (on ``aave_pools``, lower-case) and Compound-style `liquidateBorrow`
    calls that took effect. A call undone by a revert (its own or an ancestor's) liquidated
    nothing, so it is skipped."""
    out: list[Liquidation] = []
    covered_until = -1
    for i, trace in enumerate(tx.traces):
        if i < covered_until or not is_plain_call(trace) or trace.reverted:
            continue
        data = trace.input
        sel = data[:10]
        liquidation: Liquidation | None = None
        if sel == abi.AAVE_LIQUIDATION_CALL and trace.to_address in aave_pools and abi.has_words(data, 4):
            liquidation = _aave_liquidation(tx, i)
        elif sel in (abi.COMPOUND_LIQUIDATE, abi.COMPOUND_LIQUIDATE_ETH):
            liquidation = _compound_liquidation(tx, i, compound_markets)
        if liquidation is not None:
            out.append(liquidation)
            covered_until = tx.subtree_end[i]
    return out


def _first(
    transfers: Iterable[Transfer], *, token: str | None = None, sender: str = "", to: str = ""
) -> Transfer | None:
    for transfer in transfers:
        if transfer.reverted or transfer.kind != "erc20":
            continue
        if token is not None and transfer.token_address != token:
            continue
        if sender and transfer.from_address != sender:
            continue
        if to and transfer.to_address != to:
            continue
        return transfer
    return None


def _aave_liquidation(tx: TxIndex, i: int) -> Liquidation:
    trace = tx.traces[i]
    data = trace.input
    collateral, debt, user = abi.address(data, 0), abi.address(data, 1), abi.address(data, 2)
    liquidator = trace.from_address
    children = tx.child_transfers(i)
    # The repaid amount is what actually moved (the argument may be "max" to mean all debt).
    paid = _first(children, token=debt, sender=liquidator)
    received_token, received_amount = _aave_received(
        tx, i, collateral, liquidator, receive_a_token=abi.has_words(data, 5) and abi.word(data, 4) != 0
    )
    return Liquidation(
        transaction_hash=tx.transaction_hash,
        transaction_position=tx.position,
        trace_address=trace.trace_address,
        protocol="aave",
        liquidator_user=liquidator,
        liquidated_user=user,
        debt_token_address=debt,
        debt_purchase_amount=paid.amount if paid is not None else abi.word(data, 3),
        received_token_address=received_token,
        received_amount=received_amount,
        gas=None,
    )


def _aave_received(
    tx: TxIndex, i: int, collateral: str, liquidator: str, *, receive_a_token: bool
) -> tuple[str, int]:
    """What the liquidator got for the collateral. With ``receiveAToken`` the pool moves the
    borrower's aTokens with ``transferOnLiquidation`` (no ERC-20 transfer call): that call's
    amount, in the aToken. Otherwise the underlying the aToken sends it, or ether where the
    collateral reaches it unwrapped (an ETH transfer, e.g. a WETH-paying pool or gateway)."""
    if receive_a_token:
        for child in tx.traces[i + 1 : tx.subtree_end[i]]:
            if (
                not child.reverted
                and child.input[:10] == abi.AAVE_TRANSFER_ON_LIQUIDATION
                and abi.has_words(child.input, 3)
                and abi.address(child.input, 1) == liquidator
            ):
                return child.to_address, abi.word(child.input, 2)
        return collateral, 0
    children = [t for t in tx.child_transfers(i) if not t.reverted and t.to_address == liquidator]
    for kinds in (("erc20",), ("eth",)):
        for t in children:
            if (
                t.kind in kinds
                and t.from_address != liquidator
                and (t.kind == "eth" or t.token_address == collateral)
            ):
                return t.token_address, t.amount
    other = next((t for t in children if t.kind == "erc20" and t.from_address != liquidator), None)
    return (other.token_address, other.amount) if other is not None else (collateral, 0)


def _compound_liquidation(tx: TxIndex, i: int, markets: Mapping[str, str]) -> Liquidation | None:
    trace = tx.traces[i]
    data = trace.input
    is_eth = data[:10] == abi.COMPOUND_LIQUIDATE_ETH
    if not abi.has_words(data, 2 if is_eth else 3):
        return None
    borrower = abi.address(data, 0)
    collateral = abi.address(data, 1 if is_eth else 2)
    c_token = trace.to_address
    seize_tokens: int | None = None
    for j in range(i + 1, tx.subtree_end[i]):
        inner = tx.traces[j]
        if inner.input[:10] == abi.COMPOUND_SEIZE and is_plain_call(inner) and abi.has_words(inner.input, 3):
            seize_tokens = abi.word(inner.input, 2)
            break
    # Only Compound-family markets seize collateral; without a seize this is some other contract.
    if seize_tokens is None:
        return None
    liquidator = trace.from_address
    if is_eth:
        debt_token, debt_amount = ETH_TOKEN, trace.value
    else:
        # The market's underlying (a market no list knows stays named by its cToken).
        debt_token = markets.get(c_token) or CREAM_MARKETS.get(c_token, c_token)
        paid = _first(tx.child_transfers(i), token=debt_token, sender=liquidator)
        debt_amount = paid.amount if paid is not None else abi.word(data, 1)
    protocol = _compound_family(c_token, markets)
    return Liquidation(
        transaction_hash=tx.transaction_hash,
        transaction_position=tx.position,
        trace_address=trace.trace_address,
        protocol=protocol,
        liquidator_user=liquidator,
        liquidated_user=borrower,
        debt_token_address=debt_token,
        debt_purchase_amount=debt_amount,
        received_token_address=collateral,
        received_amount=seize_tokens,
        gas=None,
    )


def _compound_family(c_token: str, markets: Mapping[str, str]) -> str:
    if c_token in markets or c_token == CETHER:
        return "compound_v2"
    if c_token in CREAM_MARKETS or c_token == CREAM_CETHER:
        return "cream"
    return "compound_fork"
