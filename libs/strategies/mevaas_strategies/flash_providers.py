"""Who lends a flash arbitrage its input, and at what cost: one `FlashProvider` per way the executor
contract can borrow (a registry, so a new lender is one class), each quoting the fee it charges
for a cycle's borrow in the borrowed token's base units, exactly as the contract pays it, plus the
extra gas its callback costs; or saying why it cannot lend.

`choose` takes the cheapest quote, fee plus that gas priced in the cycle's token, both exact
integers, and reports every provider it skipped with the reason.

- `uniswap_v2` (`executeFlash`): the cycle's first pair sends its output before it is paid and is
  repaid the cycle's input in the first hop's token, so it charges nothing beyond the swap fee the
  cycle pays anyway; it cannot lend what its reserve does not hold.
- `aave_v3` (`executeFlashLoan`): the pool's flashLoanSimple lends the cycle's input and pulls back
  `amount.percentMul(FLASHLOAN_PREMIUM_TOTAL)` on top, the premium as the lending index read it on
  chain; it cannot lend a token that is no active, unpaused reserve with flash loans enabled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from mevaas_chain.lending.math import percent_mul
from mevaas_strategies.actions import Hop
from mevaas_strategies.market import ChainMarket

# executeFlash's pair callback and its re-decoding of the route.
V2_FLASH_SWAP_GAS = 40_000
# flashLoanSimple: the loan's transfers, the callback, the premium's accounting.
AAVE_FLASH_LOAN_GAS = 80_000
# ReserveConfiguration's FLASHLOAN_ENABLED bit (Aave V3.0.1+).
_FLASHLOAN_ENABLED_BIT = 63


@dataclass(frozen=True, slots=True)
class FlashQuote:
    provider: str
    # What the provider lends: token address and base units.
    token: str
    amount: int
    # Charged on top of the loan, base units of the cycle's input token.
    fee: int
    # Gas beyond the cycle's swaps and the call's overhead.
    gas: int


@dataclass(frozen=True, slots=True)
class FlashSkip:
    provider: str
    reason: str


class FlashProvider(Protocol):
    name: ClassVar[str]

    def quote(self, market: ChainMarket, hops: Sequence[Hop]) -> FlashQuote | FlashSkip:
        """What lending the cycle ``hops`` (sized: amounts filled in) costs on ``market``."""
        ...


FLASH_PROVIDERS: dict[str, FlashProvider] = {}


def register_flash_provider(cls: type[FlashProvider]) -> type[FlashProvider]:
    FLASH_PROVIDERS[cls.name] = cls()
    return cls


@dataclass(frozen=True, slots=True)
class FlashChoice:
    quote: FlashQuote | None
    skipped: tuple[FlashSkip, ...]


def choose(
    market: ChainMarket,
    hops: Sequence[Hop],
    gas_cost: Callable[[int], int | None],
    providers: Sequence[str] | None = None,
) -> FlashChoice:
    """The cheapest provider of ``providers`` (default: every registered one) for the cycle: least
    fee + ``gas_cost(gas)`` (the provider's extra gas in the cycle's token), ties to the name."""
    quotes: list[tuple[int, str, FlashQuote]] = []
    skipped: list[FlashSkip] = []
    for name in sorted(FLASH_PROVIDERS) if providers is None else providers:
        provider = FLASH_PROVIDERS.get(name)
        if provider is None:
            skipped.append(FlashSkip(name, "no such flash provider"))
            continue
        answer = provider.quote(market, hops)
        if isinstance(answer, FlashSkip):
            skipped.append(answer)
            continue
        gas = gas_cost(answer.gas)
        if gas is None:
            skipped.append(FlashSkip(name, "no price of gas in the cycle's token"))
            continue
        quotes.append((answer.fee + gas, name, answer))
    best = min(quotes, key=lambda q: (q[0], q[1]), default=None)
    return FlashChoice(best[2] if best else None, tuple(skipped))


@register_flash_provider
class UniswapV2FlashSwap:
    name: ClassVar[str] = "uniswap_v2"

    def quote(self, market: ChainMarket, hops: Sequence[Hop]) -> FlashQuote | FlashSkip:
        first = hops[0]
        pool = market.pools.get(first.pool)
        if pool is None:
            return FlashSkip(self.name, f"pool {first.pool} is not indexed")
        _reserve_in, reserve_out = pool.reserves_for(first.token_in)
        if first.amount_out >= reserve_out:
            return FlashSkip(
                self.name,
                f"pair {first.pool} holds {reserve_out} of {first.token_out}, not {first.amount_out}",
            )
        return FlashQuote(self.name, first.token_out, first.amount_out, 0, V2_FLASH_SWAP_GAS)


@register_flash_provider
class AaveV3FlashLoan:
    name: ClassVar[str] = "aave_v3"

    def quote(self, market: ChainMarket, hops: Sequence[Hop]) -> FlashQuote | FlashSkip:
        lending = market.lending
        if lending is None or lending.protocol != "aave_v3":
            return FlashSkip(self.name, f"no Aave V3 market indexed on chain {market.chain_id}")
        if lending.flash_loan_premium is None:
            return FlashSkip(self.name, "the pool's flash-loan premium is not known")
        token, amount = hops[0].token_in, hops[0].amount_in
        reserve = lending.reserves.get(token)
        if reserve is None:
            return FlashSkip(self.name, f"{token} is not a reserve of pool {lending.pool}")
        params = reserve.params
        if not params.active or params.paused:
            return FlashSkip(self.name, f"reserve {token} is {'paused' if params.paused else 'inactive'}")
        if not (reserve.configuration >> _FLASHLOAN_ENABLED_BIT) & 1:
            return FlashSkip(self.name, f"flash loans of {token} are disabled")
        return FlashQuote(
            self.name, token, amount, percent_mul(amount, lending.flash_loan_premium), AAVE_FLASH_LOAN_GAS
        )
