"""Shared pytest setup: every module in tests/fixtures/ is a fixture plugin, so each area adds its
fixtures (embedded NATS, PostgreSQL, anvil, ...) without editing a shared list."""

import os
from pathlib import Path

# Embedded servers start with preexec_fn (a plain fork). gRPC's fork handlers, skipped while other
# threads use gRPC, leave the child with a broken poller that aborts it (seen as postgres exit -6).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem != "__init__"
)
