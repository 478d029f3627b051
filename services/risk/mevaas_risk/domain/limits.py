"""Risk limits as the domain sees them: parsed from common.v1.RiskLimits, validated, merged.

A limit that is unset (empty string, 0 count, empty list) means "no limit at this level". Amount
limits (max_position, min_profit, daily_loss_limit) are integers in base units of the limits'
denomination token. A strategy's limits may only tighten its tenant's; the effective limits of a
strategy are the stricter of both (and of the plan's concurrency cap).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TypeVar

from mevaas.common.v1 import common_pb2
from mevaas_core.validation import ADDRESS, Validator

MAX_SLIPPAGE_BPS = 10_000
LIMIT_FIELDS = frozenset(
    {
        "denomination",
        "max_position",
        "max_slippage_bps",
        "max_gas_price_wei",
        "min_profit",
        "daily_loss_limit",
        "max_concurrent_executions",
        "allowed_chain_ids",
        "allowed_tokens",
        "withdrawal_allowlist",
    }
)
AMOUNT_FIELDS = ("max_position", "min_profit", "daily_loss_limit")

T = TypeVar("T")


@dataclass(frozen=True, slots=True, order=True)
class TokenKey:
    """A token identified by chain and lower-case address (what limits and exposure key on)."""

    chain_id: int
    address: str

    @classmethod
    def of(cls, chain_id: int, address: str) -> TokenKey:
        return cls(chain_id, address.lower())

    @classmethod
    def from_proto(cls, token: common_pb2.Token) -> TokenKey:
        return cls.of(token.chain_id, token.address)

    def to_proto(self) -> common_pb2.Token:
        return common_pb2.Token(chain_id=self.chain_id, address=self.address)


@dataclass(frozen=True, slots=True)
class Limits:
    denomination: TokenKey | None = None
    max_position: int | None = None
    max_slippage_bps: int | None = None
    max_gas_price_wei: int | None = None
    min_profit: int | None = None
    daily_loss_limit: int | None = None
    max_concurrent_executions: int | None = None
    # None = every chain/token; a set (possibly empty after merging) = only those.
    allowed_chain_ids: frozenset[int] | None = None
    allowed_tokens: frozenset[TokenKey] | None = None
    # Lower-case destinations Withdraw may use besides the wallet (None = the wallet only).
    withdrawal_allowlist: frozenset[str] | None = None

    @classmethod
    def from_proto(cls, limits: common_pb2.RiskLimits) -> Limits:
        """Parse limits already validated by `validate_limits` (or stored by this service)."""
        return cls(
            denomination=TokenKey.from_proto(limits.denomination)
            if limits.HasField("denomination")
            else None,
            max_position=_int_or_none(limits.max_position),
            max_slippage_bps=limits.max_slippage_bps or None,
            max_gas_price_wei=_int_or_none(limits.max_gas_price_wei),
            min_profit=_int_or_none(limits.min_profit),
            daily_loss_limit=_int_or_none(limits.daily_loss_limit),
            max_concurrent_executions=limits.max_concurrent_executions or None,
            allowed_chain_ids=frozenset(limits.allowed_chain_ids) or None,
            allowed_tokens=frozenset(TokenKey.from_proto(t) for t in limits.allowed_tokens) or None,
            withdrawal_allowlist=frozenset(a.lower() for a in limits.withdrawal_allowlist) or None,
        )

    def to_proto(self) -> common_pb2.RiskLimits:
        out = common_pb2.RiskLimits(
            max_position=_str_or_empty(self.max_position),
            max_slippage_bps=self.max_slippage_bps or 0,
            max_gas_price_wei=_str_or_empty(self.max_gas_price_wei),
            min_profit=_str_or_empty(self.min_profit),
            daily_loss_limit=_str_or_empty(self.daily_loss_limit),
            max_concurrent_executions=self.max_concurrent_executions or 0,
            allowed_chain_ids=sorted(self.allowed_chain_ids or ()),
            allowed_tokens=[t.to_proto() for t in sorted(self.allowed_tokens or ())],
            withdrawal_allowlist=sorted(self.withdrawal_allowlist or ()),
        )
        if self.denomination is not None:
            out.denomination.CopyFrom(self.denomination.to_proto())
        return out

    def stricter(self, other: Limits) -> Limits:
        """The stricter of two limit sets (the effective limits of a strategy under its tenant)."""
        return Limits(
            denomination=self.denomination or other.denomination,
            max_position=_min(self.max_position, other.max_position),
            max_slippage_bps=_min(self.max_slippage_bps, other.max_slippage_bps),
            max_gas_price_wei=_min(self.max_gas_price_wei, other.max_gas_price_wei),
            min_profit=_max(self.min_profit, other.min_profit),
            daily_loss_limit=_min(self.daily_loss_limit, other.daily_loss_limit),
            max_concurrent_executions=_min(self.max_concurrent_executions, other.max_concurrent_executions),
            allowed_chain_ids=_intersect(self.allowed_chain_ids, other.allowed_chain_ids),
            allowed_tokens=_intersect(self.allowed_tokens, other.allowed_tokens),
            withdrawal_allowlist=_intersect(self.withdrawal_allowlist, other.withdrawal_allowlist),
        )

    def capped(self, plan_max_concurrent: int) -> Limits:
        """Apply the plan's concurrency cap (0 = the plan sets none)."""
        if not plan_max_concurrent:
            return self
        return replace(
            self, max_concurrent_executions=_min(self.max_concurrent_executions, plan_max_concurrent)
        )


def _int_or_none(value: str) -> int | None:
    return int(value) if value else None


def _str_or_empty(value: int | None) -> str:
    return "" if value is None else str(value)


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _intersect(a: frozenset[T] | None, b: frozenset[T] | None) -> frozenset[T] | None:
    return b if a is None else a if b is None else a & b


def apply_mask(
    current: common_pb2.RiskLimits, update: common_pb2.RiskLimits, paths: Iterable[str]
) -> common_pb2.RiskLimits:
    """`current` with the masked fields taken from `update` ("*" replaces everything)."""
    paths = list(paths)
    if "*" in paths:
        merged = common_pb2.RiskLimits()
        merged.CopyFrom(update)
        return merged
    merged = common_pb2.RiskLimits()
    merged.CopyFrom(current)
    for path in paths:
        merged.ClearField(path)  # type: ignore[arg-type]
        if path == "denomination":
            if update.HasField("denomination"):
                merged.denomination.CopyFrom(update.denomination)
        elif path in ("allowed_chain_ids", "allowed_tokens", "withdrawal_allowlist"):
            getattr(merged, path).extend(getattr(update, path))
        else:
            setattr(merged, path, getattr(update, path))
    return merged


def validate_mask(paths: Iterable[str], v: Validator, field: str = "update_mask") -> None:
    paths = list(paths)
    if not v.check(bool(paths), field, 'must name at least one field (or "*")'):
        return
    for index, path in enumerate(paths):
        v.check(
            path == "*" or path in LIMIT_FIELDS,
            f"{field}.paths[{index}]",
            f'must be "*" or one of {", ".join(sorted(LIMIT_FIELDS))}',
        )


def validate_limits(limits: common_pb2.RiskLimits, v: Validator, field: str = "limits") -> None:
    """The rules documented on common.v1.RiskLimits, each violation naming its field."""
    for name in AMOUNT_FIELDS:
        value = getattr(limits, name)
        if value:
            amount = v.integer_amount(value, f"{field}.{name}")
            if amount is not None and name != "min_profit":
                v.check(amount > 0, f"{field}.{name}", "must be positive (leave empty for no limit)")
    if any(getattr(limits, name) for name in AMOUNT_FIELDS):
        v.check(
            limits.HasField("denomination"),
            f"{field}.denomination",
            "is required when max_position, min_profit or daily_loss_limit is set",
        )
    if limits.HasField("denomination"):
        _validate_token(limits.denomination, v, f"{field}.denomination")
    v.check(
        limits.max_slippage_bps <= MAX_SLIPPAGE_BPS,
        f"{field}.max_slippage_bps",
        f"must be 0-{MAX_SLIPPAGE_BPS}",
    )
    if limits.max_gas_price_wei:
        gas = v.integer_amount(limits.max_gas_price_wei, f"{field}.max_gas_price_wei")
        if gas is not None:
            v.check(gas > 0, f"{field}.max_gas_price_wei", "must be positive (leave empty for no limit)")
    seen_chains: set[int] = set()
    for index, chain_id in enumerate(limits.allowed_chain_ids):
        v.check(chain_id > 0, f"{field}.allowed_chain_ids[{index}]", "must be > 0")
        v.check(chain_id not in seen_chains, f"{field}.allowed_chain_ids[{index}]", "is a duplicate")
        seen_chains.add(chain_id)
    seen_tokens: set[TokenKey] = set()
    for index, token in enumerate(limits.allowed_tokens):
        _validate_token(token, v, f"{field}.allowed_tokens[{index}]")
        key = TokenKey.from_proto(token)
        v.check(key not in seen_tokens, f"{field}.allowed_tokens[{index}]", "is a duplicate")
        seen_tokens.add(key)
    seen_destinations: set[str] = set()
    for index, address in enumerate(limits.withdrawal_allowlist):
        name = f"{field}.withdrawal_allowlist[{index}]"
        v.pattern(address, name, ADDRESS, "an address (0x + 40 hex characters)")
        v.check(address.lower() not in seen_destinations, name, "is a duplicate")
        seen_destinations.add(address.lower())


def _validate_token(token: common_pb2.Token, v: Validator, field: str) -> None:
    v.check(token.chain_id > 0, f"{field}.chain_id", "is required (> 0)")
    v.pattern(token.address, f"{field}.address", ADDRESS, "an address (0x + 40 hex characters)")


def validate_tightens(strategy: Limits, tenant: Limits, v: Validator, field: str = "limits") -> None:
    """A strategy's limits may only tighten the tenant's: each set value at least as strict."""
    amounts_set = any(getattr(strategy, name) is not None for name in AMOUNT_FIELDS)
    if amounts_set and tenant.denomination is not None and strategy.denomination != tenant.denomination:
        v.fail(f"{field}.denomination", "must equal the tenant's denomination")
    for name in (
        "max_position",
        "max_slippage_bps",
        "max_gas_price_wei",
        "daily_loss_limit",
        "max_concurrent_executions",
    ):
        mine, theirs = getattr(strategy, name), getattr(tenant, name)
        if mine is not None and theirs is not None:
            v.check(mine <= theirs, f"{field}.{name}", f"must not exceed the tenant limit {theirs}")
    if strategy.min_profit is not None and tenant.min_profit is not None:
        v.check(
            strategy.min_profit >= tenant.min_profit,
            f"{field}.min_profit",
            f"must be at least the tenant limit {tenant.min_profit}",
        )
    if strategy.allowed_chain_ids is not None and tenant.allowed_chain_ids is not None:
        v.check(
            strategy.allowed_chain_ids <= tenant.allowed_chain_ids,
            f"{field}.allowed_chain_ids",
            "must be a subset of the tenant's allowed chains",
        )
    if strategy.allowed_tokens is not None and tenant.allowed_tokens is not None:
        v.check(
            strategy.allowed_tokens <= tenant.allowed_tokens,
            f"{field}.allowed_tokens",
            "must be a subset of the tenant's allowed tokens",
        )
