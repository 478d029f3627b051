"""What the tenant's wallets and executor contracts hold, read from the chain when asked: the
answer to rpc.execution.treasury_holdings (analytics prices it for PortfolioService.GetPositions),
and each wallet's executor contracts with their liveness for ListWallets.

Balances are read at each chain's head in one JSON-RPC batch per chain (the treasury's reads:
eth_getBalance and balanceOf of every registry token), so a position equals balanceOf to the wei
at the block it names; the ledger's reconciliation status of each holding rides along."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_chain.client import RpcError, TransientRpcError
from mevaas_core.bus import RequestContext, ServiceError
from mevaas_core.db import tenant_transaction
from mevaas_execution import convert
from mevaas_execution.chains import ChainGateway
from mevaas_execution.contracts.liveness import RUNTIME_CODE
from mevaas_execution.treasury import store
from mevaas_execution.treasury.commands import Treasury
from mevaas_execution.treasury.domain.holdings import HoldingPair, pair_readings
from mevaas_execution.treasury.domain.ledger import NATIVE, Holding

ZERO_ADDRESS = "0x" + "00" * 20
Liveness = execution_pb2.ExecutorLiveness


def liveness_of(address: str, chain_id: int, code: object) -> tuple[Liveness.ValueType, str]:
    text = str(code or "0x").lower()
    if text in ("0x", "0x0"):
        return (
            execution_pb2.EXECUTOR_LIVENESS_MISSING,
            f"executor {address} on chain {chain_id} has no code (was the chain reset?)",
        )
    if text != RUNTIME_CODE:
        return (
            execution_pb2.EXECUTOR_LIVENESS_FOREIGN,
            f"executor {address} on chain {chain_id} runs foreign code, not the committed Executor",
        )
    return execution_pb2.EXECUTOR_LIVENESS_LIVE, ""


class TreasuryHoldings:
    def __init__(self, pool: asyncpg.Pool, gateway: ChainGateway, treasury: Treasury) -> None:
        self.pool = pool
        self.gateway = gateway
        self.treasury = treasury

    async def answer(
        self, request: execution_pb2.TreasuryHoldingsRequest, ctx: RequestContext
    ) -> execution_pb2.TreasuryHoldingsResponse:
        if not ctx.tenant_id:
            raise ServiceError(400, "the request names no tenant")
        if request.chain_id and request.chain_id not in self.gateway.chain_ids:
            raise ServiceError(400, f"chain {request.chain_id} is not configured")
        try:
            holdings = await self.read(
                ctx.tenant_id, chain_id=request.chain_id, wallet=request.wallet_address
            )
        except (RpcError, TransientRpcError, OSError, TimeoutError) as exc:
            raise ServiceError(503, f"a chain did not answer the balance reads: {exc}") from exc
        return execution_pb2.TreasuryHoldingsResponse(holdings=holdings)

    async def read(
        self, tenant_id: str, *, chain_id: int = 0, wallet: str = ""
    ) -> list[execution_pb2.TreasuryHolding]:
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            rows = await store.wallet_executors(conn, tenant_id, wallet)
            booked = await store.holdings(conn, tenant_id, chain_id=chain_id)
        statuses = {(r["chain_id"], r["holder_address"], r["token"]): r["status"] for r in booked}
        executors = {(r["wallet_address"].lower(), r["chain_id"]): r["address"] for r in rows if r["address"]}
        wallets = sorted({r["wallet_address"].lower() for r in rows})
        chains = [chain_id] if chain_id else self.gateway.chain_ids
        per_chain = await asyncio.gather(
            *(self._chain(c, wallets, executors, statuses) for c in chains if wallets)
        )
        return [holding for chain in per_chain for holding in chain]

    async def _chain(
        self,
        chain_id: int,
        wallets: Sequence[str],
        executors: dict[tuple[str, int], str],
        statuses: dict[tuple[int, str, str], str],
    ) -> list[execution_pb2.TreasuryHolding]:
        holdings: list[Holding] = []
        for wallet in wallets:
            holdings.extend(
                self.treasury.holdings_of(chain_id, wallet, executors.get((wallet, chain_id), ""))
            )
        block = await self.gateway.chain(chain_id).rpc.block_number()
        readings = await self.treasury.read(chain_id, holdings, block)
        read_at = Timestamp()
        read_at.FromDatetime(datetime.now(UTC))
        return [self._proto(pair, block, read_at) for pair in pair_readings(holdings, readings, statuses)]

    def _proto(self, pair: HoldingPair, block: int, read_at: Timestamp) -> execution_pb2.TreasuryHolding:
        config = self.gateway.chain(pair.chain_id).config
        if pair.token == NATIVE:
            token = common_pb2.Token(
                chain_id=pair.chain_id, address=ZERO_ADDRESS, symbol=config.native_symbol, decimals=18
            )
        else:
            info = next(t for t in config.tokens if t.address.lower() == pair.token)
            token = common_pb2.Token(
                chain_id=pair.chain_id,
                address=convert.checksum(pair.token),
                symbol=info.symbol,
                decimals=info.decimals,
            )
        return execution_pb2.TreasuryHolding(
            token=token,
            wallet_address=pair.wallet_address,
            executor_address=pair.executor_address,
            wallet_balance=str(pair.wallet_balance),
            executor_balance=str(pair.executor_balance),
            block_number=block,
            wallet_reconciliation=pair.wallet_reconciliation,
            executor_reconciliation=pair.executor_reconciliation,
            read_at=read_at,
        )

    async def wallet_executors(
        self, tenant_id: str, wallets: Sequence[str]
    ) -> dict[str, list[execution_pb2.WalletExecutor]]:
        """Lower-case wallet -> its executor per chain, with the liveness read now (eth_getCode at
        each chain's head, one batch per chain); a chain that does not answer says UNKNOWN."""
        wanted = {w.lower() for w in wallets}
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            rows = [
                r
                for r in await store.wallet_executors(conn, tenant_id)
                if r["address"] and r["wallet_address"].lower() in wanted
            ]
        by_chain: dict[int, list[asyncpg.Record]] = defaultdict(list)
        for row in rows:
            by_chain[row["chain_id"]].append(row)
        out: dict[str, list[execution_pb2.WalletExecutor]] = defaultdict(list)
        for chain_id, chain_rows in sorted(by_chain.items()):
            codes = await self._codes(chain_id, [r["address"] for r in chain_rows])
            for row, code in zip(chain_rows, codes, strict=True):
                if code is None:
                    liveness, problem = (
                        execution_pb2.EXECUTOR_LIVENESS_UNKNOWN,
                        f"chain {chain_id} is not configured here or did not answer",
                    )
                else:
                    liveness, problem = liveness_of(row["address"], chain_id, code)
                out[row["wallet_address"].lower()].append(
                    execution_pb2.WalletExecutor(
                        chain_id=chain_id,
                        address=convert.checksum(row["address"]),
                        liveness=liveness,
                        problem=problem,
                        deployed_at=convert.timestamp(row["created_at"]),
                    )
                )
        return out

    async def _codes(self, chain_id: int, addresses: Sequence[str]) -> list[object | None]:
        if chain_id not in self.gateway.chain_ids:
            return [None] * len(addresses)
        try:
            replies = await self.gateway.chain(chain_id).rpc.batch(
                [("eth_getCode", [a, "latest"]) for a in addresses]
            )
        except (RpcError, TransientRpcError, OSError, TimeoutError):
            return [None] * len(addresses)
        return [None if isinstance(r, RpcError) else r for r in replies]
