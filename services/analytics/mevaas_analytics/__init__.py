"""Analytics service: read model of every event, reports, invoices, portfolio, backtests."""
