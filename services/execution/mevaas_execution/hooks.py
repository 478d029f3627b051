"""Where the treasury (and anything else that follows funds) hooks in: after every receipt the
tracker books, each registered ``ReceiptHook`` is told what moved where, once the booking has
committed. A hook's failure is logged and never undoes or delays the booking."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("mevaas.execution.hooks")


@dataclass(frozen=True, slots=True)
class BookedReceipt:
    """One transaction (or a leg's transactions) the tracker has just booked."""

    tenant_id: str
    execution_id: str
    action_kind: str
    chain_id: int
    wallet_address: str
    # The executor contract the transaction called ('' for wallet-only actions).
    executor_address: str
    tx_hashes: tuple[str, ...]
    block_number: int
    # The execution's (or leg's) status after booking.
    status: str
    # Wei of gas the wallet paid for these transactions.
    gas_cost_wei: int


class ReceiptHook(Protocol):
    async def after_receipt(self, booked: BookedReceipt) -> None: ...


class ReceiptHooks:
    def __init__(self, hooks: Sequence[ReceiptHook] = ()) -> None:
        self._hooks = list(hooks)

    def add(self, hook: ReceiptHook) -> None:
        self._hooks.append(hook)

    async def notify(self, booked: BookedReceipt) -> None:
        for hook in self._hooks:
            try:
                await hook.after_receipt(booked)
            except Exception:
                log.warning(
                    "receipt hook %r failed", hook, exc_info=True, extra={"tenant_id": booked.tenant_id}
                )
