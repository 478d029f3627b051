"""Pure analytics logic (no I/O): fees and invoices, valuation, statistics, backtest replay."""
