"""mevaas-local."""
