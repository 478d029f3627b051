"""Contracts that lend their own token balance inside one transaction, for the executor's flash
cycles: a Uniswap V3 pool (``flash``) and the Balancer V2 vault (``flashLoan``), as a chain's
configuration lists them (``ChainConfig.flash_lenders``), read at a block: each one's fee and its
balance of every token it can lend (what both lend is exactly that balance).

One ``LenderKind`` per kind of lender (a registry): ``resolve`` turns its immutable facts (the
pool's tokens and fee; the vault's fees collector) into a ``LenderPlan`` once, so a block costs one
batch of ``eth_call``s: the fees that can change and the balances.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from mevaas_chain import abi
from mevaas_chain.client import BlockId, Call, ChainClient


@dataclass(frozen=True, slots=True)
class FlashLender:
    # The lender's kind, which is also its flash provider's name ("uniswap_v3", "balancer_v2").
    kind: str
    address: str
    # Uniswap V3: the pool's fee in pips (1e-6 of the loan); Balancer V2: the flash-loan fee
    # percentage, 1e18 = 100%.
    fee: int
    # Token -> base units the lender holds (and so can lend).
    balances: Mapping[str, int]
    # False when it lends nothing at all now (a V3 pool without in-range liquidity: flash reverts).
    active: bool = True


@dataclass(frozen=True, slots=True)
class LenderPlan:
    kind: str
    address: str
    tokens: tuple[str, ...]
    # Where the fee is read every block; None: it is fixed at ``fee``.
    fee_call: Call | None
    fee: int
    # A call read every block whose non-zero answer means the lender can lend; None: always.
    active_call: Call | None = None


class LenderKind(Protocol):
    kind: ClassVar[str]

    def resolve_calls(self, address: str) -> list[Call]:
        """The calls whose replies ``resolve`` needs."""
        ...

    def resolve(self, address: str, replies: Sequence[bytes], chain_tokens: Sequence[str]) -> LenderPlan: ...


LENDER_KINDS: dict[str, LenderKind] = {}


def register_lender_kind(cls: type[LenderKind]) -> type[LenderKind]:
    LENDER_KINDS[cls.kind] = cls()
    return cls


class LenderError(RuntimeError):
    pass


@register_lender_kind
class UniswapV3PoolLender:
    kind: ClassVar[str] = "uniswap_v3"

    def resolve_calls(self, address: str) -> list[Call]:
        return [Call(address, abi.encode_call(f)) for f in ("token0()", "token1()", "fee()")]

    def resolve(self, address: str, replies: Sequence[bytes], chain_tokens: Sequence[str]) -> LenderPlan:
        token0, token1, fee = replies
        tokens = (abi.decode_address(token0), abi.decode_address(token1))
        # UniswapV3Pool.flash: require(liquidity > 0).
        liquidity = Call(address, abi.encode_call("liquidity()"))
        return LenderPlan(self.kind, address, tokens, None, abi.decode_uint(fee), liquidity)


@register_lender_kind
class BalancerV2VaultLender:
    kind: ClassVar[str] = "balancer_v2"

    def resolve_calls(self, address: str) -> list[Call]:
        return [Call(address, abi.encode_call("getProtocolFeesCollector()"))]

    def resolve(self, address: str, replies: Sequence[bytes], chain_tokens: Sequence[str]) -> LenderPlan:
        collector = abi.decode_address(replies[0])
        fee_call = Call(collector, abi.encode_call("getFlashLoanFeePercentage()"))
        return LenderPlan(self.kind, address, tuple(chain_tokens), fee_call, 0)


async def resolve_lenders(
    client: ChainClient, lenders: Sequence[tuple[str, str]], chain_tokens: Sequence[str]
) -> tuple[LenderPlan, ...]:
    """Plans for ``lenders`` ((kind, address) pairs); ``chain_tokens`` are what a vault may lend."""
    kinds = []
    for kind, address in lenders:
        lender_kind = LENDER_KINDS.get(kind)
        if lender_kind is None:
            raise LenderError(f"flash lender {address}: no such kind {kind!r}")
        kinds.append((lender_kind, address, lender_kind.resolve_calls(address)))
    replies = await client.batch_call([c for _, _, calls in kinds for c in calls])
    plans, at = [], 0
    for lender_kind, address, calls in kinds:
        answers = replies[at : at + len(calls)]
        at += len(calls)
        if any(a is None for a in answers):
            raise LenderError(f"flash lender {address} does not answer as a {lender_kind.kind} lender")
        plans.append(lender_kind.resolve(address, [a for a in answers if a is not None], chain_tokens))
    return tuple(plans)


async def read_lenders(
    client: ChainClient, plans: Sequence[LenderPlan], block: BlockId = "latest"
) -> tuple[FlashLender, ...]:
    """Every planned lender's fee and balances at ``block``, in one batch; a lender whose fee
    cannot be read is left out, a balance that cannot be read counts as nothing to lend."""
    calls: list[Call] = []
    for plan in plans:
        calls.extend(c for c in (plan.fee_call, plan.active_call) if c is not None)
        calls.extend(Call(token, abi.balance_of(plan.address)) for token in plan.tokens)
    replies = iter(await client.batch_call(calls, block))
    lenders = []
    for plan in plans:
        fee: int | None = plan.fee
        if plan.fee_call is not None:
            reply = next(replies)
            fee = None if reply is None else abi.decode_uint(reply)
        active = True
        if plan.active_call is not None:
            reply = next(replies)
            active = reply is not None and abi.decode_uint(reply) > 0
        balances = {}
        for token in plan.tokens:
            reply = next(replies)
            balances[token] = 0 if reply is None else abi.decode_uint(reply)
        if fee is not None:
            lenders.append(FlashLender(plan.kind, plan.address, fee, balances, active))
    return tuple(lenders)
