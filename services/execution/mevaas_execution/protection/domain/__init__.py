"""Pure rules of protected transactions: JSON-RPC envelopes, revert reasons, status transitions."""
