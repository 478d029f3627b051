"""mevaas-core."""
