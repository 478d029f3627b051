"""Leverage protection's pure rules: health-factor levels as exact WAD integers parsed from
decimal strings, their ordering, and the protection's allowed state transitions."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from mevaas.strategy.v1 import strategy_pb2
from mevaas_core.validation import Validator

WAD = 10**18
MAX_HEALTH_FACTOR = 100 * WAD
ACTIVE, PAUSED, REMOVED = "active", "paused", "removed"
# state -> the states it may move to. REMOVED is terminal.
TRANSITIONS: dict[str, frozenset[str]] = {
    ACTIVE: frozenset({PAUSED, REMOVED}),
    PAUSED: frozenset({ACTIVE, REMOVED}),
    REMOVED: frozenset(),
}
STATE_TO_PROTO = {
    ACTIVE: strategy_pb2.PROTECTION_STATE_ACTIVE,
    PAUSED: strategy_pb2.PROTECTION_STATE_PAUSED,
    REMOVED: strategy_pb2.PROTECTION_STATE_REMOVED,
}
PROTO_TO_STATE = {v: k for k, v in STATE_TO_PROTO.items()}


class TransitionRefused(Exception):
    pass


def transition(current: str, wanted: str) -> str:
    if wanted != current and wanted not in TRANSITIONS[current]:
        raise TransitionRefused(f"a {current} protection cannot become {wanted}")
    return wanted


def parse_health_factor(v: Validator, text: str, field: str) -> int | None:
    """``text`` ("1.25") as WAD; a violation on ``field`` when it is not a decimal with at most
    18 decimals, above 1 and at most 100."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        v.fail(field, "must be a decimal number such as 1.25")
        return None
    if not value.is_finite():
        v.fail(field, "must be a decimal number such as 1.25")
        return None
    scaled = value * WAD
    if scaled != scaled.to_integral_value():
        v.fail(field, "has more than 18 decimals")
        return None
    wad = int(scaled)
    if not WAD < wad <= MAX_HEALTH_FACTOR:
        v.fail(field, "must be above 1 and at most 100")
        return None
    return wad


def format_health_factor(wad: int) -> str:
    """WAD -> the shortest exact decimal ("1.25")."""
    text = format(Decimal(wad) / WAD, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True, slots=True)
class Levels:
    trigger: int
    target: int
    emergency: int
    emergency_enabled: bool


def default_emergency(trigger: int) -> int:
    """Halfway between 1 and the trigger (rounded up, so it stays above 1)."""
    return WAD + -(-(trigger - WAD) // 2)


def check_levels(v: Validator, levels: Levels, prefix: str = "") -> None:
    """1 < emergency <= trigger < target, each violation on the field that breaks it."""
    if levels.target <= levels.trigger:
        v.fail(f"{prefix}target_health_factor", "must be above trigger_health_factor")
    if not WAD < levels.emergency <= levels.trigger:
        v.fail(f"{prefix}emergency_health_factor", "must be above 1 and at most trigger_health_factor")
