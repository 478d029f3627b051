"""Translation between execution's rows and its protobuf messages (used by api and events)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import asyncpg
from eth_utils.address import to_checksum_address
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_chain.registry import ChainRegistry
from mevaas_execution.domain.sessions import STATE_TO_PROTO
from mevaas_execution.protection.domain import relays

# The registry's name for a chain's native coin.
NATIVE_ADDRESS = "0x" + "00" * 20

RESULT_STATUS: dict[str, common_pb2.ExecutionResultStatus.ValueType] = {
    "signed": common_pb2.EXECUTION_RESULT_STATUS_SUBMITTED,
    "submitted": common_pb2.EXECUTION_RESULT_STATUS_SUBMITTED,
    "included": common_pb2.EXECUTION_RESULT_STATUS_INCLUDED,
    "reverted": common_pb2.EXECUTION_RESULT_STATUS_REVERTED,
    "dropped": common_pb2.EXECUTION_RESULT_STATUS_DROPPED,
    "stale": common_pb2.EXECUTION_RESULT_STATUS_STALE,
    "failed": common_pb2.EXECUTION_RESULT_STATUS_FAILED,
}
STATUS_FILTER = {
    common_pb2.EXECUTION_RESULT_STATUS_SUBMITTED: "submitted",
    common_pb2.EXECUTION_RESULT_STATUS_INCLUDED: "included",
    common_pb2.EXECUTION_RESULT_STATUS_REVERTED: "reverted",
    common_pb2.EXECUTION_RESULT_STATUS_DROPPED: "dropped",
    common_pb2.EXECUTION_RESULT_STATUS_STALE: "stale",
    common_pb2.EXECUTION_RESULT_STATUS_FAILED: "failed",
}
PROTECTED_STATUS = {
    "received": execution_pb2.PROTECTED_TRANSACTION_STATUS_RECEIVED,
    "submitted": execution_pb2.PROTECTED_TRANSACTION_STATUS_SUBMITTED,
    "included": execution_pb2.PROTECTED_TRANSACTION_STATUS_INCLUDED,
    "reverted": execution_pb2.PROTECTED_TRANSACTION_STATUS_REVERTED,
    "expired": execution_pb2.PROTECTED_TRANSACTION_STATUS_EXPIRED,
    "failed": execution_pb2.PROTECTED_TRANSACTION_STATUS_FAILED,
}
PROTECTED_STATUS_FILTER = {value: name for name, value in PROTECTED_STATUS.items()}


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def now_timestamp() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def checksum(address: str) -> str:
    return str(to_checksum_address(address)) if address else ""


def wallet(
    row: asyncpg.Record, executors: Iterable[execution_pb2.WalletExecutor] = ()
) -> execution_pb2.Wallet:
    return execution_pb2.Wallet(
        wallet_id=row["wallet_id"],
        address=checksum(row["address"]),
        label=row["label"],
        imported=row["imported"],
        is_default=row["is_default"],
        created_at=timestamp(row["created_at"]),
        executors=executors,
    )


def deployment(row: asyncpg.Record) -> execution_pb2.ExecutorDeployment:
    return execution_pb2.ExecutorDeployment(
        wallet_address=checksum(row["wallet_address"]),
        chain_id=row["chain_id"],
        address=checksum(row["address"]),
        deploy_tx_hash=row["deploy_tx_hash"],
        replaced_address=checksum(row["replaced_address"]),
        reason=row["reason"],
        deployed_at=timestamp(row["deployed_at"]),
    )


def session(row: asyncpg.Record) -> execution_pb2.ExecutionSession:
    return execution_pb2.ExecutionSession(
        session_id=row["session_id"],
        tenant_id=row["tenant_id"],
        strategy_id=row["strategy_id"],
        strategy_version=row["strategy_version"],
        state=STATE_TO_PROTO[row["state"]],
        wallet_address=checksum(row["wallet_address"]),
        chain_ids=list(row["chain_ids"]),
        submission_mode=row["submission_mode"],
        started_at=timestamp(row["started_at"]),
        updated_at=timestamp(row["updated_at"]),
        stopped_at=timestamp(row["stopped_at"]),
        state_reason=row["state_reason"],
    )


def _amount(value: object) -> str:
    return "" if value is None else str(int(value))  # type: ignore[call-overload]


def profit_token(row: asyncpg.Record) -> common_pb2.Token:
    return common_pb2.Token.FromString(bytes(row["profit_token"]))


def tx_hashes(row: asyncpg.Record) -> list[str]:
    """A cross-chain execution's leg transactions, or the single-chain transaction."""
    legs = row.get("leg_tx_hashes")
    if legs:
        return list(legs)
    return [row["tx_hash"]] if row["tx_hash"] else []


def execution(row: asyncpg.Record) -> execution_pb2.Execution:
    final = row["status"] in ("included", "reverted", "dropped", "stale", "failed")
    return execution_pb2.Execution(
        execution_id=row["execution_id"],
        session_id=row["session_id"],
        strategy_id=row["strategy_id"],
        strategy_version=row["strategy_version"],
        opportunity_id=row["opportunity_id"],
        rebalance_id=row["rebalance_id"],
        chain_id=row["chain_id"],
        status=RESULT_STATUS[row["status"]],
        tx_hashes=tx_hashes(row),
        bundle_hash=row["bundle_hash"],
        submission_mode=row["submission_mode"],
        block_number=row["block_number"],
        expected_profit=_amount(row["expected_profit"]),
        realized_profit=_amount(row["realized_profit"]) if final else "",
        profit_token=profit_token(row),
        gas_used=row["gas_used"],
        effective_gas_price=_amount(row["effective_gas_price"]),
        gas_cost=_amount(row["gas_cost"]),
        wallet_address=checksum(row["wallet_address"]),
        created_at=timestamp(row["created_at"]),
        submitted_at=timestamp(row["submitted_at"]),
        finalized_at=timestamp(row["finalized_at"]),
        error=row["error"],
        block_to_submission_ms=row["block_to_submission_ms"],
    )


def result_event(row: asyncpg.Record, event_id: str) -> events_pb2.ExecutionResult:
    """The ExecutionResult describing the row's current status."""
    return events_pb2.ExecutionResult(
        event_id=event_id,
        tenant_id=row["tenant_id"],
        occurred_at=timestamp(row["finalized_at"] or row["submitted_at"] or row["created_at"]),
        execution_id=row["execution_id"],
        opportunity_id=row["opportunity_id"],
        session_id=row["session_id"],
        strategy_id=row["strategy_id"],
        strategy_version=row["strategy_version"],
        reservation_id=row["reservation_id"],
        chain_id=row["chain_id"],
        status=RESULT_STATUS[row["status"]],
        tx_hashes=tx_hashes(row),
        bundle_hash=row["bundle_hash"],
        block_number=row["block_number"],
        gas_used=row["gas_used"],
        effective_gas_price=_amount(row["effective_gas_price"]),
        gas_cost=_amount(row["gas_cost"]),
        realized_profit=_amount(row["realized_profit"]),
        expected_profit=_amount(row["expected_profit"]),
        profit_token=profit_token(row),
        submission_mode=row["submission_mode"],
        error=row["error"],
        timestamps=events_pb2.HopTimestamps.FromString(bytes(row["timestamps"])),
        rebalance_id=row["rebalance_id"],
        wallet_address=checksum(row["wallet_address"]),
    )


def registry_token(registry: ChainRegistry, chain_id: int, address: str) -> common_pb2.Token:
    """The token with its symbol and decimals from the chain registry. One the registry does not
    know keeps symbol "" and decimals 0: readers show its amounts in base units, never guessing."""
    token = common_pb2.Token(chain_id=chain_id, address=address)
    try:
        config = registry.get(chain_id)
    except KeyError:
        return token
    if address.lower() == NATIVE_ADDRESS:
        token.symbol, token.decimals = config.native_symbol, 18
        return token
    info = next((t for t in config.tokens if t.address.lower() == address.lower()), None)
    if info is not None:
        token.symbol, token.decimals = info.symbol, info.decimals
    elif (config.wrapped_native or "").lower() == address.lower():
        # Named as analytics' pricing names it when the registry lists no entry for it.
        token.symbol, token.decimals = f"W{config.native_symbol}", 18
    return token


def protected(row: asyncpg.Record, registry: ChainRegistry) -> execution_pb2.ProtectedTransaction:
    return execution_pb2.ProtectedTransaction(
        protected_transaction_id=row["protected_transaction_id"],
        chain_id=row["chain_id"],
        tx_hash=row["tx_hash"],
        sender=checksum(row["sender"]),
        nonce=row["nonce"],
        mode=row["mode"],
        status=PROTECTED_STATUS[row["status"]],
        max_block_number=row["max_block_number"],
        block_number=row["block_number"],
        received_at=timestamp(row["received_at"]),
        submitted_at=timestamp(row["submitted_at"]),
        included_at=timestamp(row["included_at"]),
        error=row["error"],
        refund=execution_pb2.BackrunRefund(
            backrun_tx_hash=row["backrun_tx_hash"],
            backrun_profit=str(row["backrun_profit"]),
            token=registry_token(registry, row["chain_id"], row["refund_token"]),
            amount=str(row["refund_amount"]),
            gas_refund=str(row["gas_refund"]),
            share_bps=row["refund_share_bps"] or 0,
        )
        if row["backrun_tx_hash"]
        else None,
        refund_share_bps=row["refund_share_bps"],
        protection_fee=common_pb2.Money(
            currency_code=row["fee_currency"],
            amount=str(row["protection_fee"] + row["fair_ordering_fee"]),
        )
        if row["fee_currency"]
        else None,
        fast=row["fast"],
        relay_outcomes=[
            execution_pb2.RelayOutcome(
                relay=o["relay"], accepted=o["accepted"], target_block=o["targetBlock"], reason=o["reason"]
            )
            for o in relays.decode(row["relay_outcomes"])
        ],
    )
