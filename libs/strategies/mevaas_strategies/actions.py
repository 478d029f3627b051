"""Typed actions: what a candidate asks execution to do, one class per `Opportunity.action` kind.

A plugin returns candidates carrying one of these; `opportunity.py` writes it into the
Opportunity's ``oneof action`` with `write`, so no consumer ever guesses a kind from a message's
shape. Each action names the pools it moves (`pools`, used to publish only trades that can all
land on one block) and a stable `key` (part of the deterministic opportunity id).

A new action kind is one proto message in events.v1's ``oneof action`` and one class here
implementing `Action`; execution registers an executor for it, risk one facts case.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Protocol

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2

# A liquidation's financing, by name (Liquidation.financing) -> the proto enum.
LIQUIDATION_FINANCING = {
    "inventory": events_pb2.FINANCING_INVENTORY,
    "flash_loan": events_pb2.FINANCING_FLASH_LOAN,
    "flash_swap": events_pb2.FINANCING_FLASH_SWAP,
}


class PoolKind(Enum):
    """What a hop swaps on: how the executor pays the pool and computes its output."""

    UNISWAP_V2 = "uniswap_v2"
    UNISWAP_V3 = "uniswap_v3"


POOL_KIND_PROTO = {
    PoolKind.UNISWAP_V2: events_pb2.POOL_KIND_UNISWAP_V2,
    PoolKind.UNISWAP_V3: events_pb2.POOL_KIND_UNISWAP_V3,
}


@dataclass(frozen=True, slots=True)
class Hop:
    chain_id: int
    pool: str
    dex: str
    token_in: str
    token_out: str
    amount_in: int
    amount_out: int
    # V2 pairs only (a V3 pool charges its own fee).
    fee_bps: int
    pool_kind: PoolKind = PoolKind.UNISWAP_V2

    def to_proto(self) -> events_pb2.RouteHop:
        return events_pb2.RouteHop(
            chain_id=self.chain_id,
            pool=self.pool,
            token_in=self.token_in,
            token_out=self.token_out,
            dex=self.dex,
            amount_in=str(self.amount_in),
            amount_out=str(self.amount_out),
            fee_bps=self.fee_bps,
            pool_kind=POOL_KIND_PROTO[self.pool_kind],
        )


def _hops_key(hops: tuple[Hop, ...]) -> str:
    return ";".join(f"{h.chain_id}:{h.pool}:{h.token_in}>{h.token_out}" for h in hops)


class Action(Protocol):
    # The `Opportunity.action` oneof field this action fills.
    kind: ClassVar[str]

    @property
    def amount_in(self) -> int:
        """Input of the action (base units of its first token): the capital it moves."""
        ...

    def pools(self) -> tuple[tuple[int, str], ...]:
        """(chain id, lower-case pool address) of every pool the action moves, in route order."""
        ...

    def key(self) -> str: ...

    def write(self, opportunity: events_pb2.Opportunity, deadlines: Mapping[int, int]) -> None:
        """Fill the opportunity's action; ``deadlines`` maps each involved chain to the last block
        of that chain in which the action may be included."""
        ...


# How the executor is financed for each flash provider's cycle.
FLASH_FINANCING = {
    "uniswap_v2": events_pb2.FINANCING_FLASH_SWAP,
    "aave_v3": events_pb2.FINANCING_FLASH_LOAN,
    "uniswap_v3": events_pb2.FINANCING_FLASH_V3,
    "balancer_v2": events_pb2.FINANCING_FLASH_BALANCER,
}


@dataclass(frozen=True, slots=True)
class SwapCycle:
    """A cycle on one chain through the executor contract, from its inventory or a flash swap."""

    kind: ClassVar[str] = "swap_cycle"
    hops: tuple[Hop, ...]
    amount_in: int
    flash: bool = False
    # The flash provider chosen (`flash_providers`; "" with `flash`: the first pair's flash swap)
    # and the fee it charges, base units of the input token.
    flash_provider: str = ""
    flash_fee: int = 0
    # The lending contract, for a provider with several per chain (a V3 pool); "" otherwise.
    flash_lender: str = ""

    def pools(self) -> tuple[tuple[int, str], ...]:
        return tuple(dict.fromkeys((h.chain_id, h.pool.lower()) for h in self.hops))

    def key(self) -> str:
        return f"{_hops_key(self.hops)}|{self.amount_in}|{int(self.flash)}|{self.flash_provider}"

    def to_proto(self) -> events_pb2.SwapCycleAction:
        financing = events_pb2.FINANCING_INVENTORY
        if self.flash:
            financing = FLASH_FINANCING.get(self.flash_provider, events_pb2.FINANCING_FLASH_SWAP)
        return events_pb2.SwapCycleAction(
            hops=[h.to_proto() for h in self.hops],
            amount_in=str(self.amount_in),
            financing=financing,
            flash_provider=self.flash_provider if self.flash else "",
            flash_fee=str(self.flash_fee) if self.flash else "",
            flash_lender=self.flash_lender if self.flash else "",
        )

    def write(self, opportunity: events_pb2.Opportunity, deadlines: Mapping[int, int]) -> None:
        opportunity.swap_cycle.CopyFrom(self.to_proto())


@dataclass(frozen=True, slots=True)
class CrossChainLeg:
    chain_id: int
    hops: tuple[Hop, ...]
    amount_in: int


@dataclass(frozen=True, slots=True)
class CrossChainSwaps:
    """Simultaneous swaps on several chains from inventory there; leg i+1 sells what leg i buys."""

    kind: ClassVar[str] = "cross_chain"
    legs: tuple[CrossChainLeg, ...]

    @property
    def amount_in(self) -> int:
        return self.legs[0].amount_in if self.legs else 0

    def pools(self) -> tuple[tuple[int, str], ...]:
        return tuple(dict.fromkeys((h.chain_id, h.pool.lower()) for leg in self.legs for h in leg.hops))

    def key(self) -> str:
        return "||".join(f"{leg.chain_id}#{_hops_key(leg.hops)}|{leg.amount_in}" for leg in self.legs)

    def write(self, opportunity: events_pb2.Opportunity, deadlines: Mapping[int, int]) -> None:
        opportunity.cross_chain.CopyFrom(
            events_pb2.CrossChainAction(
                legs=[
                    events_pb2.CrossChainLeg(
                        chain_id=leg.chain_id,
                        hops=[h.to_proto() for h in leg.hops],
                        amount_in=str(leg.amount_in),
                        deadline_block=deadlines.get(leg.chain_id, 0),
                    )
                    for leg in self.legs
                ]
            )
        )


@dataclass(frozen=True, slots=True)
class Liquidation:
    """An Aave V3 ``liquidationCall``, the seized collateral swapped back into the debt asset
    through ``collateral_swap`` (empty: the collateral is kept). ``financing``: ``inventory`` (the
    executor's debt-asset balance), ``flash_loan`` (the pool's ``flashLoanSimple``) or
    ``flash_swap`` (a Uniswap V2 flash swap on the route's last pool)."""

    kind: ClassVar[str] = "liquidation"
    chain_id: int
    protocol: str
    pool: str
    borrower: str
    collateral_asset: str
    debt_asset: str
    debt_to_cover: int
    expected_collateral: int
    health_factor: int
    collateral_swap: tuple[Hop, ...] = ()
    receive_a_token: bool = False
    financing: str = "inventory"

    @property
    def amount_in(self) -> int:
        return self.debt_to_cover

    def pools(self) -> tuple[tuple[int, str], ...]:
        # The lending pool is "moved" too: two liquidations of one borrower cannot both land.
        own = ((self.chain_id, f"{self.pool.lower()}#{self.borrower.lower()}"),)
        return own + tuple(dict.fromkeys((h.chain_id, h.pool.lower()) for h in self.collateral_swap))

    def key(self) -> str:
        return (
            f"{self.protocol}:{self.pool}:{self.borrower}:{self.collateral_asset}>{self.debt_asset}"
            f"|{self.debt_to_cover}|{_hops_key(self.collateral_swap)}|{int(self.receive_a_token)}"
            f"|{self.financing}"
        )

    def write(self, opportunity: events_pb2.Opportunity, deadlines: Mapping[int, int]) -> None:
        opportunity.liquidation.CopyFrom(
            events_pb2.LiquidationAction(
                protocol=self.protocol,
                pool=self.pool,
                borrower=self.borrower,
                collateral_asset=common_pb2.Token(chain_id=self.chain_id, address=self.collateral_asset),
                debt_asset=common_pb2.Token(chain_id=self.chain_id, address=self.debt_asset),
                debt_to_cover=str(self.debt_to_cover),
                expected_collateral=str(self.expected_collateral),
                receive_a_token=self.receive_a_token,
                health_factor=str(self.health_factor),
                financing=LIQUIDATION_FINANCING[self.financing],
                collateral_swap=[h.to_proto() for h in self.collateral_swap],
            )
        )


@dataclass(frozen=True, slots=True)
class Deleverage:
    """Leverage protection: ``repay_amount`` of ``account``'s debt repaid with ``collateral_amount``
    of its collateral (a flash loan of the debt, repaid by selling the withdrawn collateral along
    ``collateral_swap``), sized to bring the account to ``target_health_factor``."""

    kind: ClassVar[str] = "deleverage"
    chain_id: int
    protocol: str
    pool: str
    account: str
    collateral_asset: str
    debt_asset: str
    collateral_amount: int
    repay_amount: int
    flash_loan_premium: int
    health_factor: int
    target_health_factor: int
    expected_health_factor: int
    protection_id: str
    emergency: bool
    collateral_a_token: str
    collateral_swap: tuple[Hop, ...] = ()

    @property
    def amount_in(self) -> int:
        return self.repay_amount

    def pools(self) -> tuple[tuple[int, str], ...]:
        own = ((self.chain_id, f"{self.pool.lower()}#{self.account.lower()}"),)
        return own + tuple(dict.fromkeys((h.chain_id, h.pool.lower()) for h in self.collateral_swap))

    def key(self) -> str:
        return (
            f"{self.protocol}:{self.pool}:{self.account}:{self.collateral_asset}>{self.debt_asset}"
            f"|{self.repay_amount}|{self.collateral_amount}|{_hops_key(self.collateral_swap)}"
        )

    def write(self, opportunity: events_pb2.Opportunity, deadlines: Mapping[int, int]) -> None:
        opportunity.deleverage.CopyFrom(
            events_pb2.DeleverageAction(
                protocol=self.protocol,
                pool=self.pool,
                account=self.account,
                collateral_asset=common_pb2.Token(chain_id=self.chain_id, address=self.collateral_asset),
                debt_asset=common_pb2.Token(chain_id=self.chain_id, address=self.debt_asset),
                collateral_amount=str(self.collateral_amount),
                repay_amount=str(self.repay_amount),
                health_factor=str(self.health_factor),
                target_health_factor=str(self.target_health_factor),
                collateral_swap=[h.to_proto() for h in self.collateral_swap],
                flash_loan_premium=str(self.flash_loan_premium),
                expected_health_factor=str(self.expected_health_factor),
                protection_id=self.protection_id,
                emergency=self.emergency,
                collateral_a_token=self.collateral_a_token,
            )
        )


@dataclass(frozen=True, slots=True)
class Backrun:
    """A swap cycle from the executor's inventory placed right after a protected transaction in
    one bundle, refunding the transaction's sender ``refund_bps`` of the profit (plus
    ``gas_refund`` of the cycle's token when the rest covers it). Execution sets the recipient
    and the share from the auction it runs, whatever a searcher writes."""

    kind: ClassVar[str] = "backrun"
    chain_id: int
    target_tx_hash: str
    cycle: SwapCycle
    refund_bps: int
    gas_refund: int = 0

    @property
    def amount_in(self) -> int:
        return self.cycle.amount_in

    def pools(self) -> tuple[tuple[int, str], ...]:
        return self.cycle.pools()

    def key(self) -> str:
        return f"backrun:{self.target_tx_hash}|{self.cycle.key()}|{self.refund_bps}|{self.gas_refund}"

    def write(self, opportunity: events_pb2.Opportunity, deadlines: Mapping[int, int]) -> None:
        opportunity.backrun.CopyFrom(
            events_pb2.BackrunAction(
                target_tx_hash=self.target_tx_hash,
                cycle=self.cycle.to_proto(),
                refund_bps=self.refund_bps,
                gas_refund=str(self.gas_refund),
            )
        )
