"""Uniswap V3 pools on chain: calldata for the pool, QuoterV2 and SwapRouter, the Swap event, and a
reader that turns a pool's storage into the ``V3PoolState`` the exact swap math runs on.

The reader takes every value at one block number, so slot0, liquidity, the bitmap and the ticks are
one consistent snapshot even while blocks keep coming.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from mevaas_chain import abi
from mevaas_chain.amm.v3 import MAX_TICK, MIN_TICK, V3PoolState, modify_position
from mevaas_chain.client import Call, ChainClient

V3_SWAP_TOPIC = "0x" + keccak(text="Swap(address,address,int256,int256,uint160,uint128,int24)").hex()

SLOT0 = abi.encode_call("slot0()")
LIQUIDITY = abi.encode_call("liquidity()")
FEE = abi.encode_call("fee()")
TICK_SPACING = abi.encode_call("tickSpacing()")

_SLOT0_TYPES = ("uint160", "int24", "uint16", "uint16", "uint16", "uint8", "bool")
_TICK_TYPES = ("uint128", "int128", "uint256", "uint256", "int56", "uint160", "uint32", "bool")
_QUOTE_SINGLE = "(address,address,uint256,uint24,uint160)"
_ROUTER_SINGLE = "(address,address,uint24,address,uint256,uint256,uint256,uint160)"


def _tuple_call(name: str, tuple_type: str, values: Sequence[Any]) -> bytes:
    return abi.selector(f"{name}({tuple_type})") + encode([tuple_type], [tuple(values)])


def tick_bitmap(word: int) -> bytes:
    return abi.encode_call("tickBitmap(int16)", word)


def ticks(tick: int) -> bytes:
    return abi.encode_call("ticks(int24)", tick)


def get_pool(token_a: str, token_b: str, fee: int) -> bytes:
    """``UniswapV3Factory.getPool`` calldata."""
    return abi.encode_call("getPool(address,address,uint24)", token_a, token_b, fee)


@dataclass(frozen=True)
class Quote:
    """QuoterV2's answer: the computed amount (out for exact input, in for exact output), the
    price after the swap and the initialised ticks crossed (counted the quoter's way)."""

    amount: int
    sqrt_price_x96_after: int
    initialized_ticks_crossed: int


def quote_exact_input_single(
    token_in: str, token_out: str, fee: int, amount_in: int, limit: int = 0
) -> bytes:
    """QuoterV2 calldata; ``limit`` 0 means none."""
    return _tuple_call("quoteExactInputSingle", _QUOTE_SINGLE, (token_in, token_out, amount_in, fee, limit))


def quote_exact_output_single(
    token_in: str, token_out: str, fee: int, amount_out: int, limit: int = 0
) -> bytes:
    """QuoterV2 calldata; with ``limit`` 0 the quoter reverts unless the whole output is filled."""
    return _tuple_call("quoteExactOutputSingle", _QUOTE_SINGLE, (token_in, token_out, amount_out, fee, limit))


def decode_quote(data: bytes) -> Quote:
    amount, sqrt_after, crossed, _gas = decode(["uint256", "uint160", "uint32", "uint256"], data)
    return Quote(amount, sqrt_after, crossed)


def exact_input_single(
    token_in: str, token_out: str, fee: int, recipient: str, amount_in: int, *, limit: int = 0, deadline: int
) -> bytes:
    """SwapRouter calldata (no minimum out: callers compare against their own prediction)."""
    return _tuple_call(
        "exactInputSingle",
        _ROUTER_SINGLE,
        (token_in, token_out, fee, recipient, deadline, amount_in, 0, limit),
    )


def exact_output_single(
    token_in: str, token_out: str, fee: int, recipient: str, amount_out: int, *, limit: int = 0, deadline: int
) -> bytes:
    """SwapRouter calldata (no maximum in: callers compare against their own prediction)."""
    max_in = (1 << 256) - 1
    return _tuple_call(
        "exactOutputSingle",
        _ROUTER_SINGLE,
        (token_in, token_out, fee, recipient, deadline, amount_out, max_in, limit),
    )


@dataclass(frozen=True)
class V3SwapEvent:
    pool: str
    amount0: int
    amount1: int
    sqrt_price_x96: int
    liquidity: int
    tick: int


def decode_swap_log(log: dict[str, Any]) -> V3SwapEvent | None:
    """A receipt or ``eth_getLogs`` entry as a V3 ``Swap``; ``None`` for any other event."""
    topics = log.get("topics") or []
    if not topics or topics[0] != V3_SWAP_TOPIC:
        return None
    data = bytes.fromhex(log["data"].removeprefix("0x"))
    amount0, amount1, sqrt_price, liquidity, tick = decode(
        ["int256", "int256", "uint160", "uint128", "int24"], data
    )
    return V3SwapEvent(to_checksum_address(log["address"]), amount0, amount1, sqrt_price, liquidity, tick)


V3_MINT_TOPIC = "0x" + keccak(text="Mint(address,address,int24,int24,uint128,uint256,uint256)").hex()
V3_BURN_TOPIC = "0x" + keccak(text="Burn(address,int24,int24,uint128,uint256,uint256)").hex()


@dataclass(frozen=True)
class V3PositionEvent:
    """A ``Mint`` (``liquidity_delta`` > 0) or ``Burn`` (< 0) with the token amounts it moved."""

    pool: str
    tick_lower: int
    tick_upper: int
    liquidity_delta: int
    amount0: int
    amount1: int


def _int24_topic(topic: str) -> int:
    value: int = decode(["int24"], bytes.fromhex(topic.removeprefix("0x")))[0]
    return value


def decode_position_log(log: dict[str, Any]) -> V3PositionEvent | None:
    """A receipt or ``eth_getLogs`` entry as a V3 ``Mint`` or ``Burn``; ``None`` for any other."""
    topics = log.get("topics") or []
    if not topics or topics[0] not in (V3_MINT_TOPIC, V3_BURN_TOPIC):
        return None
    data = bytes.fromhex(log["data"].removeprefix("0x"))
    lower, upper = _int24_topic(topics[2]), _int24_topic(topics[3])
    if topics[0] == V3_MINT_TOPIC:
        _sender, amount, amount0, amount1 = decode(["address", "uint128", "uint256", "uint256"], data)
        return V3PositionEvent(to_checksum_address(log["address"]), lower, upper, amount, amount0, amount1)
    amount, amount0, amount1 = decode(["uint128", "uint256", "uint256"], data)
    return V3PositionEvent(to_checksum_address(log["address"]), lower, upper, -amount, amount0, amount1)


def bitmap_words(tick_spacing: int) -> range:
    """Every bitmap word a pool with this spacing can use."""
    return range((MIN_TICK // tick_spacing) >> 8, ((MAX_TICK // tick_spacing) >> 8) + 1)


def initialized_ticks(bitmap: dict[int, int], tick_spacing: int) -> list[int]:
    """The ticks whose bits are set, in ascending order."""
    found: list[int] = []
    for word in sorted(bitmap):
        bits = bitmap[word]
        while bits:
            low = bits & -bits
            found.append(((word << 8) + low.bit_length() - 1) * tick_spacing)
            bits ^= low
    return found


class PoolReadError(RuntimeError):
    pass


def _require(result: bytes | None, what: str, pool: str) -> bytes:
    if result is None:
        raise PoolReadError(f"{what} reverted on {pool}")
    return result


async def read_pool_state(client: ChainClient, pool: str, block: int | None = None) -> V3PoolState:
    """Snapshot of ``pool`` at ``block`` (default: the head when called): slot0, liquidity, fee,
    spacing, the whole tick bitmap and ``liquidityNet``/``liquidityGross`` of each initialised
    tick (three batched round trips)."""
    at = block if block is not None else await client.block_number()
    head = await client.batch_call([Call(pool, c) for c in (SLOT0, LIQUIDITY, FEE, TICK_SPACING)], at)
    slot0 = decode(list(_SLOT0_TYPES), _require(head[0], "slot0", pool))
    liquidity = abi.decode_uint(_require(head[1], "liquidity", pool))
    fee = abi.decode_uint(_require(head[2], "fee", pool))
    (spacing,) = decode(["int24"], _require(head[3], "tickSpacing", pool))
    words = bitmap_words(spacing)
    replies = await client.batch_call([Call(pool, tick_bitmap(w)) for w in words], at)
    bitmap = {
        w: abi.decode_uint(_require(r, "tickBitmap", pool)) for w, r in zip(words, replies, strict=True)
    }
    bitmap = {w: bits for w, bits in bitmap.items() if bits}
    initialized = initialized_ticks(bitmap, spacing)
    tick_replies = (
        await client.batch_call([Call(pool, ticks(t)) for t in initialized], at) if initialized else []
    )
    tick_info = {
        t: decode(list(_TICK_TYPES), _require(r, "ticks", pool))
        for t, r in zip(initialized, tick_replies, strict=True)
    }
    return V3PoolState(
        fee=fee,
        tick_spacing=spacing,
        sqrt_price_x96=slot0[0],
        tick=slot0[1],
        liquidity=liquidity,
        bitmap=bitmap,
        liquidity_net={t: info[1] for t, info in tick_info.items()},
        liquidity_gross={t: info[0] for t, info in tick_info.items()},
    )


V3_POOL_CREATED_TOPIC = "0x" + keccak(text="PoolCreated(address,address,uint24,int24,address)").hex()
V3_INITIALIZE_TOPIC = "0x" + keccak(text="Initialize(uint160,int24)").hex()


@dataclass(frozen=True)
class V3PoolCreated:
    factory: str
    pool: str
    token0: str
    token1: str
    fee: int
    tick_spacing: int

    def empty_state(self) -> V3PoolState:
        """The pool as created: no price until ``initialize``, no liquidity, no ticks."""
        return V3PoolState(
            fee=self.fee, tick_spacing=self.tick_spacing, sqrt_price_x96=0, tick=0, liquidity=0
        )


def decode_pool_created_log(log: dict[str, Any]) -> V3PoolCreated | None:
    """A factory's ``PoolCreated`` entry; ``None`` for any other event."""
    topics = log.get("topics") or []
    if not topics or topics[0] != V3_POOL_CREATED_TOPIC:
        return None
    spacing, pool = decode(["int24", "address"], bytes.fromhex(log["data"].removeprefix("0x")))
    token0 = to_checksum_address(bytes.fromhex(topics[1].removeprefix("0x"))[12:])
    token1 = to_checksum_address(bytes.fromhex(topics[2].removeprefix("0x"))[12:])
    fee = int(topics[3], 16)
    return V3PoolCreated(
        to_checksum_address(log["address"]), to_checksum_address(pool), token0, token1, fee, spacing
    )


def _after_swap(state: V3PoolState, log: dict[str, Any]) -> V3PoolState:
    # The event carries the price, tick and liquidity the swap left.
    event = decode_swap_log(log)
    assert event is not None
    return replace(state, sqrt_price_x96=event.sqrt_price_x96, tick=event.tick, liquidity=event.liquidity)


def _after_position_change(state: V3PoolState, log: dict[str, Any]) -> V3PoolState:
    change = decode_position_log(log)
    assert change is not None
    return modify_position(state, change.tick_lower, change.tick_upper, change.liquidity_delta).state


def _after_initialize(state: V3PoolState, log: dict[str, Any]) -> V3PoolState:
    sqrt_price, tick = decode(["uint160", "int24"], bytes.fromhex(log["data"].removeprefix("0x")))
    return replace(state, sqrt_price_x96=sqrt_price, tick=tick)


# Every pool event that changes what the swap math reads (price, tick, liquidity, ticks), by topic.
_STATE_EVENTS: dict[str, Callable[[V3PoolState, dict[str, Any]], V3PoolState]] = {
    V3_SWAP_TOPIC: _after_swap,
    V3_MINT_TOPIC: _after_position_change,
    V3_BURN_TOPIC: _after_position_change,
    V3_INITIALIZE_TOPIC: _after_initialize,
}
V3_STATE_TOPICS = tuple(_STATE_EVENTS)


def apply_state_log(state: V3PoolState, log: dict[str, Any]) -> V3PoolState:
    """``state`` after one of the pool's own logs (``Mint``/``Burn`` replayed through
    ``modify_position``); any event that does not change the swap math's inputs leaves it as is."""
    apply = _STATE_EVENTS.get((log.get("topics") or [""])[0])
    return state if apply is None else apply(state, log)
