"""mevaas-chain."""
