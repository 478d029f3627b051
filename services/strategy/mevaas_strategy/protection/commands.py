"""Leverage protection's use cases, one transaction each (the protection row, its audit record and
the idempotency record together). What needs the outside world is checked first: the chain's
Aave market and reserves and the account's health factor from the engine's lending index (the
same state the monitor acts on), and that the account is one of the tenant's platform wallets
(execution's treasury answers for the tenant's wallets only; its executor is recorded)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg
from eth_utils.address import to_checksum_address

from mevaas.execution.v1 import execution_pb2
from mevaas.strategy.v1 import strategy_pb2 as pb
from mevaas_chain.lending.math import HEALTH_FACTOR_LIQUIDATION_THRESHOLD, MAX_UINT, account_data
from mevaas_core import audit, subjects
from mevaas_core.auth import Principal
from mevaas_core.bus import Bus, NoRespondersError, RemoteError, RequestTimeoutError
from mevaas_core.db import tenant_transaction
from mevaas_core.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, Unavailable
from mevaas_core.idempotency import IdempotentCall
from mevaas_strategies.market import ChainMarket
from mevaas_strategy.protection import convert, store
from mevaas_strategy.protection.domain import (
    ACTIVE,
    PROTO_TO_STATE,
    REMOVED,
    Levels,
    TransitionRefused,
    transition,
)

SCHEMA = "strategy"
# The chain's market with its lending state current (Engine.lending_now).
MarketOf = Callable[[int], Awaitable[ChainMarket | None]]


def _live(row: asyncpg.Record | None, protection_id: str) -> asyncpg.Record:
    if row is None:
        raise NotFound("protected position", protection_id)
    return row


class ProtectionCommands:
    def __init__(self, pool: asyncpg.Pool, bus: Bus | None, market: MarketOf) -> None:
        self._pool = pool
        self._bus = bus
        self._market = market

    # checks against the outside world ----------------------------------------------------------

    async def _lending(self, chain_id: int) -> ChainMarket:
        market = await self._market(chain_id)
        if market is None or market.lending is None:
            raise InvalidArgument(FieldViolation("chain_id", f"chain {chain_id} has no Aave V3 market here"))
        return market

    def _reserve(self, market: ChainMarket, asset: str, field: str) -> str:
        assert market.lending is not None
        known = {a.lower(): a for a in market.lending.reserves}
        if asset.lower() not in known:
            raise InvalidArgument(
                FieldViolation(field, f"{asset} is not a reserve of chain {market.chain_id}'s Aave market")
            )
        return known[asset.lower()]

    async def _executor_of(self, tenant_id: str, chain_id: int, account: str) -> str:
        """The wallet's executor contract ("" without one); NOT_FOUND unless it is the tenant's."""
        if self._bus is None:
            raise Unavailable("checking the wallet needs the message bus (execution owns wallets)")
        try:
            reply = await self._bus.request(
                subjects.EXECUTION_TREASURY_HOLDINGS,
                execution_pb2.TreasuryHoldingsRequest(chain_id=chain_id, wallet_address=account),
                execution_pb2.TreasuryHoldingsResponse,
                tenant_id=tenant_id,
            )
        except (NoRespondersError, RequestTimeoutError) as exc:
            raise Unavailable(f"execution did not answer the wallet check: {exc}") from exc
        except RemoteError as exc:
            if exc.code == 400:
                raise InvalidArgument(FieldViolation("chain_id", exc.message)) from exc
            raise Unavailable(f"execution could not check the wallet: {exc.message}") from exc
        mine = [h for h in reply.holdings if h.wallet_address.lower() == account.lower()]
        if not mine:
            raise NotFound("wallet", account)
        return next((h.executor_address for h in mine if h.executor_address), "")

    def _health_factor(self, market: ChainMarket, account: str) -> int | None:
        lending = market.lending
        assert lending is not None
        position = lending.positions.get(account)
        if position is None or not position.has_debt:
            return None
        hf = account_data(position, lending.reserves, lending.prices, lending.block_timestamp).health_factor
        return None if hf == MAX_UINT else hf

    # mutations ----------------------------------------------------------------------------------

    async def protect(
        self, principal: Principal, request: pb.ProtectPositionRequest, levels: Levels
    ) -> pb.ProtectPositionResponse:
        tenant_id = principal.tenant_id
        account = to_checksum_address(request.account)
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            call = IdempotentCall(SCHEMA, tenant_id=tenant_id, method="ProtectPosition", request=request)
            replay = await call.replay(conn, pb.ProtectPositionResponse)
        if replay is not None:
            return replay
        market = await self._lending(request.chain_id)
        collateral = (
            self._reserve(market, request.collateral_asset, "collateral_asset")
            if request.collateral_asset
            else ""
        )
        debt = self._reserve(market, request.debt_asset, "debt_asset") if request.debt_asset else ""
        executor = await self._executor_of(tenant_id, request.chain_id, account)
        hf = self._health_factor(market, account)
        if hf is not None and hf < HEALTH_FACTOR_LIQUIDATION_THRESHOLD:
            raise FailedPrecondition(
                f"account {account} is already under health factor 1 ({convert.hf(hf)}): it can be "
                "liquidated now, protection cannot restore it",
                subject="account",
                violation_type="HEALTH_FACTOR",
            )
        async with tenant_transaction(self._pool, tenant_id) as conn:
            replay = await call.replay(conn, pb.ProtectPositionResponse)
            if replay is not None:
                return replay
            protection_id = str(uuid.uuid4())
            row = await store.insert(
                conn,
                {
                    "protection_id": protection_id,
                    "tenant_id": tenant_id,
                    "chain_id": request.chain_id,
                    "account": account,
                    "executor_address": executor,
                    "trigger_health_factor": levels.trigger,
                    "target_health_factor": levels.target,
                    "emergency_enabled": levels.emergency_enabled,
                    "emergency_health_factor": levels.emergency,
                    "collateral_asset": collateral,
                    "debt_asset": debt,
                    "registered_health_factor": hf,
                    "state": ACTIVE,
                },
            )
            if row is None:
                raise FailedPrecondition(
                    f"account {account} is already protected on chain {request.chain_id}; update that protection",
                    subject="account",
                    violation_type="ALREADY_PROTECTED",
                )
            response = pb.ProtectPositionResponse(position=convert.position(row))
            await audit.record(
                conn,
                SCHEMA,
                tenant_id=tenant_id,
                target=f"protections/{protection_id}",
                details={
                    "account": account,
                    "chain_id": str(request.chain_id),
                    "trigger": convert.hf(levels.trigger),
                    "target": convert.hf(levels.target),
                    "emergency": convert.hf(levels.emergency) if levels.emergency_enabled else "off",
                },
                idempotency_key=request.idempotency_key,
            )
            await call.remember(conn, response)
            return response

    async def update(
        self,
        principal: Principal,
        request: pb.UpdateProtectedPositionRequest,
        levels_of: Callable[[asyncpg.Record], Levels],
    ) -> pb.UpdateProtectedPositionResponse:
        """``levels_of`` merges the request into the row's levels (raising INVALID_ARGUMENT)."""
        tenant_id = principal.tenant_id
        async with tenant_transaction(self._pool, tenant_id) as conn:
            call = IdempotentCall(
                SCHEMA, tenant_id=tenant_id, method="UpdateProtectedPosition", request=request
            )
            replay = await call.replay(conn, pb.UpdateProtectedPositionResponse)
            if replay is not None:
                return replay
            row = _live(await store.get(conn, request.protection_id, for_update=True), request.protection_id)
            if row["state"] == REMOVED:
                raise FailedPrecondition(
                    "the protection was removed; register the position again",
                    subject=f"protections/{request.protection_id}",
                )
            levels = levels_of(row)
            state = row["state"]
            if request.state != pb.PROTECTION_STATE_UNSPECIFIED:
                try:
                    state = transition(row["state"], PROTO_TO_STATE[request.state])
                except TransitionRefused as exc:
                    raise FailedPrecondition(
                        str(exc), subject=f"protections/{request.protection_id}"
                    ) from None
            updated = await store.update(
                conn,
                request.protection_id,
                {
                    "trigger_health_factor": levels.trigger,
                    "target_health_factor": levels.target,
                    "emergency_health_factor": levels.emergency,
                    "emergency_enabled": levels.emergency_enabled,
                    "state": state,
                },
            )
            response = pb.UpdateProtectedPositionResponse(position=convert.position(updated))
            await audit.record(
                conn,
                SCHEMA,
                tenant_id=tenant_id,
                target=f"protections/{request.protection_id}",
                details={
                    "state": state,
                    "trigger": convert.hf(levels.trigger),
                    "target": convert.hf(levels.target),
                    "emergency": convert.hf(levels.emergency) if levels.emergency_enabled else "off",
                },
                idempotency_key=request.idempotency_key,
            )
            await call.remember(conn, response)
            return response

    async def unprotect(self, principal: Principal, protection_id: str) -> pb.UnprotectPositionResponse:
        async with tenant_transaction(self._pool, principal.tenant_id) as conn:
            row = _live(await store.get(conn, protection_id, for_update=True), protection_id)
            if row["state"] != REMOVED:
                row = await store.update(conn, protection_id, {"state": transition(row["state"], REMOVED)})
                await audit.record(
                    conn, SCHEMA, tenant_id=principal.tenant_id, target=f"protections/{protection_id}"
                )
            return pb.UnprotectPositionResponse(position=convert.position(row))

    # reads --------------------------------------------------------------------------------------

    async def get(self, tenant_id: str, protection_id: str) -> asyncpg.Record:
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            return _live(await store.get(conn, protection_id), protection_id)

    async def list_page(
        self, tenant_id: str, *, include_removed: bool, after: tuple[datetime, str] | None, limit: int
    ) -> list[asyncpg.Record]:
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            return await store.list_page(conn, include_removed=include_removed, after=after, limit=limit)
