"""StrategyService: strategy definitions with immutable versions, validated against the chain
registry and the tenant's plan. Each handler validates the request, calls one command
(commands.py) or asks analytics (backtests), and converts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from mevaas.strategy.v1 import strategy_pb2, strategy_pb2_grpc
from mevaas_core.auth import Role
from mevaas_core.bus import Bus
from mevaas_core.errors import FailedPrecondition, FieldViolation, InvalidArgument
from mevaas_core.grpckit import ALL_TENANT_ROLES, current_principal, rpc
from mevaas_core.pagination import decode_page_token, encode_page_token, keyset_page, page_after
from mevaas_core.validation import Validator
from mevaas_strategy import convert
from mevaas_strategy.backtests import (
    BACKTEST_SUBJECT,
    BACKTEST_TIMEOUT_S,
    COMPARE_SUBJECT,
    GET_BACKTEST_SUBJECT,
    LIST_BACKTESTS_SUBJECT,
    ask_analytics,
    backtest_id,
)
from mevaas_strategy.commands import SCHEMA, StrategyCommands

__all__ = ["SCHEMA", "StrategyServicer"]

Ctx = Any
WRITERS = (Role.OWNER, Role.ADMIN, Role.TRADER)
READERS = tuple(ALL_TENANT_ROLES)
BACKTEST_UNAVAILABLE = "backtesting needs the message bus (analytics runs the replays)"
MAX_BACKTEST_BLOCKS = 100_000
MAX_LATENCY_BLOCKS = 10


class StrategyServicer(strategy_pb2_grpc.StrategyServiceServicer):
    def __init__(self, commands: StrategyCommands, bus: Bus | None = None) -> None:
        self._commands = commands
        self._bus = bus

    # RPCs -----------------------------------------------------------------------------------------

    @rpc(*WRITERS)
    async def CreateStrategy(
        self, request: strategy_pb2.CreateStrategyRequest, context: Ctx
    ) -> strategy_pb2.CreateStrategyResponse:
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        v.check(request.HasField("config"), "config", "is required")
        v.raise_if_any()
        return await self._commands.create(current_principal(), request)

    @rpc(*READERS)
    async def GetStrategy(
        self, request: strategy_pb2.GetStrategyRequest, context: Ctx
    ) -> strategy_pb2.GetStrategyResponse:
        v = Validator()
        v.required(request.strategy_id, "strategy_id")
        v.raise_if_any()
        row = await self._commands.get(current_principal().tenant_id, request.strategy_id, request.version)
        return strategy_pb2.GetStrategyResponse(strategy=convert.strategy(row))

    @rpc(*READERS)
    async def ListStrategies(
        self, request: strategy_pb2.ListStrategiesRequest, context: Ctx
    ) -> strategy_pb2.ListStrategiesResponse:
        v = Validator()
        size = v.page_size(request.page.page_size)
        v.raise_if_any()
        filters = f"{request.type}:{int(request.include_deleted)}"
        after = page_after(request.page.page_token, filters)
        rows = await self._commands.list_strategies(
            current_principal().tenant_id,
            type_=request.type,
            include_deleted=request.include_deleted,
            after=after,
            limit=size + 1,
        )
        page, token = keyset_page(rows, size, "created_at", "strategy_id", filters)
        response = strategy_pb2.ListStrategiesResponse(strategies=[convert.strategy(r) for r in page])
        if token:
            response.page.next_page_token = token
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
        return await self._commands.update(current_principal(), request)

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
            if (
                cursor[0] != request.strategy_id
                or not isinstance(cursor[1], int)
                or not 0 < cursor[1] < 2**63
            ):
                raise InvalidArgument(FieldViolation("page.page_token", "was issued for another strategy"))
            before = cursor[1]
        rows = await self._commands.versions(
            current_principal().tenant_id, request.strategy_id, before=before, limit=size + 1
        )
        response = strategy_pb2.ListStrategyVersionsResponse(
            versions=[convert.version(r) for r in rows[:size]]
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
        await self._commands.delete(current_principal(), request.strategy_id)
        return strategy_pb2.DeleteStrategyResponse()

    @rpc(*WRITERS)
    async def ValidateStrategy(
        self, request: strategy_pb2.ValidateStrategyRequest, context: Ctx
    ) -> strategy_pb2.ValidateStrategyResponse:
        v = Validator()
        v.check(request.HasField("config"), "config", "is required")
        v.raise_if_any()
        found = await self._commands.validate(current_principal(), request.config, request.strategy_id)
        return strategy_pb2.ValidateStrategyResponse(valid=not found, violations=convert.violations(found))

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
        row = await self._commands.get(principal.tenant_id, request.strategy_id, request.strategy_version)
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
    async def ListBacktests(
        self, request: strategy_pb2.ListBacktestsRequest, context: Ctx
    ) -> strategy_pb2.ListBacktestsResponse:
        principal = current_principal()
        bus = self._backtest_bus()
        v = Validator()
        v.page_size(request.page.page_size)
        v.raise_if_any()
        return await ask_analytics(
            bus,
            LIST_BACKTESTS_SUBJECT,
            request,
            strategy_pb2.ListBacktestsResponse,
            tenant_id=principal.tenant_id,
            resource="strategy",
            name=request.strategy_id,
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
