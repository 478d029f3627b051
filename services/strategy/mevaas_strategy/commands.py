"""Strategy's use cases, one transaction each (state, audit record and idempotency record
together): create, update (a new immutable version), delete and validate, checked against the
chain registry and the tenant's plan. The API validates the request's shape and converts."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

import asyncpg

from mevaas.common.v1 import common_pb2
from mevaas.strategy.v1 import strategy_pb2
from mevaas_chain.registry import ChainRegistry
from mevaas_core import audit
from mevaas_core.auth import Principal
from mevaas_core.db import tenant_transaction
from mevaas_core.errors import AlreadyExists, FailedPrecondition, NotFound, ResourceExhausted
from mevaas_core.idempotency import IdempotentCall
from mevaas_strategies.plugins import Violation
from mevaas_strategy import convert, store
from mevaas_strategy.domain.plans import PlanLimits, limits_for_tier
from mevaas_strategy.domain.validation import UsdPrice, validate_config

SCHEMA = "strategy"
# Session states in which a strategy may be deleted (or has no session at all).
DELETABLE_SESSION_STATES = frozenset({common_pb2.EXECUTION_STATE_STOPPED, common_pb2.EXECUTION_STATE_FAILED})


def live(row: asyncpg.Record | None, strategy_id: str) -> asyncpg.Record:
    """The strategy row, NOT_FOUND when it does not exist or is deleted."""
    if row is None or row["status"] != "active":
        raise NotFound("strategy", strategy_id)
    return row


class StrategyCommands:
    def __init__(self, pool: asyncpg.Pool, chains: Callable[[], ChainRegistry], usd_price: UsdPrice) -> None:
        self._pool = pool
        self._chains = chains
        self._usd_price = usd_price

    async def _plan(self, conn: asyncpg.Connection, principal: Principal) -> PlanLimits:
        row = await store.tenant_plan(conn, principal.tenant_id)
        if row is None:
            return limits_for_tier(principal.tier)
        plan = common_pb2.Plan()
        plan.ParseFromString(bytes(row["plan"]))
        return PlanLimits.from_plan(plan)

    async def _violations(
        self, conn: asyncpg.Connection, principal: Principal, config: strategy_pb2.StrategyConfig
    ) -> list[Violation]:
        return validate_config(config, self._chains(), await self._plan(conn, principal), self._usd_price)

    def _usd_value(self, chain_id: int, token: str, amount: int) -> Decimal | None:
        price = self._usd_price(chain_id, token)
        if price is None:
            return None
        value = price * Fraction(amount)
        return Decimal(value.numerator) / Decimal(value.denominator)

    async def _check_total_allocation(
        self,
        conn: asyncpg.Connection,
        plan: PlanLimits,
        config: strategy_pb2.StrategyConfig,
        except_id: str = "",
    ) -> None:
        """The sum of a tenant's allocations (in USD) stays within the plan's max_allocation."""
        if plan.max_allocation_usd is None:
            return
        token = config.allocation.token
        allocations = [(token.chain_id, token.address, int(config.allocation.amount))]
        for row in await store.active_allocations(conn, except_id=except_id):
            allocations.append((row["alloc_chain_id"], row["alloc_token"], int(row["alloc_amount"])))
        total = Decimal(0)
        for chain_id, address, amount in allocations:
            value = self._usd_value(chain_id, address, amount)
            if value is None:
                # An unpriced allocation is not worth nothing: the plan's cap cannot be checked.
                raise FailedPrecondition(
                    f"the allocation in token {address} on chain {chain_id} has no USD price, so the "
                    f"plan's max_allocation of {plan.max_allocation_usd} USD cannot be checked",
                    subject="allocation",
                    violation_type="UNPRICED",
                )
            total += value
        if total > plan.max_allocation_usd:
            raise FailedPrecondition(
                f"the tenant's strategies would allocate about {total:.2f} USD, above the plan's "
                f"max_allocation of {plan.max_allocation_usd} USD",
                subject="allocation",
                violation_type="PLAN",
            )

    async def create(
        self, principal: Principal, request: strategy_pb2.CreateStrategyRequest
    ) -> strategy_pb2.CreateStrategyResponse:
        tenant_id = principal.tenant_id
        async with tenant_transaction(self._pool, tenant_id) as conn:
            call = IdempotentCall(SCHEMA, tenant_id=tenant_id, method="CreateStrategy", request=request)
            replay = await call.replay(conn, strategy_pb2.CreateStrategyResponse)
            if replay is not None:
                return replay
            violations = await self._violations(conn, principal, request.config)
            if violations:
                raise convert.invalid(violations)
            await store.lock_tenant(conn, tenant_id)
            plan = await self._plan(conn, principal)
            if await store.count_active(conn) >= plan.max_strategies:
                raise ResourceExhausted(f"the plan allows at most {plan.max_strategies} strategies", 0.0)
            await self._check_total_allocation(conn, plan, request.config)
            strategy_id = str(uuid.uuid4())
            config = request.config
            if not await store.insert_strategy(
                conn,
                strategy_id=strategy_id,
                tenant_id=tenant_id,
                name=config.name,
                type_=config.type,
                alloc_chain_id=config.allocation.token.chain_id,
                alloc_token=config.allocation.token.address,
                alloc_amount=int(config.allocation.amount),
            ):
                raise AlreadyExists(f"a strategy named {config.name!r} exists")
            await store.insert_version(
                conn,
                strategy_id=strategy_id,
                tenant_id=tenant_id,
                version=1,
                config=config.SerializeToString(deterministic=True),
                created_by=principal.subject,
            )
            row = await store.get_strategy(conn, strategy_id)
            assert row is not None
            response = strategy_pb2.CreateStrategyResponse(strategy=convert.strategy(row))
            await audit.record(
                conn,
                SCHEMA,
                tenant_id=tenant_id,
                target=f"strategies/{strategy_id}",
                details={"name": config.name, "version": "1"},
                idempotency_key=request.idempotency_key,
            )
            await call.remember(conn, response)
            return response

    async def update(
        self, principal: Principal, request: strategy_pb2.UpdateStrategyRequest
    ) -> strategy_pb2.UpdateStrategyResponse:
        tenant_id = principal.tenant_id
        async with tenant_transaction(self._pool, tenant_id) as conn:
            call = IdempotentCall(SCHEMA, tenant_id=tenant_id, method="UpdateStrategy", request=request)
            replay = await call.replay(conn, strategy_pb2.UpdateStrategyResponse)
            if replay is not None:
                return replay
            current = live(
                await store.get_strategy(conn, request.strategy_id, for_update=True), request.strategy_id
            )
            if current["current_version"] != request.expected_version:
                raise FailedPrecondition(
                    f"expected version {request.expected_version} but the strategy is at version "
                    f"{current['current_version']}",
                    subject=f"strategies/{request.strategy_id}",
                    violation_type="VERSION",
                )
            violations = await self._violations(conn, principal, request.config)
            if request.config.type != current["type"]:
                violations.append(Violation("type", "cannot change; create a new strategy", "IMMUTABLE"))
            if violations:
                raise convert.invalid(violations)
            await self._check_total_allocation(
                conn, await self._plan(conn, principal), request.config, except_id=request.strategy_id
            )
            version = current["current_version"] + 1
            config = request.config
            await store.insert_version(
                conn,
                strategy_id=request.strategy_id,
                tenant_id=tenant_id,
                version=version,
                config=config.SerializeToString(deterministic=True),
                created_by=principal.subject,
                change_note=request.change_note,
            )
            if not await store.set_current_version(
                conn,
                request.strategy_id,
                version=version,
                name=config.name,
                alloc_chain_id=config.allocation.token.chain_id,
                alloc_token=config.allocation.token.address,
                alloc_amount=int(config.allocation.amount),
            ):
                raise AlreadyExists(f"a strategy named {config.name!r} exists")
            row = await store.get_strategy(conn, request.strategy_id)
            assert row is not None
            response = strategy_pb2.UpdateStrategyResponse(strategy=convert.strategy(row))
            await audit.record(
                conn,
                SCHEMA,
                tenant_id=tenant_id,
                target=f"strategies/{request.strategy_id}",
                details={"version": str(version), "change_note": request.change_note[:256]},
                idempotency_key=request.idempotency_key,
            )
            await call.remember(conn, response)
            return response

    async def delete(self, principal: Principal, strategy_id: str) -> None:
        """Delete (idempotent); refused while the strategy's session is live."""
        async with tenant_transaction(self._pool, principal.tenant_id) as conn:
            row = await store.get_strategy(conn, strategy_id, for_update=True)
            if row is None:
                raise NotFound("strategy", strategy_id)
            if row["status"] == "deleted":
                return
            state = await store.session_state(conn, strategy_id)
            if state is not None and state not in DELETABLE_SESSION_STATES:
                raise FailedPrecondition(
                    "the strategy's execution session is "
                    f"{common_pb2.ExecutionState.Name(state)}; stop it first",  # type: ignore[arg-type]
                    subject=f"strategies/{strategy_id}",
                )
            await store.mark_deleted(conn, strategy_id)
            await audit.record(conn, SCHEMA, tenant_id=row["tenant_id"], target=f"strategies/{strategy_id}")

    async def validate(
        self, principal: Principal, config: strategy_pb2.StrategyConfig, strategy_id: str
    ) -> list[Violation]:
        """What is wrong with ``config`` (none: valid), the name's uniqueness included."""
        async with tenant_transaction(self._pool, principal.tenant_id, readonly=True) as conn:
            violations = await self._violations(conn, principal, config)
            if config.name and await store.name_taken(conn, config.name, except_id=strategy_id):
                violations.append(Violation("name", "is taken by another strategy", "ALREADY_EXISTS"))
        return violations

    # reads ----------------------------------------------------------------------------------------

    async def get(self, tenant_id: str, strategy_id: str, version: int = 0) -> asyncpg.Record:
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            return live(await store.get_strategy(conn, strategy_id, version), strategy_id)

    async def list_strategies(
        self,
        tenant_id: str,
        *,
        type_: int,
        include_deleted: bool,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[asyncpg.Record]:
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            return await store.list_strategies(
                conn, type_=type_, include_deleted=include_deleted, after=after, limit=limit
            )

    async def versions(
        self, tenant_id: str, strategy_id: str, *, before: int | None, limit: int
    ) -> list[asyncpg.Record]:
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            live(await store.get_strategy(conn, strategy_id), strategy_id)
            return await store.list_versions(conn, strategy_id, before=before, limit=limit)
