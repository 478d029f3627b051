"""Order fills decoded as swaps: 0x Exchange Proxy limit and RFQ orders, 1inch limit and RFQ
orders. A fill is a trade between a taker and a maker: the taker pays the order's taker token to
the maker, and the maker pays its maker token to the taker (or the recipient a self-call names).
Both legs must be found among the fill call's transfers; the swap is the taker's, at the exchange
contract, with the amounts that actually moved (not the order's limits)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mevaas_inspector import abi
from mevaas_inspector.models import Trace, Transfer


@dataclass(frozen=True, slots=True)
class Fill:
    """Who trades what in one fill call (maker '' when the call does not say: 1inch v1 orders
    name it only in their asset data)."""

    maker_token: str
    taker_token: str
    maker: str
    taker: str
    recipient: str


@dataclass(frozen=True, slots=True)
class OrderKind:
    protocol: str
    abi_name: str
    read: Callable[[Trace], Fill | None]


def _static(
    words: int, maker_token: int, taker_token: int, maker: int, taker: int | None, recipient: int | None
) -> Callable[[Trace], Fill | None]:
    """A fill whose order is a static tuple inline in the calldata: the fields by word index;
    taker / recipient None = the caller."""

    def read(trace: Trace) -> Fill | None:
        data = trace.input
        if not abi.has_words(data, words):
            return None
        taker_address = abi.address(data, taker) if taker is not None else trace.from_address
        return Fill(
            maker_token=abi.address(data, maker_token),
            taker_token=abi.address(data, taker_token),
            maker=abi.address(data, maker),
            taker=taker_address,
            recipient=abi.address(data, recipient) if recipient is not None else taker_address,
        )

    return read


def _oneinch_order(trace: Trace) -> Fill | None:
    maker_token = abi.tuple_address(trace.input, 0, 1)
    taker_token = abi.tuple_address(trace.input, 0, 2)
    if maker_token is None or taker_token is None:
        return None
    return Fill(maker_token, taker_token, "", trace.from_address, trace.from_address)


_ZEROX = ("zero_ex", "INativeOrdersFeature")
_ONEINCH = ("one_inch", "1inchLimitOrderProtocol")
# Limit order: makerToken 0, takerToken 1, maker 5 (12 words) + signature 4 + fill amount 1.
_LIMIT = _static(17, 0, 1, 5, None, None)
# RFQ order: makerToken 0, takerToken 1, maker 4 (10 words) + signature 4 + fill amount 1.
_RFQ = _static(15, 0, 1, 4, None, None)
ORDER_FILLS: dict[str, OrderKind] = {
    abi.ZEROX_FILL_LIMIT_ORDER: OrderKind(*_ZEROX, _LIMIT),
    abi.ZEROX_FILL_OR_KILL_LIMIT_ORDER: OrderKind(*_ZEROX, _LIMIT),
    # ..., takerTokenFillAmount, taker (word 17), sender.
    abi.ZEROX_FILL_LIMIT_ORDER_SELF: OrderKind(*_ZEROX, _static(19, 0, 1, 5, 17, None)),
    abi.ZEROX_FILL_RFQ_ORDER: OrderKind(*_ZEROX, _RFQ),
    abi.ZEROX_FILL_OR_KILL_RFQ_ORDER: OrderKind(*_ZEROX, _RFQ),
    # ..., takerTokenFillAmount, taker (word 15), useSelfBalance, recipient (word 17).
    abi.ZEROX_FILL_RFQ_ORDER_SELF: OrderKind(*_ZEROX, _static(18, 0, 1, 4, 15, 17)),
    abi.ONEINCH_FILL_ORDER: OrderKind(*_ONEINCH, _oneinch_order),
    # (info, makerAsset 1, takerAsset 2, maker 3, allowedSender, makingAmount, takingAmount).
    abi.ONEINCH_FILL_ORDER_RFQ: OrderKind(*_ONEINCH, _static(7, 1, 2, 3, None, None)),
}


def _leg(transfers: list[Transfer], token: str, sender: str, to: str) -> Transfer | None:
    for t in transfers:
        if (
            t.token_address == token
            and (not sender or t.from_address == sender)
            and (not to or t.to_address == to)
            and t.from_address != t.to_address
        ):
            return t
    return None


def fill_legs(kind: OrderKind, trace: Trace, children: list[Transfer]) -> tuple[Transfer, Transfer] | None:
    """(what the taker paid the maker, what the maker paid the taker or recipient) among the fill
    call's transfers, or None if either is missing."""
    fill = kind.read(trace)
    if fill is None:
        return None
    paid = _leg(children, fill.taker_token, fill.taker, fill.maker)
    got = _leg(children, fill.maker_token, fill.maker, fill.recipient)
    return (paid, got) if paid is not None and got is not None else None
