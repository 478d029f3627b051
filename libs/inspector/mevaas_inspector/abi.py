"""Just enough ABI decoding for static arguments, read straight from the hex calldata string.

Slicing the lowercase hex is several times faster than a general decoder for the handful of
fixed-size words the classifiers need; dynamic arguments are never read."""

from __future__ import annotations

WORD_HEX = 64
SELECTOR_END = 10  # "0x" + 8 hex digits

TRANSFER = "0xa9059cbb"
TRANSFER_FROM = "0x23b872dd"
WETH_DEPOSIT = "0xd0e30db0"
WETH_WITHDRAW = "0x2e1a7d4d"
UNIV2_SWAP = "0x022c0d9f"
UNIV3_SWAP = "0x128acb08"
BALANCER_SWAP_IN = "0x8201aa3f"
BALANCER_SWAP_OUT = "0x7c5e9ea4"
CURVE_EXCHANGE = "0x3df02124"
CURVE_EXCHANGE_UNDERLYING = "0xa6417ed6"
CURVE_EXCHANGE_U256 = "0x5b41b908"
CURVE_EXCHANGE_UNDERLYING_U256 = "0x65b2489b"
BANCOR_CONVERT_BY_PATH = "0xb77d239b"
ZEROX_TRANSFORM_ERC20 = "0x415565b0"
ZEROX_SELL_TO_UNISWAP = "0xd9627aa4"
ZEROX_SELL_TOKEN_FOR_TOKEN_V3 = "0x6af479b2"
ZEROX_SELL_TOKEN_FOR_ETH_V3 = "0x803ba26d"
ZEROX_SELL_ETH_FOR_TOKEN_V3 = "0x3598d8ab"
# Mooniswap / 1inch Liquidity Protocol pools: swap(src, dst, amount, minReturn, referral) and
# swapFor(..., receiver); src or dst 0 is ether.
MOONISWAP_SWAP = "0xd5bcb9b5"
MOONISWAP_SWAP_FOR = "0xe331d039"
# 0x Exchange Proxy native orders (INativeOrdersFeature): LimitOrder is 12 static words, RfqOrder
# 10, the signature 4; the underscored forms are the proxy's self-calls (batch fills, multiplex,
# meta-transactions) naming the taker.
ZEROX_FILL_LIMIT_ORDER = "0xf6274f66"
ZEROX_FILL_OR_KILL_LIMIT_ORDER = "0x9240529c"
ZEROX_FILL_LIMIT_ORDER_SELF = "0x414e4ccf"
ZEROX_FILL_RFQ_ORDER = "0xaa77476c"
ZEROX_FILL_OR_KILL_RFQ_ORDER = "0x438cdfc5"
ZEROX_FILL_RFQ_ORDER_SELF = "0xaa6b21cd"
# 1inch limit order protocol: fillOrder((salt, makerAsset, takerAsset, bytes x7), signature,
# makingAmount, takingAmount, thresholdAmount) and fillOrderRFQ((info, makerAsset, takerAsset,
# maker, allowedSender, makingAmount, takingAmount), signature, makingAmount, takingAmount).
ONEINCH_FILL_ORDER = "0xf3432b1a"
ONEINCH_FILL_ORDER_RFQ = "0xd0a3b665"
AAVE_LIQUIDATION_CALL = "0x00a718a9"
# AToken.transferOnLiquidation(address,address,uint256): collateral paid as aTokens.
AAVE_TRANSFER_ON_LIQUIDATION = "0xf866c319"
COMPOUND_LIQUIDATE_ETH = "0xaae40a2a"
COMPOUND_LIQUIDATE = "0xf5e3c462"
COMPOUND_SEIZE = "0xb2a02ff1"
AAVE_V2_FLASH_LOAN = "0xab9c4b5d"
ERC3156_FLASH_LOAN = "0x5cffe9de"
AAVE_V3_FLASH_LOAN_SIMPLE = "0x42b0b77c"
BALANCER_FLASH_LOAN = "0x5c38449e"
UNIV3_FLASH = "0x490e6cbc"


def selector(data: str) -> str:
    return data[:SELECTOR_END]


def has_words(data: str, count: int) -> bool:
    return len(data) >= SELECTOR_END + count * WORD_HEX


def word(data: str, index: int) -> int:
    start = SELECTOR_END + index * WORD_HEX
    return int(data[start : start + WORD_HEX], 16)


def address(data: str, index: int) -> str:
    start = SELECTOR_END + index * WORD_HEX
    return "0x" + data[start + 24 : start + WORD_HEX]


def tuple_address(data: str, index: int, field: int) -> str | None:
    """Address `field` of a dynamic tuple whose head (its offset) sits at word `index` (None when
    malformed)."""
    offset = word(data, index)
    if offset % 32 or not has_words(data, offset // 32 + field + 1):
        return None
    return address(data, offset // 32 + field)


def dynamic_bytes_length(data: str, index: int) -> int:
    """Length of a `bytes` argument whose head sits at word `index` (0 when malformed)."""
    offset = word(data, index)
    start = SELECTOR_END + (offset // 32) * WORD_HEX
    if offset % 32 or len(data) < start + WORD_HEX:
        return 0
    return int(data[start : start + WORD_HEX], 16)
