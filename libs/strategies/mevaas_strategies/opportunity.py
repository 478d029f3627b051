"""A candidate as the Opportunity event every consumer reads (live engine and backtests alike).

The opportunity id is a hash of tenant, strategy id and version, chain, block hash and the
action's key, so a re-evaluation of the same block (or a second replica) yields the same id.

The deadline of each involved chain is ``its head + 1 + ceil(execution_delay_ms / block time) +
retry_attempts``: the next block, plus the blocks the configured delay spans, plus one per retry.
The opportunity's own deadline is its chain's; cross-chain legs carry their own chain's.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_strategies.market import ChainMarket, MarketView
from mevaas_strategies.model import StrategySpec
from mevaas_strategies.plugins import Candidate


def timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def opportunity_id(spec: StrategySpec, chain_id: int, block_hash: str, candidate: Candidate) -> str:
    key = f"{spec.tenant_id}|{spec.strategy_id}|{spec.version}|{chain_id}|{block_hash}|{candidate.route_key}"
    return str(uuid.UUID(bytes=hashlib.sha256(key.encode()).digest()[:16]))


def deadline_blocks(spec: StrategySpec, block_time_s: float) -> int:
    delay_blocks = math.ceil(spec.execution_delay_ms / (block_time_s * 1000)) if block_time_s > 0 else 0
    return 1 + delay_blocks + spec.retry_attempts


def deadlines(
    spec: StrategySpec, candidate: Candidate, market: ChainMarket, view: MarketView
) -> dict[int, int]:
    """Last includable block per involved chain, each in that chain's own blocks (the updated
    chain's head is `market`'s; another chain's is the latest the view has seen)."""
    result: dict[int, int] = {}
    for chain_id in dict.fromkeys((candidate.chain_id, *candidate.chain_ids)):
        chain = market if chain_id == market.chain_id else view.chain(chain_id)
        if chain is not None:
            result[chain_id] = chain.block_number + deadline_blocks(spec, chain.block_time_s)
    return result


def opportunity_message(
    spec: StrategySpec,
    candidate: Candidate,
    market: ChainMarket,
    view: MarketView,
    *,
    block_seen_at: datetime,
    detected_at: datetime,
) -> events_pb2.Opportunity:
    """`market` is the chain whose block triggered the evaluation."""
    opp_id = opportunity_id(spec, market.chain_id, market.block_hash, candidate)
    detected = timestamp(detected_at)
    by_chain = deadlines(spec, candidate, market, view)
    token = candidate.profit_token
    token_market = market if token.chain_id == market.chain_id else view.chain(token.chain_id)
    opportunity = events_pb2.Opportunity(
        event_id=opp_id,
        tenant_id=spec.tenant_id,
        occurred_at=detected,
        opportunity_id=opp_id,
        strategy_id=spec.strategy_id,
        strategy_version=spec.version,
        type=spec.type,  # type: ignore[arg-type]
        chain_id=candidate.chain_id,
        chain_ids=candidate.chain_ids,
        expected_profit=str(candidate.expected_profit),
        profit_token=common_pb2.Token(
            chain_id=token.chain_id,
            address=token.address,
            symbol=token_market.symbols.get(token.address, "") if token_market is not None else "",
            decimals=token_market.decimals.get(token.address, 0) if token_market is not None else 0,
        ),
        gas_estimate=candidate.gas_estimate,
        gas_price=str(candidate.gas_price),
        expected_profit_net_of_gas=str(candidate.net_profit),
        detected_block=market.block_number,
        deadline_block=by_chain.get(
            candidate.chain_id, market.block_number + deadline_blocks(spec, market.block_time_s)
        ),
        detected_at=detected,
        block_seen_at=timestamp(block_seen_at),
        submission_mode=spec.submission_mode,  # type: ignore[arg-type]
    )
    candidate.action.write(opportunity, by_chain)
    return opportunity
