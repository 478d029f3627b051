"""Shared pytest setup: every module in tests/fixtures/ is a fixture plugin, so each area adds its
fixtures (embedded NATS, PostgreSQL, anvil, ...) without editing a shared list."""

from pathlib import Path

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem != "__init__"
)
