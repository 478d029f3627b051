"""MEVaaS tenant operator: reconciles Tenant objects into per-tenant namespaces."""
