"""Aave V3 lending positions: the protocol's integer math (``math``) and a reorg-safe index of every
reserve and every user's collateral and debt (``index``)."""
