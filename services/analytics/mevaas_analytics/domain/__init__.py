"""Pure analytics logic (no I/O): fees and invoices, valuation, statistics, backtest replay."""


class MalformedEvent(ValueError):
    """An event the read model can never record: redelivering it would fail the same way, so its
    consumer refuses it at once (logged, acknowledged, no row) instead of retrying it."""
