"""What a service tells the platform about itself, so the local fleet, the migration job and the
charts treat every service alike. Services register a `ServiceSpec` under the `mevaas.services`
entry point group; nothing lists services by hand."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    # `python -m <module>` runs the service.
    module: str
    # Its Postgres schema and migrations; None for services without a database.
    schema: str | None = None
    migrations: Path | None = None
    # Start order: lower first (tenancy issues the tokens others verify).
    order: int = 50
    # Extra env the local fleet passes (names of settings the service needs beyond the core ones).
    needs: tuple[str, ...] = field(default_factory=tuple)


def discover_services(*, skipped: list[str] | None = None) -> list[ServiceSpec]:
    """Every installed service, in start order. When `skipped` is given, a service that cannot be
    loaded is reported there (name and reason) instead of failing the whole discovery."""
    specs = []
    for entry in entry_points(group="mevaas.services"):
        try:
            spec = entry.load()
            if not isinstance(spec, ServiceSpec):
                raise TypeError(f"entry point {entry.name} does not name a ServiceSpec")
        except (ImportError, AttributeError, TypeError) as exc:
            if skipped is None:
                raise
            skipped.append(f"{entry.name}: {exc}")
            continue
        specs.append(spec)
    return sorted(specs, key=lambda s: (s.order, s.name))
