"""Onboarding is a one-way pipeline (the brief's phases); a tenant may only move to the next
phase, or stay. Skipping ahead or going back is a FAILED_PRECONDITION for the caller."""

from __future__ import annotations

# The phases, and what each allows, are defined once for every service in mevaas_core.onboarding.
from mevaas_core.onboarding import PHASES


class OnboardingTransitionError(ValueError):
    pass


def next_phase(current: str) -> str | None:
    index = PHASES.index(current)
    return PHASES[index + 1] if index + 1 < len(PHASES) else None


def check_transition(current: str, target: str) -> None:
    if target not in PHASES:
        raise OnboardingTransitionError(f"unknown onboarding phase {target!r}")
    if target == current:
        return
    expected = next_phase(current)
    if target != expected:
        allowed = (
            f"only {expected!r} may follow {current!r}" if expected else f"{current!r} is the last phase"
        )
        raise OnboardingTransitionError(f"cannot move onboarding from {current!r} to {target!r}: {allowed}")
