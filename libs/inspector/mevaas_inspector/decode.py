"""Decode transfers, swaps, flash loans and liquidations from one transaction's traces.

Each transaction is indexed once: its traces in depth-first order (which is trace-address order),
the end of every call's subtree, and its transfers with their trace positions, so "transfers
before this call" and "transfers inside this call" are slices rather than scans of the block."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mevaas_inspector import abi
from mevaas_inspector.models import (
    ETH_TOKEN,
    WETH_TOKEN,
    ZERO_ADDRESS,
    FlashLoan,
    Liquidation,
    Swap,
    Trace,
    Transfer,
)

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
BANCOR_NETWORK = "0x2f9ec37d6ccff1cab21733bdadedee11c823ccb0"
ZEROX_EXCHANGE_PROXY = "0xdef1c0ded9bec7f1a1670819833240f027b25eff"

# Compound v2 cToken -> underlying (the public market list; callers may pass a fuller one).
COMPOUND_MARKETS: dict[str, str] = {
    "0x6c8c6b02e7b2be14d4fa6022dfd6d75921d90e4e": "0x0d8775f648430679a709e98d2b0cb6250d2887ef",
    "0x5d3a536e4d6dbd6114cc1ead35777bab948e3643": "0x6b175474e89094c44da98b954eedeac495271d0f",
    "0x158079ee67fce2f58472a96584a73c7ab9ac95c1": "0x1985365e9f78359a9b6ad760e32412f4a445e862",
    "0x39aa39c021dfbae8fac545936693ac917d5e7563": "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",
    "0xf650c3d88d12db855b8bf7d11be6c55a4e07dcc9": "0xdac17f958d2ee523a2206206994597c13d831ec7",
    "0xc11b1268c1a384e55c48c2391d8d480264a3a7f4": "0x2260fac5e5542a773aa44fbcfedf7c193bc2c599",
    "0xb3319f5d18bc0d84dd1b4825dcde5d5f7266d407": "0xe41d2489571d322189246dafa5ebde1f4699f498",
    "0xf5dce57282a584d2746faf1593d3121fcac444dc": "0x89d24a6b4ccb1b6faa2625fe562bdd9a23260359",
    "0x35a18000230da775cac24873d00ff85bccded550": "0x1f9840a85d5af5bf1d1762f925bdaddc4201f984",
    "0x70e36f6bf80a52b3b46b3af8e106cc0ed743e8e4": "0xc00e94cb662c3520282e6f5717214004a7f26888",
    "0xccf4429db6322d5c611ee964527d42e5d685dd6a": "0x2260fac5e5542a773aa44fbcfedf7c193bc2c599",
    "0x12392f67bdf24fae0af363c24ac620a2f67dad86": "0x0000000000085d4780b73119b644ae5ecd22b376",
    "0xface851a4921ce59e912d19329929ce6da6eb0c7": "0x514910771af9ca656af840dff83e8264ecf986ca",
    "0x95b4ef2869ebd94beb4eee400a99824bf5dc325b": "0x9f8f72aa9304c8b593d555f12ef6589cc3a579a2",
    "0x4b0181102a0112a2ef11abee5563bb4a3176c9d7": "0x6b3595068778dd592e39a122f4f5a5cf09c90fe2",
    "0xe65cdb6479bac1e22340e4e755fae7e509ecd06c": "0x7fc66500c84a76ad7e9c93437bfc5ac33e2ddae9",
    "0x80a2ae356fc9ef4305676f7a3e2ed04e12c33946": "0x0bc529c00c6401aef6d220be8c6ea1667f6ad93e",
}

_POOL_SWAPS: dict[str, tuple[str, str]] = {
    abi.UNIV2_SWAP: ("uniswap_v2", "UniswapV2Pair"),
    abi.UNIV3_SWAP: ("uniswap_v3", "UniswapV3Pool"),
    abi.BALANCER_SWAP_IN: ("balancer_v1", "BPool"),
    abi.BALANCER_SWAP_OUT: ("balancer_v1", "BPool"),
    abi.CURVE_EXCHANGE: ("curve", "CurvePool"),
    abi.CURVE_EXCHANGE_UNDERLYING: ("curve", "CurvePool"),
    abi.CURVE_EXCHANGE_U256: ("curve", "CurvePool"),
    abi.CURVE_EXCHANGE_UNDERLYING_U256: ("curve", "CurvePool"),
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
    tx: TxIndex, trace: Trace, *, protocol: str, abi_name: str, pool: str, t_in: Transfer, t_out: Transfer
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
    return _swap(tx, trace, protocol=protocol, abi_name=abi_name, pool=pool, t_in=t_in, t_out=outs[0])


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
    return _swap(tx, trace, protocol=protocol, abi_name=abi_name, pool=pool, t_in=ins[0], t_out=outs[0])


@dataclass(frozen=True, slots=True)
class TxDecoded:
    swaps: list[Swap]
    flash_loans: list[FlashLoan]


def decode_swaps(tx: TxIndex) -> TxDecoded:
    """Pool swaps first; aggregator calls (0x, Bancor network) count only when no pool swap was
    decoded inside them, so a routed trade is one swap per pool, never also a wrapper swap.
    A Uniswap V2 `swap` paid back in the token it paid out is a flash loan, not a swap."""
    swaps: list[Swap] = []
    flash_loans: list[FlashLoan] = []
    pool_swap_at: list[int] = []
    aggregator_calls: list[tuple[int, str, str]] = []
    for i, trace in enumerate(tx.traces):
        if not is_plain_call(trace):
            continue
        data = trace.input
        sel = data[:10]
        kind = _POOL_SWAPS.get(sel)
        if kind is not None:
            protocol, abi_name = kind
            if sel == abi.UNIV2_SWAP:
                if not abi.has_words(data, 3):
                    continue
                recipient = abi.address(data, 2)
            elif sel == abi.UNIV3_SWAP:
                if not abi.has_words(data, 1):
                    continue
                recipient = abi.address(data, 0)
            else:
                recipient = trace.from_address
            swap = _pool_swap(tx, i, recipient, protocol, abi_name)
            if swap is None:
                continue
            if sel == abi.UNIV2_SWAP and swap.token_in_address == swap.token_out_address:
                flash_loans.append(
                    FlashLoan(
                        transaction_hash=tx.transaction_hash,
                        trace_address=trace.trace_address,
                        protocol=protocol,
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


def decode_liquidations(tx: TxIndex, compound_markets: Mapping[str, str]) -> list[Liquidation]:
    """Aave `liquidationCall` and Compound-style `liquidateBorrow` calls that took effect.
    A call undone by a revert (its own or an ancestor's) liquidated nothing, so it is skipped."""
    out: list[Liquidation] = []
    covered_until = -1
    for i, trace in enumerate(tx.traces):
        if i < covered_until or not is_plain_call(trace) or trace.reverted:
            continue
        data = trace.input
        sel = data[:10]
        liquidation: Liquidation | None = None
        if sel == abi.AAVE_LIQUIDATION_CALL and trace.to_address in AAVE_POOLS and abi.has_words(data, 4):
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
    received = next(
        (
            t
            for t in children
            if not t.reverted
            and t.kind == "erc20"
            and t.to_address == liquidator
            and t.from_address != liquidator
        ),
        None,
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
        received_token_address=received.token_address if received is not None else collateral,
        received_amount=received.amount if received is not None else 0,
        gas=None,
    )


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
        debt_token = markets.get(c_token, c_token)
        paid = _first(tx.child_transfers(i), token=debt_token, sender=liquidator)
        debt_amount = paid.amount if paid is not None else abi.word(data, 1)
    if c_token in markets or c_token == CETHER:
        protocol = "compound_v2"
    elif c_token == CREAM_CETHER:
        protocol = "cream"
    else:
        protocol = "compound_fork"
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
