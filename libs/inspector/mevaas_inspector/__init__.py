"""mevaas-inspector."""
