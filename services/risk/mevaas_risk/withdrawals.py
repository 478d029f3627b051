"""Risk's answer to execution's Withdraw: the destinations the tenant's risk limits allow
(``withdrawal_allowlist`` of the tenant-level limits), on rpc.risk.withdrawal_allowlist."""

from __future__ import annotations

import asyncpg

from mevaas.common.v1 import common_pb2
from mevaas_core.bus import RequestContext, ServiceError
from mevaas_core.db import tenant_transaction
from mevaas_risk import store
from mevaas_risk.domain.limits import Limits


class WithdrawalAllowlist:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def answer(
        self, request: common_pb2.WithdrawalAllowlistRequest, ctx: RequestContext
    ) -> common_pb2.WithdrawalAllowlistResponse:
        if not ctx.tenant_id:
            raise ServiceError(400, "the request names no tenant")
        async with tenant_transaction(self.pool, ctx.tenant_id, readonly=True) as conn:
            row = await store.get_limits(conn, ctx.tenant_id, "")
        limits = (
            Limits.from_proto(common_pb2.RiskLimits.FromString(bytes(row["limits"]))) if row else Limits()
        )
        return common_pb2.WithdrawalAllowlistResponse(addresses=sorted(limits.withdrawal_allowlist or ()))
