"""Decode transfers, swaps and flash loans from one transaction's traces (liquidations:
liquidations.py).

Each transaction is indexed once: its traces in depth-first order (which is trace-address order),
the end of every call's subtree, and its transfers with their trace positions, so "transfers
before this call" and "transfers inside this call" are slices rather than scans of the block."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass

from mevaas_inspector import abi
from mevaas_inspector.models import (
    ETH_TOKEN,
    WETH_TOKEN,
    ZERO_ADDRESS,
    FlashLoan,
    Swap,
    Trace,
    Transfer,
)
from mevaas_inspector.orders import ORDER_FILLS, fill_legs

BANCOR_NETWORK = "0x2f9ec37d6ccff1cab21733bdadedee11c823ccb0"
ZEROX_EXCHANGE_PROXY = "0xdef1c0ded9bec7f1a1670819833240f027b25eff"


def _caller(trace: Trace) -> str | None:
    return trace.from_address


def _address_arg(index: int) -> Callable[[Trace], str | None]:
    def recipient(trace: Trace) -> str | None:
        return abi.address(trace.input, index) if abi.has_words(trace.input, index + 1) else None

    return recipient


@dataclass(frozen=True, slots=True)
class PoolSwapKind:
    protocol: str
    abi_name: str
    # Who the pool pays (None: the calldata is too short to say).
    recipient: Callable[[Trace], str | None]


_POOL_SWAPS: dict[str, PoolSwapKind] = {
    abi.UNIV2_SWAP: PoolSwapKind("uniswap_v2", "UniswapV2Pair", _address_arg(2)),
    abi.UNIV3_SWAP: PoolSwapKind("uniswap_v3", "UniswapV3Pool", _address_arg(0)),
    abi.BALANCER_SWAP_IN: PoolSwapKind("balancer_v1", "BPool", _caller),
    abi.BALANCER_SWAP_OUT: PoolSwapKind("balancer_v1", "BPool", _caller),
    abi.CURVE_EXCHANGE: PoolSwapKind("curve", "CurvePool", _caller),
    abi.CURVE_EXCHANGE_UNDERLYING: PoolSwapKind("curve", "CurvePool", _caller),
    abi.CURVE_EXCHANGE_U256: PoolSwapKind("curve", "CurvePool", _caller),
    abi.CURVE_EXCHANGE_UNDERLYING_U256: PoolSwapKind("curve", "CurvePool", _caller),
    abi.MOONISWAP_SWAP: PoolSwapKind("mooniswap", "Mooniswap", _caller),
    abi.MOONISWAP_SWAP_FOR: PoolSwapKind("mooniswap", "Mooniswap", _address_arg(5)),
}
_ZEROX_SWAPS = frozenset(
    {
        abi.ZEROX_TRANSFORM_ERC20,
        abi.ZEROX_SELL_TO_UNISWAP,
        abi.ZEROX_SELL_TOKEN_FOR_TOKEN_V3,
        abi.ZEROX_SELL_TOKEN_FOR_ETH_V3,
        abi.ZEROX_SELL_ETH_FOR_TOKEN_V3,
    }
)
_FLASH_LOANS: dict[str, str] = {
    abi.AAVE_V2_FLASH_LOAN: "aave",
    abi.ERC3156_FLASH_LOAN: "erc3156",
    abi.AAVE_V3_FLASH_LOAN_SIMPLE: "aave",
    abi.BALANCER_FLASH_LOAN: "balancer",
    abi.UNIV3_FLASH: "uniswap_v3",
}


def is_plain_call(trace: Trace) -> bool:
    """A call that moves value in its own right (not a delegatecall or staticcall frame)."""
    return trace.type == "call" and trace.call_type in (None, "call")


def trace_transfer(trace: Trace, position: int) -> Transfer | None:
    """The transfer one call makes, if any (ERC20 transfer/transferFrom, plain ETH, WETH wrap)."""
    if not is_plain_call(trace) or trace.transaction_hash is None:
        return None
    data = trace.input
    sel = data[:10]
    token, sender, recipient, amount, kind = trace.to_address, trace.from_address, "", 0, "erc20"
    if data == "0x":
        if trace.value <= 0:
            return None
        token, recipient, amount, kind = ETH_TOKEN, trace.to_address, trace.value, "eth"
    elif sel == abi.TRANSFER and abi.has_words(data, 2):
        recipient, amount = abi.address(data, 0), abi.word(data, 1)
    elif sel == abi.TRANSFER_FROM and abi.has_words(data, 3):
        sender, recipient, amount = abi.address(data, 0), abi.address(data, 1), abi.word(data, 2)
    elif trace.to_address == WETH_TOKEN and sel == abi.WETH_DEPOSIT:
        sender, recipient, amount, kind = ZERO_ADDRESS, trace.from_address, trace.value, "weth_deposit"
    elif trace.to_address == WETH_TOKEN and sel == abi.WETH_WITHDRAW and abi.has_words(data, 1):
        recipient, amount, kind = ZERO_ADDRESS, abi.word(data, 0), "weth_withdraw"
    else:
        return None
    return Transfer(
        transaction_hash=trace.transaction_hash,
        transaction_position=position,
        trace_address=trace.trace_address,
        token_address=token,
        from_address=sender,
        to_address=recipient,
        amount=amount,
        kind=kind,
        reverted=trace.reverted,
    )


def _error(trace: Trace) -> str | None:
    if trace.error is not None:
        return trace.error
    return "Reverted" if trace.reverted else None


@dataclass(slots=True)
class TxIndex:
    """One transaction's traces with subtree bounds and its transfers, built in a single pass."""

    transaction_hash: str
    position: int
    traces: list[Trace]
    subtree_end: list[int]
    transfers: list[Transfer]
    transfer_at: list[int]
    # ERC20/ETH moves for swap accounting, each with the index of the nearest transfer call
    # enclosing it (-1 if none). A move made inside another transfer (a fee-on-transfer token
    # selling its tax) belongs only to swaps that run inside that same transfer.
    swap_transfers: list[Transfer]
    swap_transfer_at: list[int]
    swap_transfer_outer: list[int]

    @classmethod
    def build(cls, traces: list[Trace]) -> TxIndex:
        ordered = sorted(traces, key=lambda t: t.trace_address)
        first = ordered[0]
        tx_hash = first.transaction_hash or ""
        position = first.transaction_position if first.transaction_position is not None else -1
        n = len(ordered)
        subtree_end = [n] * n
        stack: list[int] = []
        for i, trace in enumerate(ordered):
            depth = len(trace.trace_address)
            while stack and len(ordered[stack[-1]].trace_address) >= depth:
                subtree_end[stack.pop()] = i
            stack.append(i)
        transfers: list[Transfer] = []
        transfer_at: list[int] = []
        swap_transfers: list[Transfer] = []
        swap_transfer_at: list[int] = []
        swap_transfer_outer: list[int] = []
        enclosing: list[int] = []
        for i, trace in enumerate(ordered):
            transfer = trace_transfer(trace, position)
            if transfer is None:
                continue
            transfers.append(transfer)
            transfer_at.append(i)
            if transfer.kind in ("erc20", "eth"):
                while enclosing and subtree_end[enclosing[-1]] <= i:
                    enclosing.pop()
                swap_transfers.append(transfer)
                swap_transfer_at.append(i)
                swap_transfer_outer.append(enclosing[-1] if enclosing else -1)
                enclosing.append(i)
        return cls(
            transaction_hash=tx_hash,
            position=position,
            traces=ordered,
            subtree_end=subtree_end,
            transfers=transfers,
            transfer_at=transfer_at,
            swap_transfers=swap_transfers,
            swap_transfer_at=swap_transfer_at,
            swap_transfer_outer=swap_transfer_outer,
        )

    def _usable(self, k: int, i: int) -> bool:
        outer = self.swap_transfer_outer[k]
        return outer < 0 or outer < i < self.subtree_end[outer]

    def prior_swap_transfers(self, i: int) -> list[Transfer]:
        hi = bisect_left(self.swap_transfer_at, i)
        return [self.swap_transfers[k] for k in range(hi) if self._usable(k, i)]

    def child_swap_transfers(self, i: int) -> list[Transfer]:
        lo = bisect_left(self.swap_transfer_at, i + 1)
        hi = bisect_left(self.swap_transfer_at, self.subtree_end[i])
        return [self.swap_transfers[k] for k in range(lo, hi) if self._usable(k, i)]

    def child_transfers(self, i: int) -> list[Transfer]:
        lo = bisect_left(self.transfer_at, i + 1)
        hi = bisect_left(self.transfer_at, self.subtree_end[i])
        return self.transfers[lo:hi]


def _swap(
    tx: TxIndex, trace: Trace, protocol: str, abi_name: str, pool: str, t_in: Transfer, t_out: Transfer
) -> Swap:
    return Swap(
        transaction_hash=tx.transaction_hash,
        transaction_position=tx.position,
        trace_address=trace.trace_address,
        protocol=protocol,
        abi_name=abi_name,
        contract_address=pool,
        from_address=t_in.from_address,
        to_address=t_out.to_address,
        token_in_address=t_in.token_address,
        token_in_amount=t_in.amount,
        token_out_address=t_out.token_address,
        token_out_amount=t_out.amount,
        error=_error(trace),
    )


def _pool_swap(tx: TxIndex, i: int, recipient: str, protocol: str, abi_name: str) -> Swap | None:
    """Tokens in: the call's ETH value, else the last transfer to the pool before the call, else
    the last one inside it (flash-style payment in a callback). Tokens out: the single transfer
    from the pool to the recipient inside the call."""
    trace = tx.traces[i]
    pool = trace.to_address
    children = tx.child_swap_transfers(i)
    t_in: Transfer | None = None
    if trace.value > 0:
        t_in = Transfer(
            transaction_hash=tx.transaction_hash,
            transaction_position=tx.position,
            trace_address=trace.trace_address,
            token_address=ETH_TOKEN,
            from_address=trace.from_address,
            to_address=pool,
            amount=trace.value,
            kind="eth",
            reverted=trace.reverted,
        )
    else:
        for source in (tx.prior_swap_transfers(i), children):
            for transfer in reversed(source):
                if transfer.to_address == pool:
                    t_in = transfer
                    break
            if t_in is not None:
                break
    if t_in is None:
        return None
    outs = [t for t in children if t.to_address == recipient and t.from_address == pool]
    if len(outs) != 1:
        return None
    return _swap(tx, trace, protocol, abi_name, pool, t_in, outs[0])


def _recipient_swap(tx: TxIndex, i: int, pool: str, protocol: str, abi_name: str) -> Swap | None:
    """Aggregator-style swap: exactly one payment by the caller and one receipt back to it."""
    trace = tx.traces[i]
    recipient = trace.from_address
    children = tx.child_swap_transfers(i)
    ins = [t for t in (*tx.prior_swap_transfers(i), *children) if t.from_address == recipient]
    outs = [t for t in children if t.to_address == recipient]
    if trace.value > 0 and not ins:
        ins = [
            Transfer(
                transaction_hash=tx.transaction_hash,
                transaction_position=tx.position,
                trace_address=trace.trace_address,
                token_address=ETH_TOKEN,
                from_address=recipient,
                to_address=pool,
                amount=trace.value,
                kind="eth",
                reverted=trace.reverted,
            )
        ]
    if len(ins) != 1 or len(outs) != 1:
        return None
    return _swap(tx, trace, protocol, abi_name, pool, ins[0], outs[0])


@dataclass(frozen=True, slots=True)
class TxDecoded:
    swaps: list[Swap]
    flash_loans: list[FlashLoan]


def decode_swaps(tx: TxIndex) -> TxDecoded:
    """Pool swaps and order fills (orders.py) first; aggregator calls (0x, Bancor network) count
    only when none was decoded inside them, so a routed trade is one swap per pool or order, never
    also a wrapper swap.
    A Uniswap V2 `swap` paid back in the token it paid out is a flash loan, not a swap."""
    swaps: list[Swap] = []
    flash_loans: list[FlashLoan] = []
    pool_swap_at: list[int] = []
    aggregator_calls: list[tuple[int, str, str]] = []
    for i, trace in enumerate(tx.traces):
        if not is_plain_call(trace):
            continue
        sel = trace.input[:10]
        kind = _POOL_SWAPS.get(sel)
        order = ORDER_FILLS.get(sel)
        if kind is not None:
            recipient = kind.recipient(trace)
            if recipient is None:
                continue
            swap = _pool_swap(tx, i, recipient, kind.protocol, kind.abi_name)
            if swap is None:
                continue
            if sel == abi.UNIV2_SWAP and swap.token_in_address == swap.token_out_address:
                flash_loans.append(
                    FlashLoan(
                        transaction_hash=tx.transaction_hash,
                        trace_address=trace.trace_address,
                        protocol=kind.protocol,
                        lender=swap.contract_address,
                        borrower=swap.to_address,
                        token_address=swap.token_out_address,
                        amount=swap.token_out_amount,
                        fee=max(swap.token_in_amount - swap.token_out_amount, 0),
                    )
                )
                continue
            swaps.append(swap)
            pool_swap_at.append(i)
        elif order is not None:
            legs = fill_legs(order, trace, tx.child_swap_transfers(i))
            if legs is not None:
                # A fill is a trade like a pool's: a wrapper around it is not a second swap.
                swaps.append(_swap(tx, trace, order.protocol, order.abi_name, trace.to_address, *legs))
                pool_swap_at.append(i)
        elif trace.to_address == BANCOR_NETWORK and sel == abi.BANCOR_CONVERT_BY_PATH:
            aggregator_calls.append((i, "bancor", "BancorNetwork"))
        elif trace.to_address == ZEROX_EXCHANGE_PROXY and sel in _ZEROX_SWAPS:
            aggregator_calls.append((i, "zero_ex", "ZeroExProxy"))
        elif sel in _FLASH_LOANS:
            flash_loans.extend(_flash_loans(tx, i, _FLASH_LOANS[sel]))
    for i, protocol, abi_name in aggregator_calls:
        lo = bisect_left(pool_swap_at, i + 1)
        if lo < len(pool_swap_at) and pool_swap_at[lo] < tx.subtree_end[i]:
            continue
        swap = _recipient_swap(tx, i, tx.traces[i].to_address, protocol, abi_name)
        if swap is not None:
            swaps.append(swap)
    if aggregator_calls:
        swaps.sort(key=lambda s: s.trace_address)
    return TxDecoded(swaps=swaps, flash_loans=flash_loans)


def _flash_loans(tx: TxIndex, i: int, protocol: str) -> list[FlashLoan]:
    """A lender pays the receiver (before calling it back) and is repaid inside the same call;
    the fee is what came back beyond what went out, per token."""
    trace = tx.traces[i]
    if not abi.has_words(trace.input, 1) or trace.reverted:
        return []
    borrower = abi.address(trace.input, 0)
    end = tx.subtree_end[i]
    callback = end
    for j in range(i + 1, end):
        t = tx.traces[j]
        if t.to_address == borrower and t.input != "0x" and is_plain_call(t):
            callback = j
            break
    lo = bisect_left(tx.swap_transfer_at, i + 1)
    split = bisect_left(tx.swap_transfer_at, callback)
    hi = bisect_left(tx.swap_transfer_at, end)
    lent: dict[tuple[str, str], int] = {}
    for transfer in tx.swap_transfers[lo:split]:
        if transfer.to_address == borrower:
            key = (transfer.token_address, transfer.from_address)
            lent[key] = lent.get(key, 0) + transfer.amount
    repaid: dict[tuple[str, str], int] = {}
    for transfer in tx.swap_transfers[split:hi]:
        key = (transfer.token_address, transfer.to_address)
        if key in lent:
            repaid[key] = repaid.get(key, 0) + transfer.amount
    return [
        FlashLoan(
            transaction_hash=tx.transaction_hash,
            trace_address=trace.trace_address,
            protocol=protocol,
            lender=source,
            borrower=borrower,
            token_address=token,
            amount=amount,
            fee=max(repaid.get((token, source), 0) - amount, 0),
        )
        for (token, source), amount in lent.items()
    ]
