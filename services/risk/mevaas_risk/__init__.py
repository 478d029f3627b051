"""mevaas-risk."""
