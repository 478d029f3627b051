"""SQL of the tenants' executor contracts: the one each wallet uses per chain, and every
deployment (redeploys included)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

Row = asyncpg.Record


async def get_executor(conn: asyncpg.Connection, tenant_id: str, wallet: str, chain_id: int) -> str | None:
    address: str | None = await conn.fetchval(
        "SELECT address FROM execution.executors WHERE tenant_id = $1 AND wallet_address = $2 "
        "AND chain_id = $3",
        tenant_id,
        wallet,
        chain_id,
    )
    return address


async def record_executor(
    conn: asyncpg.Connection,
    tenant_id: str,
    wallet: str,
    chain_id: int,
    address: str,
    tx_hash: str,
    *,
    replaced: str = "",
    reason: str = "",
) -> None:
    """The wallet's executor on the chain is now ``address`` (a first deployment, or a redeploy
    replacing ``replaced``); every deployment stays on record."""
    await conn.execute(
        "INSERT INTO execution.executors (tenant_id, wallet_address, chain_id, address, deploy_tx_hash) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, wallet_address, chain_id) DO UPDATE "
        "SET address = excluded.address, deploy_tx_hash = excluded.deploy_tx_hash, created_at = now()",
        tenant_id,
        wallet,
        chain_id,
        address,
        tx_hash,
    )
    await conn.execute(
        "INSERT INTO execution.executor_deployments (tenant_id, wallet_address, chain_id, address, "
        "deploy_tx_hash, replaced_address, reason) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        tenant_id,
        wallet,
        chain_id,
        address,
        tx_hash,
        replaced,
        reason[:2000],
    )


async def executor_deployments(
    conn: asyncpg.Connection, tenant_id: str, wallet: str, *, before: tuple[datetime, str] | None, limit: int
) -> list[Row]:
    """Newest first; ``before`` is the (deployed_at, address) keyset cursor of the last row shown."""
    return await conn.fetch(
        "SELECT wallet_address, chain_id, address, deploy_tx_hash, replaced_address, reason, deployed_at "
        "FROM execution.executor_deployments WHERE tenant_id = $1 AND ($2 = '' OR lower(wallet_address) = "
        "lower($2)) AND ($3::timestamptz IS NULL OR (deployed_at, address) < ($3, $4)) "
        "ORDER BY deployed_at DESC, address DESC LIMIT $5",
        tenant_id,
        wallet,
        before[0] if before else None,
        before[1] if before else "",
        limit,
    )
