"""mevaas-tenancy."""
