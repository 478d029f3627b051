"""Decoding Uniswap V2 Router02 swap calls from a pending transaction's calldata.

Each router entry point is one row of `ROUTER_SWAPS`: its signature, whether it spends an exact
input or buys an exact output, where the amounts sit in its arguments and whether the input is the
transaction's ETH value. Calls that are not a known router swap decode to None, never an error: a
pending pool is full of other calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak


@dataclass(frozen=True, slots=True)
class _RouterSwap:
    name: str
    types: tuple[str, ...]
    exact_in: bool
    # Argument index of the exact amount and of the bound; -1: the transaction's value.
    amount_arg: int
    bound_arg: int


_TOKENS = ("uint256", "uint256", "address[]", "address", "uint256")
_ETH_IN = ("uint256", "address[]", "address", "uint256")
ROUTER_SWAPS: tuple[_RouterSwap, ...] = (
    _RouterSwap("swapExactTokensForTokens", _TOKENS, True, 0, 1),
    _RouterSwap("swapTokensForExactTokens", _TOKENS, False, 0, 1),
    _RouterSwap("swapExactETHForTokens", _ETH_IN, True, -1, 0),
    _RouterSwap("swapTokensForExactETH", _TOKENS, False, 0, 1),
    _RouterSwap("swapExactTokensForETH", _TOKENS, True, 0, 1),
    # amountOut exact, the value is the most the sender pays (the router refunds the rest).
    _RouterSwap("swapETHForExactTokens", _ETH_IN, False, 0, -1),
    _RouterSwap("swapExactTokensForTokensSupportingFeeOnTransferTokens", _TOKENS, True, 0, 1),
    _RouterSwap("swapExactETHForTokensSupportingFeeOnTransferTokens", _ETH_IN, True, -1, 0),
    _RouterSwap("swapExactTokensForETHSupportingFeeOnTransferTokens", _TOKENS, True, 0, 1),
)
_BY_SELECTOR = {keccak(text=f"{r.name}({','.join(r.types)})")[:4]: r for r in ROUTER_SWAPS}


@dataclass(frozen=True, slots=True)
class RouterSwap:
    """A decoded swap: ``amount`` is the exact input (exact_in) or the exact output; ``bound`` the
    minimum output (exact_in: amountOutMin) or the maximum input (exact out: amountInMax)."""

    router: str
    function: str
    path: tuple[str, ...]
    exact_in: bool
    amount: int
    bound: int
    recipient: str
    deadline: int
    eth_in: bool


def decode_router_swap(to: str, value: int, data: bytes) -> RouterSwap | None:
    """The router swap this call makes, or None if it is none (or malformed)."""
    row = _BY_SELECTOR.get(data[:4])
    if row is None or not to:
        return None
    try:
        args = decode(list(row.types), data[4:])
    except (DecodingError, ValueError, OverflowError):
        return None
    path_index = row.types.index("address[]")
    path = tuple(to_checksum_address(a) for a in args[path_index])
    if len(path) < 2:
        return None
    amount = value if row.amount_arg < 0 else int(args[row.amount_arg])
    bound = value if row.bound_arg < 0 else int(args[row.bound_arg])
    return RouterSwap(
        router=to_checksum_address(to),
        function=row.name,
        path=path,
        exact_in=row.exact_in,
        amount=amount,
        bound=bound,
        recipient=to_checksum_address(args[path_index + 1]),
        deadline=int(args[path_index + 2]),
        eth_in=row.types == _ETH_IN,
    )
