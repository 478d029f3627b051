"""mevaas-strategies: strategy plugins and typed actions (pure; no I/O)."""
