"""Billing: every execution valued when it happened, and the invoices built on it."""
