"""StrategyService: strategy definitions with immutable versions, validation against the chain
registry and the tenant's plan. Each mutation is one transaction (state + idempotency record)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.strategy.v1 import strategy_pb2, strategy_pb2_grpc
from mevaas_chain.registry import ChainRegistry
from mevaas_core.auth import Principal, Role
from mevaas_core.bus import Bus
from mevaas_core.db import tenant_transaction
from mevaas_core.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from mevaas_core.grpckit import ALL_TENANT_ROLES, current_principal, rpc
from mevaas_core.idempotency import IdempotentCall
from mevaas_core.pagination import decode_page_token, encode_page_token
from mevaas_core.validation import Validator
from mevaas_strategy import store
from mevaas_strategy.backtests import (
    BACKTEST_SUBJECT,
    BACKTEST_TIMEOUT_S,
    COMPARE_SUBJECT,
    GET_BACKTEST_SUBJECT,
    ask_analytics,
    backtest_id,
)
from mevaas_strategy.domain.plans import PlanLimits, limits_for_tier
from mevaas_strategy.domain.plugins import Violation
from mevaas_strategy.domain.validation import UsdPrice, validate_config

Ctx = Any
SCHEMA = "strategy"
WRITERS = (Role.OWNER, Role.ADMIN, Role.TRADER)
READERS = tuple(ALL_TENANT_ROLES)
# Session states in which a strategy may be deleted (or has no session at all).
DELETABLE_SESSION_STATES = frozenset({common_pb2.EXECUTION_STATE_STOPPED, common_pb2.EXECUTION_STATE_FAILED})
BACKTEST_UNAVAILABLE = "backtesting needs the message bus (analytics runs the replays)"
MAX_BACKTEST_BLOCKS = 100_000
MAX_LATENCY_BLOCKS = 10


def _timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def _config(data: bytes) -> strategy_pb2.StrategyConfig:
    config = strategy_pb2.StrategyConfig()
    config.ParseFromString(bytes(data))
    return config


def strategy_message(row: asyncpg.Record) -> strategy_pb2.Strategy:
    return strategy_pb2.Strategy(
        strategy_id=row["strategy_id"],
        tenant_id=row["tenant_id"],
        version=row["version"],
        config=_config(row["config"]),
        status=strategy_pb2.STRATEGY_STATUS_ACTIVE
        if row["status"] == "active"
        else strategy_pb2.STRATEGY_STATUS_DELETED,
        created_at=_timestamp(row["created_at"]),
        updated_at=_timestamp(row["version_created_at"]),
        updated_by=row["created_by"],
    )


def _invalid(violations: list[Violation], prefix: str = "config.") -> InvalidArgument:
    return InvalidArgument([FieldViolation(prefix + v.field, v.description) for v in violations])


class StrategyServicer(strategy_pb2_grpc.StrategyServiceServicer):
    def __init__(
        self,
        pool: asyncpg.Pool,
        chains: Callable[[], ChainRegistry],
        usd_price: UsdPrice,
        bus: Bus | None = None,
    ) -> None:
        self._pool = pool
        self._chains = chains
        self._usd_price = usd_price
        self._bus = bus

    # helpers --------------------------------------------------------------------------------------

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
        total = self._usd_value(token.chain_id, token.address, int(config.allocation.amount)) or Decimal(0)
        for row in await store.active_allocations(conn, except_id=except_id):
            total += self._usd_value(row["alloc_chain_id"], row["alloc_token"], int(row["alloc_amount"])) or 0
        if total > plan.max_allocation_usd:
            raise FailedPrecondition(
                f"the tenant's strategies would allocate about {total:.2f} USD, above the plan's "
                f"max_allocation of {plan.max_allocation_usd} USD",
                subject="allocation",
                violation_type="PLAN",
            )

    @staticmethod
    def _live(row: asyncpg.Record | None, strategy_id: str) -> asyncpg.Record:
        if row is None or row["status"] != "active":
            raise NotFound("strategy", strategy_id)
        return row

    # RPCs -----------------------------------------------------------------------------------------

    @rpc(*WRITERS)
    async def CreateStrategy(
        self, request: strategy_pb2.CreateStrategyRequest, context: Ctx
    ) -> strategy_pb2.CreateStrategyResponse:
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        v.check(request.HasField("config"), "config", "is required")
        v.raise_if_any()
        principal = current_principal()
        tenant_id = principal.tenant_id
        async with tenant_transaction(self._pool, tenant_id) as conn:
            call = IdempotentCall(SCHEMA, tenant_id=tenant_id, method="CreateStrategy", request=request)
            replay = await call.replay(conn, strategy_pb2.CreateStrategyResponse)
            if replay is not None:
                return replay
            violations = await self._violations(conn, principal, request.config)
            if violations:
                raise _invalid(violations)
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
            response = strategy_pb2.CreateStrategyResponse(strategy=strategy_message(row))
            await call.remember(conn, response)
            return response

    @rpc(*READERS)
    async def GetStrategy(
        self, request: strategy_pb2.GetStrategyRequest, context: Ctx
    ) -> strategy_pb2.GetStrategyResponse:
        v = Validator()
        v.required(request.strategy_id, "strategy_id")
        v.raise_if_any()
        async with tenant_transaction(self._pool, current_principal().tenant_id, readonly=True) as conn:
            row = self._live(
                await store.get_strategy(conn, request.strategy_id, request.version), request.strategy_id
            )
        return strategy_pb2.GetStrategyResponse(strategy=strategy_message(row))

    @rpc(*READERS)
    async def ListStrategies(
        self, request: strategy_pb2.ListStrategiesRequest, context: Ctx
    ) -> strategy_pb2.ListStrategiesResponse:
        v = Validator()
        size = v.page_size(request.page.page_size)
        v.raise_if_any()
        filters = f"{request.type}:{int(request.include_deleted)}"
        cursor = decode_page_token(request.page.page_token, 3)
        after: tuple[datetime, str] | None = None
        if cursor is not None:
            if cursor[0] != filters:
                raise InvalidArgument(FieldViolation("page.page_token", "was issued for other filters"))
            try:
                after = (datetime.fromisoformat(str(cursor[1])), str(cursor[2]))
            except ValueError:
                raise InvalidArgument(
                    FieldViolation("page.page_token", "is not a page token issued by this API")
                ) from None
        async with tenant_transaction(self._pool, current_principal().tenant_id, readonly=True) as conn:
            rows = await store.list_strategies(
                conn, type_=request.type, include_deleted=request.include_deleted, after=after, limit=size + 1
            )
        response = strategy_pb2.ListStrategiesResponse(strategies=[strategy_message(r) for r in rows[:size]])
        if len(rows) > size:
            last = rows[size - 1]
            response.page.next_page_token = encode_page_token(
                filters, last["created_at"].isoformat(), last["strategy_id"]
            )
        return response

    @rpc(*WRITERS)
    async def UpdateStrategy(
        self, request: strategy_pb2.UpdateStrategyRequest, context: Ctx
    ) -> strategy_pb2.UpdateStrategyResponse:
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        v.required(request.strategy_id, "strategy_id")
        v.check(request.HasField("config"), "config", "is required")
        v.check(request.expected_version > 0, "expected_version", "must be > 0")
        v.check(len(request.change_note) <= 1024, "change_note", "must be at most 1024 characters")
        v.raise_if_any()
        principal = current_principal()
        tenant_id = principal.tenant_id
        async with tenant_transaction(self._pool, tenant_id) as conn:
            call = IdempotentCall(SCHEMA, tenant_id=tenant_id, method="UpdateStrategy", request=request)
            replay = await call.replay(conn, strategy_pb2.UpdateStrategyResponse)
            if replay is not None:
                return replay
            current = self._live(
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
                raise _invalid(violations)
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
            response = strategy_pb2.UpdateStrategyResponse(strategy=strategy_message(row))
            await call.remember(conn, response)
            return response

    @rpc(*READERS)
    async def ListStrategyVersions(
        self, request: strategy_pb2.ListStrategyVersionsRequest, context: Ctx
    ) -> strategy_pb2.ListStrategyVersionsResponse:
        v = Validator()
        v.required(request.strategy_id, "strategy_id")
        size = v.page_size(request.page.page_size)
        v.raise_if_any()
        cursor = decode_page_token(request.page.page_token, 2)
        before: int | None = None
        if cursor is not None:
            if cursor[0] != request.strategy_id or not isinstance(cursor[1], int):
                raise InvalidArgument(FieldViolation("page.page_token", "was issued for another strategy"))
            before = cursor[1]
        async with tenant_transaction(self._pool, current_principal().tenant_id, readonly=True) as conn:
            self._live(await store.get_strategy(conn, request.strategy_id), request.strategy_id)
            rows = await store.list_versions(conn, request.strategy_id, before=before, limit=size + 1)
        response = strategy_pb2.ListStrategyVersionsResponse(
            versions=[
                strategy_pb2.StrategyVersion(
                    strategy_id=r["strategy_id"],
                    version=r["version"],
                    config=_config(r["config"]),
                    created_at=_timestamp(r["created_at"]),
                    created_by=r["created_by"],
                    change_note=r["change_note"],
                )
                for r in rows[:size]
            ]
        )
        if len(rows) > size:
            response.page.next_page_token = encode_page_token(request.strategy_id, rows[size - 1]["version"])
        return response

    @rpc(*WRITERS)
    async def DeleteStrategy(
        self, request: strategy_pb2.DeleteStrategyRequest, context: Ctx
    ) -> strategy_pb2.DeleteStrategyResponse:
        v = Validator()
        v.required(request.strategy_id, "strategy_id")
        v.raise_if_any()
        async with tenant_transaction(self._pool, current_principal().tenant_id) as conn:
            row = await store.get_strategy(conn, request.strategy_id, for_update=True)
            if row is None:
                raise NotFound("strategy", request.strategy_id)
            if row["status"] == "deleted":
                return strategy_pb2.DeleteStrategyResponse()
            state = await store.session_state(conn, request.strategy_id)
            if state is not None and state not in DELETABLE_SESSION_STATES:
                raise FailedPrecondition(
                    "the strategy's execution session is "
                    f"{common_pb2.ExecutionState.Name(state)}; stop it first",  # type: ignore[arg-type]
                    subject=f"strategies/{request.strategy_id}",
                )
            await store.mark_deleted(conn, request.strategy_id)
        return strategy_pb2.DeleteStrategyResponse()

    @rpc(*WRITERS)
    async def ValidateStrategy(
        self, request: strategy_pb2.ValidateStrategyRequest, context: Ctx
    ) -> strategy_pb2.ValidateStrategyResponse:
        v = Validator()
        v.check(request.HasField("config"), "config", "is required")
        v.raise_if_any()
        principal = current_principal()
        async with tenant_transaction(self._pool, principal.tenant_id, readonly=True) as conn:
            violations = await self._violations(conn, principal, request.config)
            if request.config.name and await store.name_taken(
                conn, request.config.name, except_id=request.strategy_id
            ):
                violations.append(Violation("name", "is taken by another strategy", "ALREADY_EXISTS"))
        return strategy_pb2.ValidateStrategyResponse(
            valid=not violations,
            violations=[
                strategy_pb2.ConfigViolation(field=x.field, description=x.description, reason=x.reason)
                for x in violations
            ],
        )

    def _backtest_bus(self) -> Bus:
        if self._bus is None:
            raise FailedPrecondition(BACKTEST_UNAVAILABLE, subject="backtests", violation_type="FEATURE")
        return self._bus

    @rpc(*WRITERS)
    async def Backtest(
        self, request: strategy_pb2.BacktestRequest, context: Ctx
    ) -> strategy_pb2.BacktestResponse:
        """Runs within the call (analytics replays the recorded history) and answers the finished
        backtest; the same idempotency key answers the stored one."""
        principal = current_principal()
        bus = self._backtest_bus()
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        v.required(request.strategy_id, "strategy_id")
        span = request.block_range
        if request.HasField("time_range"):
            v.fail("time_range", "is not supported: market history is indexed by block, give block_range")
        elif not request.HasField("block_range"):
            v.fail("block_range", "is required")
        else:
            v.check(span.chain_id > 0, "block_range.chain_id", "is required")
            v.check(span.from_block > 0, "block_range.from_block", "is required")
            if v.check(span.to_block >= span.from_block, "block_range.to_block", "must be >= from_block"):
                v.check(
                    span.to_block - span.from_block < MAX_BACKTEST_BLOCKS,
                    "block_range",
                    f"must span at most {MAX_BACKTEST_BLOCKS} blocks",
                )
        a = request.assumptions
        if a.gas_price_wei:
            v.integer_amount(a.gas_price_wei, "assumptions.gas_price_wei")
        if a.priority_fee_wei:
            v.integer_amount(a.priority_fee_wei, "assumptions.priority_fee_wei")
        if a.HasField("inclusion_probability_percent"):
            v.decimal(
                a.inclusion_probability_percent.value,
                "assumptions.inclusion_probability_percent",
                low=Decimal(0),
                high=Decimal(100),
            )
        v.check(
            a.latency_blocks <= MAX_LATENCY_BLOCKS,
            "assumptions.latency_blocks",
            f"must be at most {MAX_LATENCY_BLOCKS}",
        )
        v.raise_if_any()
        async with tenant_transaction(self._pool, principal.tenant_id, readonly=True) as conn:
            row = await store.get_strategy(conn, request.strategy_id, request.strategy_version)
        if row is None or row["status"] != "active":
            raise NotFound("strategy", request.strategy_id)
        backtest = strategy_pb2.Backtest(
            backtest_id=backtest_id(principal.tenant_id, request.idempotency_key),
            strategy_id=request.strategy_id,
            strategy_version=row["version"],
            status=strategy_pb2.BACKTEST_STATUS_PENDING,
            block_range=span,
            assumptions=a,
        )
        done = await ask_analytics(
            bus,
            BACKTEST_SUBJECT,
            backtest,
            strategy_pb2.Backtest,
            tenant_id=principal.tenant_id,
            resource="strategy",
            name=request.strategy_id,
            timeout=BACKTEST_TIMEOUT_S,
        )
        return strategy_pb2.BacktestResponse(backtest=done)

    @rpc(*READERS)
    async def GetBacktest(
        self, request: strategy_pb2.GetBacktestRequest, context: Ctx
    ) -> strategy_pb2.GetBacktestResponse:
        principal = current_principal()
        bus = self._backtest_bus()
        v = Validator()
        v.required(request.backtest_id, "backtest_id")
        v.raise_if_any()
        return await ask_analytics(
            bus,
            GET_BACKTEST_SUBJECT,
            request,
            strategy_pb2.GetBacktestResponse,
            tenant_id=principal.tenant_id,
            resource="backtest",
            name=request.backtest_id,
        )

    @rpc(*READERS)
    async def CompareBacktestToLive(
        self, request: strategy_pb2.CompareBacktestToLiveRequest, context: Ctx
    ) -> strategy_pb2.CompareBacktestToLiveResponse:
        principal = current_principal()
        bus = self._backtest_bus()
        v = Validator()
        v.required(request.backtest_id, "backtest_id")
        v.raise_if_any()
        return await ask_analytics(
            bus,
            COMPARE_SUBJECT,
            request,
            strategy_pb2.CompareBacktestToLiveResponse,
            tenant_id=principal.tenant_id,
            resource="backtest",
            name=request.backtest_id,
        )
