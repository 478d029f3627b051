"""Uniswap V3 swap math with exactly the contracts' integer arithmetic.

A line-by-line port of ``@uniswap/v3-core`` 1.0.1 (``FullMath``, ``TickMath``, ``SqrtPriceMath``,
``SwapMath``, ``TickBitmap``, ``LiquidityMath`` and the loop of ``UniswapV3Pool.swap``). Python
integers do not wrap, so every place where the Solidity relies on a 256-bit overflow (or a
``require`` that catches one) is written out explicitly: several of those branches pick a different
rounding formula, and a port that skipped them would drift by a wei. Where the contract reverts, the
port raises ``V3MathError``.

The swap walks the tick bitmap one 256-bit word at a time, exactly like the pool: a step ends at the
next initialised tick *or at the word boundary*, and each step rounds on its own, so jumping straight
to the next initialised tick would give a different (by a wei) result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

MAX_UINT128 = (1 << 128) - 1
MAX_UINT160 = (1 << 160) - 1
MAX_UINT256 = (1 << 256) - 1
MAX_INT256 = (1 << 255) - 1
Q96 = 1 << 96
FEE_PIPS = 1_000_000

MIN_TICK = -887272
MAX_TICK = 887272
MIN_SQRT_RATIO = 4295128739
MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342

# TickMath.getSqrtRatioAtTick: 1/sqrt(1.0001)^(2^i) as Q128.128, for bit i of |tick| (bit 0 is the
# initial ratio, taken when the tick is odd).
_TICK_RATIOS = (
    0xFFF97272373D413259A46990580E213A,
    0xFFF2E50F5F656932EF12357CF3C7FDCC,
    0xFFE5CACA7E10E4E61C3624EAA0941CD0,
    0xFFCB9843D60F6159C9DB58835C926644,
    0xFF973B41FA98C081472E6896DFB254C0,
    0xFF2EA16466C96A3843EC78B326B52861,
    0xFE5DEE046A99A2A811C461F1969C3053,
    0xFCBE86C7900A88AEDCFFC83B479AA3A4,
    0xF987A7253AC413176F2B074CF7815E54,
    0xF3392B0822B70005940C7A398E4B70F3,
    0xE7159475A2C29B7443B29C7FA6E889D9,
    0xD097F3BDFD2022B8845AD8F792AA5825,
    0xA9F746462D870FDF8A65DC1F90E061E5,
    0x70D869A156D2A1B890BB3DF62BAF32F7,
    0x31BE135F97D08FD981231505542FCFA6,
    0x9AA508B5B7A84E1C677DE54F3E99BC9,
    0x5D6AF8DEDB81196699C329225EE604,
    0x2216E584F5FA1EA926041BEDFE98,
    0x48A170391F7DC42444E8FA2,
)


class V3MathError(ArithmeticError):
    """The contract would revert here (overflow, out-of-range tick or price, bad limit)."""


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise V3MathError(reason)


# --- FullMath / UnsafeMath ---------------------------------------------------------------------


def mul_div(a: int, b: int, denominator: int) -> int:
    """floor(a * b / denominator) over the full 512-bit product; reverts if the result overflows."""
    _require(denominator > 0, "mulDiv: zero denominator")
    result = a * b // denominator
    _require(result <= MAX_UINT256, "mulDiv: overflow")
    return result


def mul_div_rounding_up(a: int, b: int, denominator: int) -> int:
    """ceil(a * b / denominator); reverts if the result overflows."""
    result = mul_div(a, b, denominator)
    if a * b % denominator:
        _require(result < MAX_UINT256, "mulDivRoundingUp: overflow")
        result += 1
    return result


def div_rounding_up(x: int, y: int) -> int:
    """UnsafeMath.divRoundingUp (callers guarantee y > 0)."""
    return x // y + (1 if x % y else 0)


def _to_uint160(x: int) -> int:
    _require(x <= MAX_UINT160, "SafeCast: uint160")
    return x


def _to_int256(x: int) -> int:
    _require(x <= MAX_INT256, "SafeCast: int256")
    return x


# --- BitMath / TickMath -------------------------------------------------------------------------


def most_significant_bit(x: int) -> int:
    _require(x > 0, "BitMath: zero")
    return x.bit_length() - 1


def least_significant_bit(x: int) -> int:
    _require(x > 0, "BitMath: zero")
    return (x & -x).bit_length() - 1


def get_sqrt_ratio_at_tick(tick: int) -> int:
    """sqrt(1.0001^tick) as a Q64.96, rounded up (TickMath.getSqrtRatioAtTick)."""
    abs_tick = abs(tick)
    _require(abs_tick <= MAX_TICK, "T")
    ratio = 0xFFFCB933BD6FAD37AA2D162D1A594001 if abs_tick & 1 else 1 << 128
    for bit, factor in enumerate(_TICK_RATIOS, start=1):
        if abs_tick & (1 << bit):
            ratio = (ratio * factor) >> 128
    if tick > 0:
        ratio = MAX_UINT256 // ratio
    return (ratio >> 32) + (0 if ratio % (1 << 32) == 0 else 1)


def get_tick_at_sqrt_ratio(sqrt_price_x96: int) -> int:
    """The greatest tick whose sqrt ratio is <= ``sqrt_price_x96`` (TickMath.getTickAtSqrtRatio)."""
    _require(MIN_SQRT_RATIO <= sqrt_price_x96 < MAX_SQRT_RATIO, "R")
    ratio = sqrt_price_x96 << 32
    # The assembly's binary search for the msb is floor(log2(ratio)).
    msb = ratio.bit_length() - 1
    r = ratio >> (msb - 127) if msb >= 128 else ratio << (127 - msb)
    # Two's-complement ``or`` and arithmetic shifts behave the same on Python's unbounded ints.
    log_2 = (msb - 128) << 64
    for shift in range(63, 49, -1):
        r = (r * r) >> 127
        f = r >> 128
        log_2 |= f << shift
        r >>= f
    log_sqrt10001 = log_2 * 255738958999603826347141
    tick_low = (log_sqrt10001 - 3402992956809132418596140100660247210) >> 128
    tick_high = (log_sqrt10001 + 291339464771989622907027621153398088495) >> 128
    if tick_low == tick_high:
        return tick_low
    return tick_high if get_sqrt_ratio_at_tick(tick_high) <= sqrt_price_x96 else tick_low


# --- SqrtPriceMath ------------------------------------------------------------------------------


def _next_sqrt_price_from_amount0_rounding_up(sqrt_px96: int, liquidity: int, amount: int, add: bool) -> int:
    if amount == 0:
        return sqrt_px96
    numerator1 = liquidity << 96
    product = amount * sqrt_px96
    if add:
        # The contract uses the precise formula only when neither the product nor the denominator
        # overflows 256 bits; otherwise it falls back to a formula that rounds differently.
        if product <= MAX_UINT256:
            denominator = numerator1 + product
            if denominator <= MAX_UINT256:
                return mul_div_rounding_up(numerator1, sqrt_px96, denominator)
        divisor = numerator1 // sqrt_px96 + amount
        _require(divisor <= MAX_UINT256, "LowGasSafeMath: add")
        return div_rounding_up(numerator1, divisor)
    _require(product <= MAX_UINT256 and numerator1 > product, "SqrtPriceMath: amount0 out")
    return _to_uint160(mul_div_rounding_up(numerator1, sqrt_px96, numerator1 - product))


def _next_sqrt_price_from_amount1_rounding_down(
    sqrt_px96: int, liquidity: int, amount: int, add: bool
) -> int:
    # ``amount << 96`` (when it fits) and ``mulDiv(amount, Q96, liquidity)`` are the same quotient.
    if add:
        next_price = sqrt_px96 + amount * Q96 // liquidity
        _require(next_price <= MAX_UINT256, "LowGasSafeMath: add")
        return _to_uint160(next_price)
    quotient = div_rounding_up(amount * Q96, liquidity)
    _require(quotient <= MAX_UINT256, "mulDivRoundingUp: overflow")
    _require(sqrt_px96 > quotient, "SqrtPriceMath: amount1 out")
    return sqrt_px96 - quotient


def get_next_sqrt_price_from_input(sqrt_px96: int, liquidity: int, amount_in: int, zero_for_one: bool) -> int:
    _require(sqrt_px96 > 0 and liquidity > 0, "SqrtPriceMath: zero price or liquidity")
    if zero_for_one:
        return _next_sqrt_price_from_amount0_rounding_up(sqrt_px96, liquidity, amount_in, True)
    return _next_sqrt_price_from_amount1_rounding_down(sqrt_px96, liquidity, amount_in, True)


def get_next_sqrt_price_from_output(
    sqrt_px96: int, liquidity: int, amount_out: int, zero_for_one: bool
) -> int:
    _require(sqrt_px96 > 0 and liquidity > 0, "SqrtPriceMath: zero price or liquidity")
    if zero_for_one:
        return _next_sqrt_price_from_amount1_rounding_down(sqrt_px96, liquidity, amount_out, False)
    return _next_sqrt_price_from_amount0_rounding_up(sqrt_px96, liquidity, amount_out, False)


def get_amount0_delta(sqrt_a: int, sqrt_b: int, liquidity: int, round_up: bool) -> int:
    """Token0 between two sqrt prices for ``liquidity``: L * (sqrtB - sqrtA) / (sqrtA * sqrtB)."""
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    numerator1 = liquidity << 96
    numerator2 = sqrt_b - sqrt_a
    _require(sqrt_a > 0, "SqrtPriceMath: zero price")
    if round_up:
        return div_rounding_up(mul_div_rounding_up(numerator1, numerator2, sqrt_b), sqrt_a)
    return mul_div(numerator1, numerator2, sqrt_b) // sqrt_a


def get_amount1_delta(sqrt_a: int, sqrt_b: int, liquidity: int, round_up: bool) -> int:
    """Token1 between two sqrt prices for ``liquidity``: L * (sqrtB - sqrtA)."""
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    if round_up:
        return mul_div_rounding_up(liquidity, sqrt_b - sqrt_a, Q96)
    return mul_div(liquidity, sqrt_b - sqrt_a, Q96)


# --- SwapMath -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SwapStep:
    sqrt_price_next_x96: int
    amount_in: int
    amount_out: int
    fee_amount: int


def compute_swap_step(
    sqrt_current: int, sqrt_target: int, liquidity: int, amount_remaining: int, fee_pips: int
) -> SwapStep:
    """One step within a single liquidity range (SwapMath.computeSwapStep); ``amount_remaining``
    is positive for exact input, negative for exact output."""
    zero_for_one = sqrt_current >= sqrt_target
    exact_in = amount_remaining >= 0
    amount_in = amount_out = 0
    if exact_in:
        remaining_less_fee = mul_div(amount_remaining, FEE_PIPS - fee_pips, FEE_PIPS)
        amount_in = (
            get_amount0_delta(sqrt_target, sqrt_current, liquidity, True)
            if zero_for_one
            else get_amount1_delta(sqrt_current, sqrt_target, liquidity, True)
        )
        if remaining_less_fee >= amount_in:
            sqrt_next = sqrt_target
        else:
            sqrt_next = get_next_sqrt_price_from_input(
                sqrt_current, liquidity, remaining_less_fee, zero_for_one
            )
    else:
        amount_out = (
            get_amount1_delta(sqrt_target, sqrt_current, liquidity, False)
            if zero_for_one
            else get_amount0_delta(sqrt_current, sqrt_target, liquidity, False)
        )
        if -amount_remaining >= amount_out:
            sqrt_next = sqrt_target
        else:
            sqrt_next = get_next_sqrt_price_from_output(
                sqrt_current, liquidity, -amount_remaining, zero_for_one
            )
    reached = sqrt_target == sqrt_next
    if zero_for_one:
        if not (reached and exact_in):
            amount_in = get_amount0_delta(sqrt_next, sqrt_current, liquidity, True)
        if not (reached and not exact_in):
            amount_out = get_amount1_delta(sqrt_next, sqrt_current, liquidity, False)
    else:
        if not (reached and exact_in):
            amount_in = get_amount1_delta(sqrt_current, sqrt_next, liquidity, True)
        if not (reached and not exact_in):
            amount_out = get_amount0_delta(sqrt_current, sqrt_next, liquidity, False)
    if not exact_in and amount_out > -amount_remaining:
        amount_out = -amount_remaining
    if exact_in and sqrt_next != sqrt_target:
        fee_amount = amount_remaining - amount_in
    else:
        fee_amount = mul_div_rounding_up(amount_in, fee_pips, FEE_PIPS - fee_pips)
    return SwapStep(sqrt_next, amount_in, amount_out, fee_amount)


# --- TickBitmap ---------------------------------------------------------------------------------


def next_initialized_tick_within_one_word(
    bitmap: Mapping[int, int], tick: int, tick_spacing: int, lte: bool
) -> tuple[int, bool]:
    """The next initialised tick in the same bitmap word as ``tick`` (left if ``lte``), or the
    word's last tick in that direction if none is (TickBitmap.nextInitializedTickWithinOneWord)."""
    compressed = tick // tick_spacing  # Solidity truncates, then rounds negatives down: a floor.
    if lte:
        word, bit = compressed >> 8, compressed & 0xFF
        masked = bitmap.get(word, 0) & ((1 << (bit + 1)) - 1)
        if masked:
            return (compressed - (bit - most_significant_bit(masked))) * tick_spacing, True
        return (compressed - bit) * tick_spacing, False
    word, bit = (compressed + 1) >> 8, (compressed + 1) & 0xFF
    masked = bitmap.get(word, 0) & ~((1 << bit) - 1)
    if masked:
        return (compressed + 1 + (least_significant_bit(masked) - bit)) * tick_spacing, True
    return (compressed + 1 + (255 - bit)) * tick_spacing, False


def flip_tick(bitmap: dict[int, int], tick: int, tick_spacing: int) -> None:
    """Toggle an initialised tick in a bitmap (TickBitmap.flipTick), for building pool states."""
    _require(tick % tick_spacing == 0, "TickBitmap: unspaced tick")
    compressed = tick // tick_spacing
    bitmap[compressed >> 8] = bitmap.get(compressed >> 8, 0) ^ (1 << (compressed & 0xFF))


def add_delta(x: int, y: int) -> int:
    """LiquidityMath.addDelta: uint128 plus int128, reverting on under/overflow."""
    z = x + y
    _require(0 <= z <= MAX_UINT128, "LS" if y < 0 else "LA")
    return z


# --- UniswapV3Pool.swap -------------------------------------------------------------------------


@dataclass(frozen=True)
class V3PoolState:
    """What ``UniswapV3Pool.swap`` reads: ``slot0`` price and tick, in-range liquidity, the fee
    (pips) and tick spacing, the tick bitmap (word -> bits) and ``liquidityNet`` of every
    initialised tick; and, for ``modify_position``, their ``liquidityGross``."""

    fee: int
    tick_spacing: int
    sqrt_price_x96: int
    tick: int
    liquidity: int
    bitmap: Mapping[int, int] = field(default_factory=dict)
    liquidity_net: Mapping[int, int] = field(default_factory=dict)
    # Only mints and burns need it (a tick is initialised while its gross liquidity is non-zero).
    liquidity_gross: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class V3SwapResult:
    """The pool's deltas (positive: paid in; negative: paid out) and its state after the swap."""

    amount0: int
    amount1: int
    sqrt_price_x96: int
    tick: int
    liquidity: int
    initialized_ticks_crossed: int

    def apply(self, state: V3PoolState) -> V3PoolState:
        """``state`` after this swap (the bitmap and ticks' liquidity do not change)."""
        return replace(state, sqrt_price_x96=self.sqrt_price_x96, tick=self.tick, liquidity=self.liquidity)


def default_price_limit(zero_for_one: bool) -> int:
    """The loosest limit the pool accepts: what the periphery passes for "no limit"."""
    return MIN_SQRT_RATIO + 1 if zero_for_one else MAX_SQRT_RATIO - 1


def swap(
    state: V3PoolState, zero_for_one: bool, amount_specified: int, sqrt_price_limit_x96: int | None = None
) -> V3SwapResult:
    """Simulate ``UniswapV3Pool.swap``: ``amount_specified`` > 0 is an exact input, < 0 an exact
    output; the swap stops at ``sqrt_price_limit_x96`` (default: no limit)."""
    limit = default_price_limit(zero_for_one) if sqrt_price_limit_x96 is None else sqrt_price_limit_x96
    _require(amount_specified != 0, "AS")
    if zero_for_one:
        _require(MIN_SQRT_RATIO < limit < state.sqrt_price_x96, "SPL")
    else:
        _require(state.sqrt_price_x96 < limit < MAX_SQRT_RATIO, "SPL")
    exact_input = amount_specified > 0
    remaining, calculated = amount_specified, 0
    sqrt_price, tick, liquidity, crossed = state.sqrt_price_x96, state.tick, state.liquidity, 0
    while remaining != 0 and sqrt_price != limit:
        sqrt_start = sqrt_price
        tick_next, initialized = next_initialized_tick_within_one_word(
            state.bitmap, tick, state.tick_spacing, zero_for_one
        )
        tick_next = min(max(tick_next, MIN_TICK), MAX_TICK)
        sqrt_next = get_sqrt_ratio_at_tick(tick_next)
        beyond_limit = sqrt_next < limit if zero_for_one else sqrt_next > limit
        step = compute_swap_step(
            sqrt_price, limit if beyond_limit else sqrt_next, liquidity, remaining, state.fee
        )
        sqrt_price = step.sqrt_price_next_x96
        if exact_input:
            remaining -= _to_int256(step.amount_in + step.fee_amount)
            calculated -= _to_int256(step.amount_out)
        else:
            remaining += _to_int256(step.amount_out)
            calculated += _to_int256(step.amount_in + step.fee_amount)
        if sqrt_price == sqrt_next:
            if initialized:
                net = state.liquidity_net.get(tick_next, 0)
                liquidity = add_delta(liquidity, -net if zero_for_one else net)
                crossed += 1
            tick = tick_next - 1 if zero_for_one else tick_next
        elif sqrt_price != sqrt_start:
            tick = get_tick_at_sqrt_ratio(sqrt_price)
    used = amount_specified - remaining
    amount0, amount1 = (used, calculated) if zero_for_one == exact_input else (calculated, used)
    return V3SwapResult(amount0, amount1, sqrt_price, tick, liquidity, crossed)


# --- UniswapV3Pool._modifyPosition (mint, burn) -------------------------------------------------


def max_liquidity_per_tick(tick_spacing: int) -> int:
    """Tick.tickSpacingToMaxLiquidityPerTick (the contract's division truncates toward zero)."""
    max_tick = MAX_TICK // tick_spacing * tick_spacing
    return MAX_UINT128 // ((2 * max_tick) // tick_spacing + 1)


def _signed_amount0(sqrt_a: int, sqrt_b: int, liquidity_delta: int) -> int:
    if liquidity_delta < 0:
        return -get_amount0_delta(sqrt_a, sqrt_b, -liquidity_delta, False)
    return get_amount0_delta(sqrt_a, sqrt_b, liquidity_delta, True)


def _signed_amount1(sqrt_a: int, sqrt_b: int, liquidity_delta: int) -> int:
    if liquidity_delta < 0:
        return -get_amount1_delta(sqrt_a, sqrt_b, -liquidity_delta, False)
    return get_amount1_delta(sqrt_a, sqrt_b, liquidity_delta, True)


@dataclass(frozen=True)
class PositionChange:
    """A mint (``liquidity_delta`` > 0) or burn: the pool's token deltas (positive: owed to the
    pool by the minter; negative: owed to the burner) and the pool's state after it."""

    amount0: int
    amount1: int
    state: V3PoolState


def modify_position(
    state: V3PoolState, tick_lower: int, tick_upper: int, liquidity_delta: int
) -> PositionChange:
    """UniswapV3Pool._modifyPosition: update both ticks (flipping them in the bitmap when their
    gross liquidity starts or stops being zero), the in-range liquidity, and the amounts."""
    _require(tick_lower < tick_upper, "TLU")
    _require(tick_lower >= MIN_TICK, "TLM")
    _require(tick_upper <= MAX_TICK, "TUM")
    bitmap, net, gross = dict(state.bitmap), dict(state.liquidity_net), dict(state.liquidity_gross)
    if liquidity_delta != 0:
        for tick, upper in ((tick_lower, False), (tick_upper, True)):
            before = gross.get(tick, 0)
            after = add_delta(before, liquidity_delta)
            _require(after <= max_liquidity_per_tick(state.tick_spacing), "LO")
            new_net = net.get(tick, 0) + (-liquidity_delta if upper else liquidity_delta)
            _require(-(1 << 127) <= new_net < 1 << 127, "SafeCast: int128")
            if (after == 0) != (before == 0):
                flip_tick(bitmap, tick, state.tick_spacing)
            if after == 0:
                gross.pop(tick, None)
                net.pop(tick, None)
            else:
                gross[tick], net[tick] = after, new_net
    sqrt_lower, sqrt_upper = get_sqrt_ratio_at_tick(tick_lower), get_sqrt_ratio_at_tick(tick_upper)
    amount0 = amount1 = 0
    liquidity = state.liquidity
    if liquidity_delta != 0:
        if state.tick < tick_lower:
            amount0 = _signed_amount0(sqrt_lower, sqrt_upper, liquidity_delta)
        elif state.tick < tick_upper:
            amount0 = _signed_amount0(state.sqrt_price_x96, sqrt_upper, liquidity_delta)
            amount1 = _signed_amount1(sqrt_lower, state.sqrt_price_x96, liquidity_delta)
            liquidity = add_delta(liquidity, liquidity_delta)
        else:
            amount1 = _signed_amount1(sqrt_lower, sqrt_upper, liquidity_delta)
    bitmap = {word: bits for word, bits in bitmap.items() if bits}
    after_state = replace(state, liquidity=liquidity, bitmap=bitmap, liquidity_net=net, liquidity_gross=gross)
    return PositionChange(amount0, amount1, after_state)
