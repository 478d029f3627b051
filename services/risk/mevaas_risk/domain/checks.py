"""The pre-trade check: one opportunity against the limits and the current exposure, decided
without I/O. The store calls it while holding the tenant's risk-state row lock, so the exposure it
sees cannot change until the decision (and its reservation) is committed.

Amount limits are denominated in one token. An opportunity whose exposure (for max_position) or
profit token (for min_profit) is another token cannot be measured against them, so it is rejected
rather than let through unmeasured: no limit may be exceeded unnoticed.

A protective action (a deleverage of the tenant's own position) is approved once the kill
switches, suspension, staleness, sanctions, the chain and token allow-lists and max_gas_price
pass: min_profit, daily_loss_limit, max_position and max_concurrent_executions do not apply to it
(it costs gas by design, is needed most on a losing day, and repays debt rather than opening a
position). Every kill switch stops it, an emergency one too: a kill switch means nothing is
sent (a compromised key, a misbehaving platform), and the protection's alerts say it failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mevaas.events.v1 import events_pb2
from mevaas_core.sanctions import SanctionsList
from mevaas_risk.domain.actions import ActionFacts, facts_of
from mevaas_risk.domain.limits import Limits, TokenKey

R = events_pb2
NO_SANCTIONS = SanctionsList()


@dataclass(frozen=True, slots=True)
class OpportunityFacts:
    """What the check needs from an Opportunity, as exact integers; the action's part comes from
    its kind's case in `actions` (``action`` None: no action risk can measure)."""

    strategy_id: str
    action: ActionFacts | None
    chain_ids: frozenset[int]
    tokens: frozenset[TokenKey]
    profit_token: TokenKey | None
    net_profit: int
    gas_price_wei: int
    detected_block: int
    deadline_block: int

    @property
    def exposure_token(self) -> TokenKey:
        return self.action.exposure_token if self.action is not None else TokenKey.of(0, "")

    @property
    def exposure_amount(self) -> int:
        return self.action.exposure_amount if self.action is not None else 0

    @classmethod
    def from_proto(cls, opp: events_pb2.Opportunity) -> OpportunityFacts:
        action = facts_of(opp)
        chains = {opp.chain_id, *opp.chain_ids} - {0}
        tokens: set[TokenKey] = set()
        if action is not None:
            chains |= action.chain_ids
            tokens |= action.tokens
        profit_token = TokenKey.from_proto(opp.profit_token) if opp.HasField("profit_token") else None
        if profit_token is not None:
            tokens.add(profit_token)
        return cls(
            strategy_id=opp.strategy_id,
            action=action,
            chain_ids=frozenset(chains),
            tokens=frozenset(tokens),
            profit_token=profit_token,
            net_profit=int(opp.expected_profit_net_of_gas or opp.expected_profit or 0),
            gas_price_wei=int(opp.gas_price or 0),
            detected_block=opp.detected_block,
            deadline_block=opp.deadline_block,
        )


@dataclass(frozen=True, slots=True)
class Exposure:
    """Open (unreleased, unexpired) reservations of one scope: count and amount per token."""

    open_count: int = 0
    reserved: Mapping[TokenKey, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RiskContext:
    """Everything the decision depends on, read under the tenant's lock."""

    tenant_limits: Limits
    strategy_limits: Limits
    plan_max_concurrent: int
    tenant_exposure: Exposure
    strategy_exposure: Exposure
    # Realised PnL today (UTC) in the denomination of the respective limits, base units.
    tenant_pnl_today: int
    strategy_pnl_today: int
    tenant_kill_switch: bool = False
    strategy_kill_switch: bool = False
    platform_kill_switch: bool = False
    tenant_suspended: bool = False

    @property
    def effective(self) -> Limits:
        return self.strategy_limits.stricter(self.tenant_limits).capped(self.plan_max_concurrent)


@dataclass(frozen=True, slots=True)
class Breach:
    kind: events_pb2.BreachKind.ValueType
    limit_value: str
    observed_value: str
    denomination: TokenKey | None
    # Empty when the tenant-level limit was the one hit.
    strategy_id: str


@dataclass(frozen=True, slots=True)
class Verdict:
    approved: bool
    reason_code: events_pb2.RiskReasonCode.ValueType
    reason: str
    breach: Breach | None = None


APPROVED = Verdict(True, R.RISK_REASON_CODE_WITHIN_LIMITS, "within limits")
PROTECTIVE = Verdict(
    True,
    R.RISK_REASON_CODE_WITHIN_LIMITS,
    "protective action: kill switches, allow-lists and max_gas_price hold; profit, loss, position "
    "and concurrency limits do not apply",
)


def _reject(code: events_pb2.RiskReasonCode.ValueType, reason: str, breach: Breach | None = None) -> Verdict:
    return Verdict(False, code, reason, breach)


def decide(opp: OpportunityFacts, ctx: RiskContext, sanctions: SanctionsList = NO_SANCTIONS) -> Verdict:
    """Approve only when every limit holds after reserving this opportunity's exposure amount,
    and no counterparty of the action is on a sanctions list."""
    if ctx.platform_kill_switch:
        return _reject(R.RISK_REASON_CODE_KILL_SWITCH_ENGAGED, "the platform-wide kill switch is engaged")
    if ctx.tenant_kill_switch:
        return _reject(R.RISK_REASON_CODE_KILL_SWITCH_ENGAGED, "the tenant's kill switch is engaged")
    if ctx.strategy_kill_switch:
        return _reject(R.RISK_REASON_CODE_KILL_SWITCH_ENGAGED, "the strategy's kill switch is engaged")
    if ctx.tenant_suspended:
        return _reject(R.RISK_REASON_CODE_TENANT_SUSPENDED, "the tenant is suspended")
    if opp.deadline_block and opp.detected_block > opp.deadline_block:
        return _reject(
            R.RISK_REASON_CODE_STALE,
            f"deadline block {opp.deadline_block} passed (current block {opp.detected_block})",
        )
    if opp.action is None:
        return _reject(
            R.RISK_REASON_CODE_UNSUPPORTED_ACTION, "the opportunity carries no action risk can measure"
        )
    listed = sanctions.hits(opp.action.counterparties)
    if listed:
        hit = listed[0]
        return _reject(
            R.RISK_REASON_CODE_SANCTIONED_COUNTERPARTY,
            f"counterparty {hit.describe()}; the {opp.action.kind} action is refused",
            Breach(R.BREACH_KIND_SANCTIONED_COUNTERPARTY, hit.list_name, hit.address, None, opp.strategy_id),
        )
    if opp.exposure_amount <= 0:
        return _reject(
            R.RISK_REASON_CODE_MAX_POSITION, f"the {opp.action.kind} action's amount must be positive"
        )
    limits = ctx.effective
    if limits.allowed_chain_ids is not None:
        outside = sorted(opp.chain_ids - limits.allowed_chain_ids)
        if outside:
            return _reject(R.RISK_REASON_CODE_CHAIN_NOT_ALLOWED, f"chain {outside[0]} is not allowed")
    if limits.allowed_tokens is not None:
        outside_tokens = sorted(opp.tokens - limits.allowed_tokens)
        if outside_tokens:
            token = outside_tokens[0]
            return _reject(
                R.RISK_REASON_CODE_TOKEN_NOT_ALLOWED,
                f"token {token.address} on chain {token.chain_id} is not allowed",
            )
    if limits.max_gas_price_wei is not None and opp.gas_price_wei > limits.max_gas_price_wei:
        return _reject(
            R.RISK_REASON_CODE_MAX_GAS_PRICE,
            f"gas price {opp.gas_price_wei} > max_gas_price_wei {limits.max_gas_price_wei}",
            Breach(
                R.BREACH_KIND_MAX_GAS_PRICE,
                str(limits.max_gas_price_wei),
                str(opp.gas_price_wei),
                None,
                opp.strategy_id,
            ),
        )
    if opp.action.protective:
        return PROTECTIVE
    if limits.min_profit is not None:
        if opp.profit_token != limits.denomination:
            return _reject(
                R.RISK_REASON_CODE_MIN_PROFIT,
                "profit token differs from the limits' denomination, min_profit cannot be checked",
            )
        if opp.net_profit < limits.min_profit:
            return _reject(
                R.RISK_REASON_CODE_MIN_PROFIT,
                f"expected profit net of gas {opp.net_profit} < min_profit {limits.min_profit}",
            )
    for scope_limits, pnl, strategy_id in (
        (ctx.tenant_limits, ctx.tenant_pnl_today, ""),
        (ctx.strategy_limits, ctx.strategy_pnl_today, opp.strategy_id),
    ):
        if scope_limits.daily_loss_limit is not None and -pnl >= scope_limits.daily_loss_limit:
            return _reject(
                R.RISK_REASON_CODE_DAILY_LOSS_LIMIT,
                f"realised loss today {-pnl} reached daily_loss_limit {scope_limits.daily_loss_limit}",
                Breach(
                    R.BREACH_KIND_DAILY_LOSS_LIMIT,
                    str(scope_limits.daily_loss_limit),
                    str(-pnl),
                    scope_limits.denomination,
                    strategy_id,
                ),
            )
    tenant_concurrency = ctx.tenant_limits.capped(ctx.plan_max_concurrent).max_concurrent_executions
    for cap, exposure, strategy_id in (
        (tenant_concurrency, ctx.tenant_exposure, ""),
        (ctx.strategy_limits.max_concurrent_executions, ctx.strategy_exposure, opp.strategy_id),
    ):
        if cap is not None and exposure.open_count + 1 > cap:
            return _reject(
                R.RISK_REASON_CODE_MAX_CONCURRENT_EXECUTIONS,
                f"{exposure.open_count} executions in flight, max_concurrent_executions {cap}",
                Breach(
                    R.BREACH_KIND_MAX_CONCURRENT_EXECUTIONS,
                    str(cap),
                    str(exposure.open_count + 1),
                    None,
                    strategy_id,
                ),
            )
    for scope_limits, exposure, strategy_id in (
        (ctx.tenant_limits, ctx.tenant_exposure, ""),
        (ctx.strategy_limits, ctx.strategy_exposure, opp.strategy_id),
    ):
        if scope_limits.max_position is None:
            continue
        if opp.exposure_token != scope_limits.denomination:
            return _reject(
                R.RISK_REASON_CODE_MAX_POSITION,
                "exposure token differs from the limits' denomination, max_position cannot be checked",
            )
        after = exposure.reserved.get(opp.exposure_token, 0) + opp.exposure_amount
        if after > scope_limits.max_position:
            return _reject(
                R.RISK_REASON_CODE_MAX_POSITION,
                f"position {after} after this trade > max_position {scope_limits.max_position}",
                Breach(
                    R.BREACH_KIND_MAX_POSITION,
                    str(scope_limits.max_position),
                    str(after),
                    scope_limits.denomination,
                    strategy_id,
                ),
            )
    return APPROVED
