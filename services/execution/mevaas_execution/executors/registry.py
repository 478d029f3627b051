"""Executors registered by action kind (the ``Opportunity.action`` oneof field name), as strategy
types are plugins: a new kind registers its class with ``@register_executor`` and nothing else in
the pipeline changes."""

from __future__ import annotations

from typing import TypeVar

from mevaas_execution.executors.base import ActionExecutor, MultiLegExecutor

E = TypeVar("E", bound=type[ActionExecutor])

_registered: dict[str, ActionExecutor] = {}


class NoExecutor(LookupError):
    """No executor is registered for the action kind."""


def register_executor(cls: E) -> E:
    """Class decorator: one instance of ``cls`` runs every action of its ``kind``."""
    existing = _registered.get(cls.kind)
    if existing is not None and type(existing) is not cls:
        raise ValueError(f"action kind {cls.kind!r} already has executor {type(existing)!r}")
    _registered[cls.kind] = cls()
    return cls


def executor_for(kind: str) -> ActionExecutor:
    executor = _registered.get(kind)
    if executor is None:
        raise NoExecutor(f"no executor for action kind {kind or '(none)'}")
    return executor


def multi_leg_executor_for(kind: str) -> MultiLegExecutor:
    executor = executor_for(kind)
    if not isinstance(executor, MultiLegExecutor):
        raise NoExecutor(f"the executor of action kind {kind} records no legs")
    return executor


def registered_kinds() -> list[str]:
    return sorted(_registered)
