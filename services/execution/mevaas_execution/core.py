"""The execution service's parts, put together once (the server wires it to NATS and gRPC; the
hot-path benchmark calls it directly): executor contracts, the pipeline, the tracker with its
head watchers (executions, legs, protected transactions), receipt hooks, the commands and the
rebalance runner."""

from __future__ import annotations

import asyncpg

from mevaas_chain.pricing import DEFAULT_SOURCES, DEFAULT_STABLECOINS
from mevaas_core.sanctions import SanctionsList
from mevaas_core.tenant_phase import PhaseGate
from mevaas_execution.chains import ChainGateway
from mevaas_execution.commands import Commands
from mevaas_execution.contracts import ExecutorContracts
from mevaas_execution.hooks import ReceiptHooks
from mevaas_execution.pipeline import Pipeline
from mevaas_execution.protection.commands import ProtectionCommands
from mevaas_execution.protection.ordering import OrderingLog
from mevaas_execution.protection.submission import ProtectedSubmission
from mevaas_execution.rebalancing.commands import Rebalances
from mevaas_execution.rebalancing.market import MarketReader, PricingConfig
from mevaas_execution.recording import Recorder
from mevaas_execution.strategies import StrategyDirectory
from mevaas_execution.submission import Submitter
from mevaas_execution.tracker import Tracker
from mevaas_execution.treasury.commands import Treasury
from mevaas_execution.treasury.holdings import TreasuryHoldings
from mevaas_execution.unwinding import Unwinder
from mevaas_execution.wallets import WalletKeys


class ExecutionCore:
    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: ChainGateway,
        keys: WalletKeys,
        *,
        phases: PhaseGate,
        strategies: StrategyDirectory | None = None,
        poll_seconds: float = 0.05,
        receipt_timeout_s: float = 120.0,
        redeploy_missing_executors: bool = True,
        unwind_max_loss_bps: int = 300,
        unwind_window_blocks: int = 10,
        treasury_reconcile_seconds: float = 30.0,
        sanctions: SanctionsList | None = None,
        pricing: PricingConfig | None = None,
        rebalance_poll_seconds: float = 0.25,
        rebalance_deadline_blocks: int = 50,
        ordering: OrderingLog | None = None,
    ) -> None:
        self.gateway = gateway
        self.contracts = ExecutorContracts(
            pool,
            gateway,
            keys,
            receipt_timeout_s=receipt_timeout_s,
            redeploy_missing=redeploy_missing_executors,
        )
        self.recorder = Recorder(pool)
        self.treasury = Treasury(pool, gateway, reconcile_seconds=treasury_reconcile_seconds)
        self.hooks = ReceiptHooks([self.treasury])
        submitter = Submitter(gateway)
        sending: set[str] = set()
        self.pipeline = Pipeline(pool, gateway, keys, self.contracts, self.recorder, submitter, sending)
        self.protection = ProtectedSubmission(pool, gateway)
        self.protected = ProtectionCommands(pool, self.protection, sanctions, ordering, plans=phases)
        unwinder = Unwinder(
            gateway,
            keys,
            self.recorder,
            submitter,
            max_loss_bps=unwind_max_loss_bps,
            window_blocks=unwind_window_blocks,
        )
        self.tracker = Tracker(
            pool, gateway, self.recorder, submitter, self.hooks, unwinder, sending, poll_seconds=poll_seconds
        )
        self.tracker.watchers.append(self.protection.check)
        self.commands = Commands(pool, gateway, keys, self.contracts, self.protected, phases, strategies)
        self.holdings = TreasuryHoldings(pool, gateway, self.treasury)
        self.rebalances = Rebalances(
            pool,
            gateway,
            MarketReader(
                gateway, self.holdings, pricing or PricingConfig(DEFAULT_SOURCES, {}, DEFAULT_STABLECOINS)
            ),
            phases,
            poll_seconds=rebalance_poll_seconds,
            deadline_blocks=rebalance_deadline_blocks,
        )

    async def start(self) -> None:
        """Track every configured chain (settling whatever was in flight before a restart) and
        finish activating the sessions a previous process left STARTING."""
        self.tracker.start()
        self.treasury.start()
        self.rebalances.start()
        await self.commands.resume_starting()

    async def stop(self) -> None:
        await self.rebalances.stop()
        await self.tracker.stop()
        await self.treasury.stop()
        await self.commands.stop()
        await self.contracts.stop()
