"""Executors per action kind; importing the package registers the built-in ones."""

from mevaas_execution.executors import (
    backrun,
    cross_chain,
    deleverage,
    liquidation,
    rebalance,
    swap_cycle,
)
from mevaas_execution.executors.registry import (
    NoExecutor,
    executor_for,
    multi_leg_executor_for,
    register_executor,
    registered_kinds,
)

__all__ = [
    "NoExecutor",
    "backrun",
    "cross_chain",
    "deleverage",
    "executor_for",
    "liquidation",
    "multi_leg_executor_for",
    "rebalance",
    "register_executor",
    "registered_kinds",
    "swap_cycle",
]
