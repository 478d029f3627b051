"""The tenants' executor contracts: which one a wallet uses on a chain, its deployment, and its
liveness. Before anything calls an executor the pipeline compares its code on chain
(``eth_getCode``, in the simulation's round trip) with the committed artifact's runtime code.
A verified executor is trusted for the rest of this process's life on that chain, unless the
chain's head goes backwards (a devnet that was reset under a running fleet). A missing or
foreign executor is redeployed (recorded in ``executor_deployments``) when
``redeploy_missing`` allows; otherwise, or when the redeploy fails, the session fails naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from mevaas_chain.contracts import load_artifact
from mevaas_core.db import tenant_transaction
from mevaas_execution.chains import ChainGateway
from mevaas_execution.contracts import store
from mevaas_execution.wallets import WalletKeys

log = logging.getLogger("mevaas.execution.contracts")

RUNTIME_CODE = "0x" + load_artifact("Executor").deployed_bytecode.hex()

Key = tuple[str, str, int]


def code_problem(address: str, chain_id: int, code: object) -> str | None:
    """Why ``code`` (the answer to eth_getCode) is not the executor's runtime code, or None."""
    text = str(code or "0x").lower()
    if text in ("0x", "0x0"):
        return f"executor {address} on chain {chain_id} has no code (was the chain reset?)"
    if text != RUNTIME_CODE:
        return f"executor {address} on chain {chain_id} runs foreign code, not the committed Executor"
    return None


class ExecutorContracts:
    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: ChainGateway,
        keys: WalletKeys,
        *,
        receipt_timeout_s: float = 120.0,
        redeploy_missing: bool = True,
    ) -> None:
        self.pool = pool
        self.gateway = gateway
        self.keys = keys
        self.receipt_timeout_s = receipt_timeout_s
        self.redeploy_missing = redeploy_missing
        self._addresses: dict[Key, str] = {}
        self._locks: dict[Key, asyncio.Lock] = {}
        # (chain, executor) -> the head it was verified at.
        self._verified: dict[tuple[int, str], int] = {}
        self._heads: dict[int, int] = {}
        self._repairs: dict[Key, asyncio.Task[None]] = {}

    async def address(self, tenant_id: str, wallet: str, chain_id: int) -> str | None:
        key = (tenant_id, wallet.lower(), chain_id)
        address = self._addresses.get(key)
        if address is None:
            async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
                address = await store.get_executor(conn, tenant_id, wallet, chain_id)
            if address is not None:
                self._addresses[key] = address
        return address

    def needs_check(self, chain_id: int, address: str) -> bool:
        return (chain_id, address.lower()) not in self._verified

    def observe(self, chain_id: int, address: str, head: int, code: object) -> str | None:
        """Record what eth_getCode said at ``head``; the problem, if the executor is not live."""
        self.saw_head(chain_id, head)
        problem = code_problem(address, chain_id, code)
        if problem is None:
            self._verified[(chain_id, address.lower())] = head
        else:
            self._verified.pop((chain_id, address.lower()), None)
        return problem

    def saw_head(self, chain_id: int, head: int) -> None:
        """Called with every head the pipeline sees: a head lower than one seen before means the
        chain was reset, so every executor on it must be verified again."""
        if head < self._heads.get(chain_id, -1):
            self._verified = {k: v for k, v in self._verified.items() if k[0] != chain_id}
        self._heads[chain_id] = head

    async def ensure(self, tenant_id: str, wallet: str, chain_id: int) -> str:
        """The wallet's live executor on the chain: the recorded one when its code is the
        artifact's, otherwise a new deployment (signed by the wallet) that replaces it."""
        key = (tenant_id, wallet.lower(), chain_id)
        async with self._locks.setdefault(key, asyncio.Lock()):
            existing = await self.address(tenant_id, wallet, chain_id)
            reason = ""
            if existing is not None:
                rpc = self.gateway.chain(chain_id).rpc
                head = await rpc.block_number()
                code = await rpc.request("eth_getCode", [existing, "latest"])
                problem = self.observe(chain_id, existing, head, code)
                if problem is None:
                    return existing
                if not self.redeploy_missing:
                    raise ExecutorMissing(problem)
                reason = problem
            return await self._deploy(tenant_id, wallet, chain_id, existing or "", reason)

    async def _deploy(self, tenant_id: str, wallet: str, chain_id: int, replaced: str, reason: str) -> str:
        secret = await self.keys.key(tenant_id, wallet)
        address, tx_hash = await self.gateway.deploy_executor(
            chain_id, secret, wallet, receipt_timeout_s=self.receipt_timeout_s
        )
        async with tenant_transaction(self.pool, tenant_id) as conn:
            await store.record_executor(
                conn, tenant_id, wallet, chain_id, address, tx_hash, replaced=replaced, reason=reason
            )
        self._addresses[(tenant_id, wallet.lower(), chain_id)] = address
        self._verified[(chain_id, address.lower())] = self._heads.get(chain_id, 0)
        log.info(
            "executor %s",
            "redeployed" if replaced else "deployed",
            extra={"tenant_id": tenant_id, "chain_id": chain_id, "executor": address, "replaced": replaced},
        )
        return address

    def repair_soon(
        self,
        tenant_id: str,
        wallet: str,
        chain_id: int,
        problem: str,
        on_failure: Callable[[str], Awaitable[None]],
    ) -> None:
        """Redeploy a missing or foreign executor in the background (once at a time per wallet and
        chain); ``on_failure(reason)`` when it cannot be (or may not be) replaced."""
        key = (tenant_id, wallet.lower(), chain_id)
        running = self._repairs.get(key)
        if running is not None and not running.done():
            return

        async def repair() -> None:
            if not self.redeploy_missing:
                await on_failure(f"{problem}; redeploying executors is disabled")
                return
            try:
                await self.ensure(tenant_id, wallet, chain_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await on_failure(f"{problem}; its redeploy failed: {exc}")

        self._repairs[key] = asyncio.create_task(repair(), name=f"exec-redeploy-{chain_id}-{wallet}")

    async def stop(self) -> None:
        for task in self._repairs.values():
            task.cancel()
        for task in self._repairs.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._repairs.clear()


class ExecutorMissing(Exception):
    """The wallet's executor is not live and may not be redeployed."""
