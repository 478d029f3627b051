"""Shared mechanisms every MEVaaS service uses: settings, logging, telemetry, the gRPC server kit,
auth, the NATS bus and PostgreSQL access. Each lives here once and is never copied into services."""
