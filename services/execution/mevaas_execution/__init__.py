"""Execution service: tenant wallets, strategy execution sessions, and the last hop of the hot
path (risk decision -> simulate -> sign -> submit -> inclusion -> result)."""
