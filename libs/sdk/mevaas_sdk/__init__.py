"""mevaas-sdk."""
