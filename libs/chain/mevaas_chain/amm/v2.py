"""Uniswap V2 swap math with exactly the contracts' integer arithmetic.

`UniswapV2Library.getAmountOut` computes, for the 0.3% fee,

    amountInWithFee = amountIn * 997
    amountOut = amountInWithFee * reserveOut / (reserveIn * 1000 + amountInWithFee)

with Solidity's truncating division. Forks with another fee use (10000 - fee_bps) / 10000; we always
compute with the 10000 scale. For 30 bps that is 9970 / 10000, i.e. the contract's fraction scaled by
10 in numerator and denominator alike, so the rational value and therefore its floor are identical to
the contract's result for every input (the tests check this against the literal 997/1000 formula).

`UniswapV2Pair.swap` accepts a swap iff, after fees,

    (balance0 * 1000 - amount0In * 3) * (balance1 * 1000 - amount1In * 3) >= reserve0 * reserve1 * 1000**2

which `swap_satisfies_k` reproduces as a pure function, so the "UniswapV2: K" boundary (one more wei
out than `get_amount_out` reverts) is testable without a chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

FEE_DENOMINATOR = 10_000
DEFAULT_FEE_BPS = 30


class InsufficientInputAmount(ValueError):
    """The contracts' `UniswapV2Library: INSUFFICIENT_INPUT_AMOUNT`."""


class InsufficientOutputAmount(ValueError):
    """The contracts' `UniswapV2Library: INSUFFICIENT_OUTPUT_AMOUNT`."""


class InsufficientLiquidity(ValueError):
    """The contracts' `UniswapV2Library: INSUFFICIENT_LIQUIDITY` (or an output the pool cannot pay)."""


class SwapLeg(NamedTuple):
    """One directed swap through a pool: its reserves seen from the input side, and its fee."""

    reserve_in: int
    reserve_out: int
    fee_bps: int = DEFAULT_FEE_BPS

    def step(self, amount_in: int) -> tuple[int, int, int] | None:
        """(amount out, marginal rate after it as numerator, denominator) for ``amount_in`` >= 0
        (0: the spot rate), None for an empty pool. The marginal rate is the derivative of the
        unrounded output, g*r*s / (r + g*x)**2, so a route's is the product of its hops' (see
        ``amm.mixed``)."""
        if self.reserve_in <= 0 or self.reserve_out <= 0:
            return None
        gamma = FEE_DENOMINATOR - self.fee_bps
        with_fee = amount_in * gamma
        denominator = self.reserve_in * FEE_DENOMINATOR + with_fee
        out = with_fee * self.reserve_out // denominator
        return out, gamma * FEE_DENOMINATOR * self.reserve_in * self.reserve_out, denominator * denominator


def _check_fee(fee_bps: int) -> int:
    if not 0 <= fee_bps < FEE_DENOMINATOR:
        raise ValueError(f"fee_bps must be in [0, {FEE_DENOMINATOR}), got {fee_bps}")
    return FEE_DENOMINATOR - fee_bps


def get_amount_out(amount_in: int, reserve_in: int, reserve_out: int, fee_bps: int = DEFAULT_FEE_BPS) -> int:
    """`UniswapV2Library.getAmountOut`: the output of a single swap, rounded down."""
    if amount_in <= 0:
        raise InsufficientInputAmount("UniswapV2Library: INSUFFICIENT_INPUT_AMOUNT")
    if reserve_in <= 0 or reserve_out <= 0:
        raise InsufficientLiquidity("UniswapV2Library: INSUFFICIENT_LIQUIDITY")
    gamma = _check_fee(fee_bps)
    amount_in_with_fee = amount_in * gamma
    return (amount_in_with_fee * reserve_out) // (reserve_in * FEE_DENOMINATOR + amount_in_with_fee)


def get_amount_in(amount_out: int, reserve_in: int, reserve_out: int, fee_bps: int = DEFAULT_FEE_BPS) -> int:
    """`UniswapV2Library.getAmountIn`: the input the router asks for a given output.

    Like the contract it is `floor(...) + 1`, which is one more than the minimum when the division is
    exact; `min_amount_in` gives the true minimum.
    """
    if amount_out <= 0:
        raise InsufficientOutputAmount("UniswapV2Library: INSUFFICIENT_OUTPUT_AMOUNT")
    if reserve_in <= 0 or reserve_out <= 0:
        raise InsufficientLiquidity("UniswapV2Library: INSUFFICIENT_LIQUIDITY")
    if amount_out >= reserve_out:
        # The contract underflows (or divides by zero) here and reverts.
        raise InsufficientLiquidity("UniswapV2Library: INSUFFICIENT_LIQUIDITY")
    gamma = _check_fee(fee_bps)
    numerator = reserve_in * amount_out * FEE_DENOMINATOR
    denominator = (reserve_out - amount_out) * gamma
    return numerator // denominator + 1


def min_amount_in(amount_out: int, reserve_in: int, reserve_out: int, fee_bps: int = DEFAULT_FEE_BPS) -> int:
    """The smallest input for which `get_amount_out` returns at least `amount_out` (0 for 0)."""
    if amount_out <= 0:
        return 0
    if reserve_in <= 0 or reserve_out <= 0 or amount_out >= reserve_out:
        raise InsufficientLiquidity("UniswapV2Library: INSUFFICIENT_LIQUIDITY")
    gamma = _check_fee(fee_bps)
    numerator = reserve_in * amount_out * FEE_DENOMINATOR
    denominator = (reserve_out - amount_out) * gamma
    return -(-numerator // denominator)


def amounts_out(amount_in: int, legs: Iterable[SwapLeg]) -> list[int]:
    """`UniswapV2Library.getAmountsOut` over already-oriented legs: [amount_in, out_1, ..., out_n]."""
    amounts = [amount_in]
    for reserve_in, reserve_out, fee_bps in legs:
        amounts.append(get_amount_out(amounts[-1], reserve_in, reserve_out, fee_bps))
    return amounts


def amounts_in(amount_out: int, legs: Sequence[SwapLeg]) -> list[int]:
    """`UniswapV2Library.getAmountsIn` over already-oriented legs: [in, ..., amount_out]."""
    amounts = [amount_out]
    for reserve_in, reserve_out, fee_bps in reversed(legs):
        amounts.append(get_amount_in(amounts[-1], reserve_in, reserve_out, fee_bps))
    amounts.reverse()
    return amounts


def swap_satisfies_k(
    reserve0: int,
    reserve1: int,
    *,
    amount0_in: int = 0,
    amount1_in: int = 0,
    amount0_out: int = 0,
    amount1_out: int = 0,
    fee_bps: int = DEFAULT_FEE_BPS,
) -> bool:
    """Whether `UniswapV2Pair.swap` would accept this swap (output, liquidity, input and K checks).

    Balances are the reserves plus what was sent in minus what is sent out, as the pair sees them.
    """
    if amount0_out < 0 or amount1_out < 0 or amount0_in < 0 or amount1_in < 0:
        return False
    if amount0_out == 0 and amount1_out == 0:
        return False  # INSUFFICIENT_OUTPUT_AMOUNT
    if amount0_out >= reserve0 or amount1_out >= reserve1:
        return False  # INSUFFICIENT_LIQUIDITY
    balance0 = reserve0 + amount0_in - amount0_out
    balance1 = reserve1 + amount1_in - amount1_out
    if amount0_in == 0 and amount1_in == 0:
        return False  # INSUFFICIENT_INPUT_AMOUNT
    balance0_adjusted = balance0 * FEE_DENOMINATOR - amount0_in * fee_bps
    balance1_adjusted = balance1 * FEE_DENOMINATOR - amount1_in * fee_bps
    return balance0_adjusted * balance1_adjusted >= reserve0 * reserve1 * FEE_DENOMINATOR**2
