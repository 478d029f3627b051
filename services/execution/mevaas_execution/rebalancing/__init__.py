"""Rebalances executed: PortfolioService.Rebalance's command planned from the chain's holdings
and prices into trades, each checked by risk and executed by the one pipeline, owned by the
rebalance (ownership.py, registered here for the ``rebalance_trade`` kind)."""

from mevaas_execution.rebalancing import ownership

__all__ = ["ownership"]
