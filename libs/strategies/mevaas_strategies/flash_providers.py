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
- `uniswap_v3` (`executeFlashV3`): the cheapest configured V3 pool (`ChainMarket.flash_lenders`)
  with in-range liquidity that holds the cycle's input and is none of its hops lends it through
  `flash` and is repaid `FullMath.mulDivRoundingUp(amount, fee, 1e6)` on top; ties go to the lower
  address.
- `balancer_v2` (`executeFlashBalancer`): the configured vault lends it through `flashLoan` and is
  repaid `amount.mulUp(flashLoanFeePercentage)` (FixedPoint: a fraction of 1e18, rounded up) on
  top; it cannot lend more than its balance of the token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from mevaas_chain.flash_lenders import FlashLender
from mevaas_chain.lending.math import percent_mul
from mevaas_strategies.actions import Hop
from mevaas_strategies.market import ChainMarket

# executeFlash's pair callback and its re-decoding of the route.
V2_FLASH_SWAP_GAS = 40_000
# flashLoanSimple: the loan's transfers, the callback, the premium's accounting. On the devnet the
# same 2-hop V2 cycle took 283k gas through it against 223k through the flash swap: 60k over 40k.
AAVE_FLASH_LOAN_GAS = 100_000
# pool.flash and vault.flashLoan, from the devnet: a 2-hop V2 cycle took 223k gas through the flash
# swap, 198k through a V3 pool's flash (the genuine-pool check, the loan's transfers, the callback)
# and 213k through the vault (the balance checks, the fee to the collector): about 15k (taken as
# 20k) and 30k where the flash swap costs 40k.
V3_FLASH_GAS = 20_000
BALANCER_FLASH_LOAN_GAS = 30_000
V3_FEE_UNIT = 10**6
BALANCER_FEE_UNIT = 10**18
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
    # The contract that lends, when the entry point takes it (a V3 pool); "" otherwise.
    lender: str = ""


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


def _lenders(market: ChainMarket, kind: str) -> list[FlashLender]:
    return [lender for lender in market.flash_lenders if lender.kind == kind]


def _mul_div_rounding_up(a: int, b: int, denominator: int) -> int:
    return -(-a * b // denominator)


@register_flash_provider
class UniswapV3Flash:
    name: ClassVar[str] = "uniswap_v3"

    def quote(self, market: ChainMarket, hops: Sequence[Hop]) -> FlashQuote | FlashSkip:
        token, amount = hops[0].token_in, hops[0].amount_in
        pools = _lenders(market, self.name)
        if not pools:
            return FlashSkip(self.name, f"no Uniswap V3 flash pool configured on chain {market.chain_id}")
        # A pool the cycle swaps through is locked while it lends.
        on_route = {h.pool.lower() for h in hops}
        able = [
            p
            for p in pools
            if p.active and p.address.lower() not in on_route and p.balances.get(token, 0) >= amount
        ]
        if not able:
            held = max((p.balances.get(token, 0) for p in pools), default=0)
            return FlashSkip(
                self.name, f"no active V3 flash pool off the route holds {amount} of {token} (most: {held})"
            )
        pool = min(able, key=lambda p: (p.fee, p.address.lower()))
        fee = _mul_div_rounding_up(amount, pool.fee, V3_FEE_UNIT)
        return FlashQuote(self.name, token, amount, fee, V3_FLASH_GAS, pool.address)


@register_flash_provider
class BalancerV2FlashLoan:
    name: ClassVar[str] = "balancer_v2"

    def quote(self, market: ChainMarket, hops: Sequence[Hop]) -> FlashQuote | FlashSkip:
        token, amount = hops[0].token_in, hops[0].amount_in
        vaults = _lenders(market, self.name)
        if not vaults:
            return FlashSkip(self.name, f"no Balancer V2 vault configured on chain {market.chain_id}")
        # The executor borrows from the one vault it is configured with.
        (vault,) = vaults[:1]
        held = vault.balances.get(token, 0)
        if held < amount:
            return FlashSkip(self.name, f"vault {vault.address} holds {held} of {token}, not {amount}")
        # FixedPoint.mulUp: 0 for a zero product, else ((product - 1) / ONE) + 1.
        product = amount * vault.fee
        fee = 0 if product == 0 else (product - 1) // BALANCER_FEE_UNIT + 1
        return FlashQuote(self.name, token, amount, fee, BALANCER_FLASH_LOAN_GAS, vault.address)
