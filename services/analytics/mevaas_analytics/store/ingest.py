"""The rows each event becomes, as (SQL, args) statements the batch writer runs."""

from __future__ import annotations

from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_analytics.domain.actions import view_of
from mevaas_analytics.store.common import PLATFORM, Statement, token_key, when


def _int(text: str) -> int:
    return int(text) if text else 0


INSERT_OPPORTUNITY = """
INSERT INTO analytics.opportunities (tenant_id, opportunity_id, event_id, strategy_id, strategy_type, chain_id,
    dex, profit_token, expected_profit, expected_profit_net, detected_block, detected_at, payload)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (tenant_id, opportunity_id) DO NOTHING"""


def _first_dex(opp: events_pb2.Opportunity) -> str:
    route = view_of(opp).route
    return route[0].dex if route else ""


def opportunity_rows(opp: events_pb2.Opportunity) -> list[Statement]:
    detected = opp.detected_at if opp.HasField("detected_at") else opp.occurred_at
    return [
        (
            INSERT_OPPORTUNITY,
            (
                opp.tenant_id,
                opp.opportunity_id,
                opp.event_id,
                opp.strategy_id,
                opp.type,
                opp.chain_id,
                _first_dex(opp),
                token_key(opp.profit_token.chain_id, opp.profit_token.address),
                _int(opp.expected_profit),
                _int(opp.expected_profit_net_of_gas),
                opp.detected_block,
                when(detected),
                opp.SerializeToString(deterministic=True),
            ),
        )
    ]


def decision_rows(decision: events_pb2.RiskDecision) -> list[Statement]:
    rows: list[Statement] = []
    if decision.HasField("opportunity") and decision.opportunity.opportunity_id:
        # The decision carries its opportunity: the read model is complete even if opp.* lagged.
        rows += opportunity_rows(decision.opportunity)
    rows.append(
        (
            """INSERT INTO analytics.decisions (tenant_id, opportunity_id, event_id, strategy_id, outcome,
                reason_code, reason, decided_at, payload)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (tenant_id, opportunity_id) DO NOTHING""",
            (
                decision.tenant_id,
                decision.opportunity_id,
                decision.event_id,
                decision.strategy_id,
                decision.outcome,
                decision.reason_code,
                decision.reason,
                when(decision.occurred_at),
                decision.SerializeToString(deterministic=True),
            ),
        )
    )
    return rows


def execution_rows(result: events_pb2.ExecutionResult) -> list[Statement]:
    token = result.profit_token
    return [
        (
            """INSERT INTO analytics.execution_results (tenant_id, execution_id, status, event_id, opportunity_id,
                strategy_id, session_id, chain_id, wallet_address, tx_count, private_submission, block_number,
                gas_used, gas_cost, realized_profit, expected_profit, profit_token, profit_decimals, rebalance_id,
                occurred_at, payload)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
            ON CONFLICT (tenant_id, execution_id, status) DO NOTHING""",
            (
                result.tenant_id,
                result.execution_id,
                result.status,
                result.event_id,
                result.opportunity_id,
                result.strategy_id,
                result.session_id,
                result.chain_id,
                result.wallet_address.lower(),
                len(result.tx_hashes),
                result.submission_mode == 2,
                result.block_number,
                result.gas_used,
                _int(result.gas_cost),
                int(result.realized_profit) if result.realized_profit else None,
                int(result.expected_profit) if result.expected_profit else None,
                token_key(token.chain_id, token.address) if token.address else "",
                token.decimals,
                result.rebalance_id,
                when(result.occurred_at),
                result.SerializeToString(deterministic=True),
            ),
        )
    ]


def session_rows(event: events_pb2.ExecutionSessionEvent) -> list[Statement]:
    return [
        (
            """INSERT INTO analytics.session_events (tenant_id, session_id, sequence, state, strategy_id,
                occurred_at, payload) VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (tenant_id, session_id, sequence) DO NOTHING""",
            (
                event.tenant_id,
                event.session_id,
                event.sequence,
                event.state,
                event.strategy_id,
                when(event.occurred_at),
                event.SerializeToString(deterministic=True),
            ),
        )
    ]


def breach_rows(breach: events_pb2.RiskBreach) -> list[Statement]:
    return [
        (
            """INSERT INTO analytics.breaches (tenant_id, breach_id, occurred_at, payload) VALUES ($1, $2, $3, $4)
            ON CONFLICT (tenant_id, breach_id) DO NOTHING""",
            (
                breach.tenant_id,
                breach.breach_id or breach.event_id,
                when(breach.occurred_at),
                breach.SerializeToString(deterministic=True),
            ),
        )
    ]


def kill_switch_rows(change: events_pb2.KillSwitchChanged) -> list[Statement]:
    return [
        (
            """INSERT INTO analytics.kill_switch_changes (tenant_id, event_id, engaged, occurred_at, payload)
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, event_id) DO NOTHING""",
            (
                change.tenant_id or PLATFORM,
                change.event_id,
                change.engaged,
                when(change.occurred_at),
                change.SerializeToString(deterministic=True),
            ),
        )
    ]


def audit_rows(record: events_pb2.AuditRecord) -> list[Statement]:
    return [
        (
            """INSERT INTO analytics.audit_records (tenant_id, event_id, occurred_at, payload) VALUES ($1, $2, $3, $4)
            ON CONFLICT (tenant_id, event_id) DO NOTHING""",
            (
                record.tenant_id,
                record.event_id,
                when(record.occurred_at),
                record.SerializeToString(deterministic=True),
            ),
        )
    ]


def tenant_rows(event: events_pb2.TenantEvent) -> list[Statement]:
    return [
        (
            """INSERT INTO analytics.tenant_versions (tenant_id, version, kind, occurred_at, plan, payload)
            VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, version) DO NOTHING""",
            (
                event.tenant_id,
                event.tenant.version,
                event.kind,
                when(event.occurred_at),
                event.tenant.plan.SerializeToString(deterministic=True),
                event.SerializeToString(deterministic=True),
            ),
        )
    ]


def market_rows(update: events_pb2.MarketUpdate) -> list[Statement]:
    rows: list[Statement] = [
        (
            """INSERT INTO analytics.market_blocks (chain_id, block_hash, block_number, block_time, pool_count)
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT (chain_id, block_hash) DO NOTHING""",
            (
                update.chain_id,
                update.block_hash,
                update.block_number,
                when(update.block_timestamp if update.HasField("block_timestamp") else update.occurred_at),
                len(update.pools),
            ),
        )
    ]
    # The feed is written in stream order: the later update of a height wins (a reorged block's
    # replacement), a reorg's update (the canonical state of the pools it rewound) replaces what
    # the orphaned blocks left even at a lower height, and a redelivered older block never rolls
    # a pool back.
    upsert = """INSERT INTO analytics.pool_reserves (chain_id, address, dex, token0, token1, reserve0, reserve1,
            fee_bps, block_number, observed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $11)
        ON CONFLICT (chain_id, address) DO UPDATE SET reserve0 = excluded.reserve0, reserve1 = excluded.reserve1,
            block_number = excluded.block_number, observed_at = excluded.observed_at
        WHERE $10 OR excluded.block_number >= analytics.pool_reserves.block_number"""
    observed_at = when(update.block_timestamp if update.HasField("block_timestamp") else update.occurred_at)
    for pool in update.pools:
        rows.append(
            (
                upsert,
                (
                    update.chain_id,
                    pool.address.lower(),
                    pool.dex,
                    pool.token0.lower(),
                    pool.token1.lower(),
                    _int(pool.reserve0),
                    _int(pool.reserve1),
                    pool.fee_bps,
                    update.block_number,
                    update.reorg,
                    observed_at,
                ),
            )
        )
    return rows


def rebalance_status_rows(event: execution_pb2.RebalanceUpdated) -> list[Statement]:
    """Execution's latest report of a rebalance accepted here; an older report (lower sequence)
    never replaces a newer one, whatever order they arrive in."""
    return [
        (
            """UPDATE analytics.rebalances SET execution_result = $3, execution_sequence = $4
            WHERE tenant_id = $1 AND rebalance_id = $2 AND execution_sequence < $4""",
            (
                event.tenant_id,
                event.result.rebalance_id,
                event.result.SerializeToString(deterministic=True),
                event.sequence,
            ),
        )
    ]
