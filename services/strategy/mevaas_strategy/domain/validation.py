"""Validation of a `StrategyConfig`: every problem at once, each naming its field (the path inside
StrategyConfig) and a machine-readable reason. Pure: the chain registry, the plan and a USD price
source are passed in."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

from mevaas.common.v1 import common_pb2
from mevaas.strategy.v1 import strategy_pb2
from mevaas_chain.registry import ChainRegistry
from mevaas_core.validation import ADDRESS, INTEGER_AMOUNT
from mevaas_strategies.model import ARBITRAGE_TYPES, TYPE_NAMES, StrategySpec
from mevaas_strategies.plugins import Violation, plugin_for
from mevaas_strategy.domain.plans import PlanLimits

# USD per base unit of a token on a chain, None when no market price is known.
UsdPrice = Callable[[int, str], Fraction | None]

MAX_NAME = 128
MAX_DESCRIPTION = 2048
MAX_STRATEGY_SLIPPAGE_BPS = 5000
MAX_LIMIT_SLIPPAGE_BPS = 10_000
MAX_EXECUTION_DELAY_MS = 60_000
MAX_RETRY_ATTEMPTS = 10


class _Collector:
    def __init__(self) -> None:
        self.violations: list[Violation] = []

    def add(self, field: str, description: str, reason: str) -> None:
        self.violations.append(Violation(field, description, reason))

    def amount(self, value: str, field: str, *, positive: bool, required: bool = True) -> int | None:
        if not value:
            if required:
                self.add(field, "is required", "REQUIRED")
            return None
        if not INTEGER_AMOUNT.fullmatch(value):
            self.add(field, "must be a base-10 integer string", "BAD_FORMAT")
            return None
        number = int(value)
        if number < 0 or (positive and number == 0):
            self.add(field, "must be > 0" if positive else "must be >= 0", "OUT_OF_RANGE")
            return None
        return number


def validate_config(
    config: strategy_pb2.StrategyConfig,
    chains: ChainRegistry,
    plan: PlanLimits,
    usd_price: UsdPrice,
) -> list[Violation]:
    c = _Collector()
    if not config.name.strip():
        c.add("name", "is required", "REQUIRED")
    elif len(config.name) > MAX_NAME:
        c.add("name", f"must be at most {MAX_NAME} characters", "OUT_OF_RANGE")
    if len(config.description) > MAX_DESCRIPTION:
        c.add("description", f"must be at most {MAX_DESCRIPTION} characters", "OUT_OF_RANGE")

    type_name = TYPE_NAMES.get(config.type, "")
    plugin = plugin_for(type_name) if type_name else None
    if config.type == common_pb2.STRATEGY_TYPE_UNSPECIFIED:
        c.add("type", "is required", "REQUIRED")
    elif plugin is None:
        c.add("type", "this strategy type is not available", "UNSUPPORTED")
    is_custom = config.type == common_pb2.STRATEGY_TYPE_CUSTOM
    if is_custom and not config.HasField("custom"):
        c.add("custom", "is required for CUSTOM strategies", "REQUIRED")
    if not is_custom and config.HasField("custom"):
        c.add("custom", "must be unset unless type is CUSTOM", "BAD_FORMAT")

    configured = {chain.chain_id for chain in chains}
    chain_ids: list[int] = []
    if not config.HasField("parameters"):
        c.add("parameters", "is required", "REQUIRED")
    else:
        chain_ids = _parameters(c, config, chains, configured)

    allocation = _allocation(c, config, chains, chain_ids, plan, usd_price)
    if config.HasField("parameters") and allocation is not None:
        max_position = c.amount(config.parameters.max_position, "parameters.max_position", positive=True)
        if max_position is not None and max_position > allocation:
            c.add("parameters.max_position", "must be <= allocation.amount", "OUT_OF_RANGE")
    if config.HasField("risk_limits"):
        _risk_limits(c, config.risk_limits)

    # Type-specific rules only on a structurally sound config: they read the decoded spec.
    if plugin is not None and not c.violations:
        c.violations += plugin.validate(StrategySpec.from_config(config), chains)
    return c.violations


def _parameters(
    c: _Collector, config: strategy_pb2.StrategyConfig, chains: ChainRegistry, configured: set[int]
) -> list[int]:
    p = config.parameters
    chain_ids = list(p.chain_ids)
    if not chain_ids:
        c.add("parameters.chain_ids", "must name at least one chain", "REQUIRED")
    seen: set[int] = set()
    for i, chain_id in enumerate(chain_ids):
        if chain_id in seen:
            c.add(f"parameters.chain_ids[{i}]", "is a duplicate", "DUPLICATE")
        elif chain_id not in configured:
            c.add(f"parameters.chain_ids[{i}]", f"chain {chain_id} is not configured", "UNKNOWN_CHAIN")
        seen.add(chain_id)

    if config.type in ARBITRAGE_TYPES and len(p.tokens) < 2:
        c.add("parameters.tokens", "arbitrage strategies need at least two tokens", "REQUIRED")
    seen_tokens: set[tuple[int, str]] = set()
    for i, token in enumerate(p.tokens):
        field = f"parameters.tokens[{i}]"
        if not ADDRESS.fullmatch(token.address):
            c.add(f"{field}.address", "must be an address (0x + 40 hex characters)", "BAD_FORMAT")
            continue
        key = (token.chain_id, token.address.lower())
        if key in seen_tokens:
            c.add(field, "is a duplicate", "DUPLICATE")
        seen_tokens.add(key)
        if token.chain_id not in seen:
            c.add(f"{field}.chain_id", "must be one of parameters.chain_ids", "UNKNOWN_CHAIN")
        elif token.chain_id in configured:
            try:
                chains.get(token.chain_id).token(token.address)
            except KeyError:
                c.add(
                    f"{field}.address",
                    f"token {token.address} is not configured on chain {token.chain_id}",
                    "UNKNOWN_TOKEN",
                )

    known_dexes = {d.name for chain in chains if chain.chain_id in seen for d in chain.dexes}
    for i, dex in enumerate(p.dexes):
        if dex not in known_dexes:
            c.add(
                f"parameters.dexes[{i}]",
                f"DEX {dex!r} is not configured on the strategy's chains",
                "UNKNOWN_DEX",
            )

    if p.risk_tolerance == strategy_pb2.RISK_TOLERANCE_UNSPECIFIED:
        c.add("parameters.risk_tolerance", "is required", "REQUIRED")
    if p.max_hops and not 2 <= p.max_hops <= 4:
        c.add("parameters.max_hops", "must be 2-4 (0 = 3)", "OUT_OF_RANGE")

    if not p.HasField("execution_settings"):
        c.add("parameters.execution_settings", "is required", "REQUIRED")
    else:
        s = p.execution_settings
        f = "parameters.execution_settings"
        if not 1 <= s.max_slippage_bps <= MAX_STRATEGY_SLIPPAGE_BPS:
            c.add(f"{f}.max_slippage_bps", f"must be 1-{MAX_STRATEGY_SLIPPAGE_BPS}", "OUT_OF_RANGE")
        c.amount(s.max_gas_price_wei, f"{f}.max_gas_price_wei", positive=True)
        c.amount(s.min_profit_threshold, f"{f}.min_profit_threshold", positive=False)
        if s.execution_delay_ms > MAX_EXECUTION_DELAY_MS:
            c.add(f"{f}.execution_delay_ms", f"must be 0-{MAX_EXECUTION_DELAY_MS}", "OUT_OF_RANGE")
        if s.retry_attempts > MAX_RETRY_ATTEMPTS:
            c.add(f"{f}.retry_attempts", f"must be 0-{MAX_RETRY_ATTEMPTS}", "OUT_OF_RANGE")
        if s.submission_mode == common_pb2.SUBMISSION_MODE_UNSPECIFIED:
            c.add(f"{f}.submission_mode", "is required", "REQUIRED")
        if s.wallet_address and not ADDRESS.fullmatch(s.wallet_address):
            c.add(f"{f}.wallet_address", "must be an address (0x + 40 hex characters)", "BAD_FORMAT")
    return chain_ids


def _allocation(
    c: _Collector,
    config: strategy_pb2.StrategyConfig,
    chains: ChainRegistry,
    chain_ids: list[int],
    plan: PlanLimits,
    usd_price: UsdPrice,
) -> int | None:
    if not config.HasField("allocation"):
        c.add("allocation", "is required", "REQUIRED")
        return None
    token = config.allocation.token
    amount = c.amount(config.allocation.amount, "allocation.amount", positive=True)
    if not ADDRESS.fullmatch(token.address):
        c.add("allocation.token.address", "must be an address (0x + 40 hex characters)", "BAD_FORMAT")
        return amount
    if token.chain_id not in chain_ids:
        c.add("allocation.token.chain_id", "must be one of parameters.chain_ids", "UNKNOWN_CHAIN")
        return amount
    if not any(
        t.chain_id == token.chain_id and t.address.lower() == token.address.lower()
        for t in config.parameters.tokens
    ):
        c.add(
            "allocation.token",
            "must be one of parameters.tokens (it is the strategy's base token)",
            "UNKNOWN_TOKEN",
        )
    try:
        chains.get(token.chain_id).token(token.address)
    except KeyError:
        return amount  # reported on parameters.tokens
    if amount is not None and plan.max_allocation_usd is not None:
        price = usd_price(token.chain_id, token.address)
        if price is None:
            c.add("allocation.token", "has no market price yet to value it against the plan", "UNPRICED")
        else:
            value = Decimal(price.numerator * amount) / Decimal(price.denominator)
            if value > plan.max_allocation_usd:
                c.add(
                    "allocation.amount",
                    f"is worth about {value:.2f} USD, above the plan's max_allocation of {plan.max_allocation_usd} USD",
                    "EXCEEDS_PLAN",
                )
    return amount


def _risk_limits(c: _Collector, limits: common_pb2.RiskLimits) -> None:
    f = "risk_limits"
    for name in ("max_position", "min_profit", "daily_loss_limit", "max_gas_price_wei"):
        c.amount(getattr(limits, name), f"{f}.{name}", positive=False, required=False)
    if limits.max_slippage_bps > MAX_LIMIT_SLIPPAGE_BPS:
        c.add(f"{f}.max_slippage_bps", f"must be 0-{MAX_LIMIT_SLIPPAGE_BPS}", "OUT_OF_RANGE")
    if (limits.max_position or limits.min_profit or limits.daily_loss_limit) and not limits.HasField(
        "denomination"
    ):
        c.add(
            f"{f}.denomination",
            "is required when max_position, min_profit or daily_loss_limit is set",
            "REQUIRED",
        )
    if len(set(limits.allowed_chain_ids)) != len(limits.allowed_chain_ids):
        c.add(f"{f}.allowed_chain_ids", "has duplicates", "DUPLICATE")
