"""The strategy plugin interface and its registry.

A strategy type is a class implementing `StrategyPlugin`:

* ``type_name`` - the name clients select it by (`StrategyType` enum name in lower case, or for
  CUSTOM strategies the `CustomStrategy.plugin` name);
* ``validate(spec, chains)`` - config problems specific to the type, as `Violation`s naming the
  `StrategyConfig` field;
* ``__init__(spec)`` builds one instance per running strategy version;
* ``on_market_update(market, changed)`` - the candidates after a block, each carrying a typed
  action (`mevaas_strategies.actions`). ``changed`` maps chain id
  to the pools whose reserves changed (None = evaluate everything: first block, new strategy, or
  reorg reload). Instances may keep state derived from earlier calls, but no I/O and no clocks:
  the same inputs give the same outputs, so a backtest replays exactly the live code.

Registration needs no edit elsewhere: a package declares the class under the entry point group
``mevaas.strategies`` (this library declares its own that way in pyproject.toml), or code
registers it at import time with ``@register_plugin``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import ClassVar, Protocol, TypeVar

from mevaas_chain.registry import ChainRegistry
from mevaas_strategies.actions import Action
from mevaas_strategies.market import MarketView
from mevaas_strategies.model import StrategySpec, TokenRef

ENTRY_POINT_GROUP = "mevaas.strategies"


@dataclass(frozen=True, slots=True)
class Violation:
    """One config problem; `field` is the path inside StrategyConfig."""

    field: str
    description: str
    reason: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """An opportunity as a plugin finds it: a typed action with exact amounts, gas and profit net
    of gas."""

    chain_id: int
    chain_ids: tuple[int, ...]
    action: Action
    expected_profit: int
    profit_token: TokenRef
    gas_estimate: int
    gas_price: int
    # Gas cost converted to profit_token base units (rounded up).
    gas_cost: int

    @property
    def net_profit(self) -> int:
        return self.expected_profit - self.gas_cost

    @property
    def route_key(self) -> str:
        """Identifies the action and its sizing (part of the deterministic opportunity id)."""
        return self.action.key()


Changed = Mapping[int, frozenset[str]] | None


class StrategyPlugin(Protocol):
    type_name: ClassVar[str]

    # Reads the chains' lending markets (MarketView.lending). The engine keeps a chain's lending
    # index in step with the head only while such a strategy runs on it: its reads cost every
    # other strategy's block a few RPC round trips. (Read-only here, so a ClassVar satisfies it.)
    @property
    def reads_lending(self) -> bool: ...

    def __init__(self, spec: StrategySpec) -> None: ...

    @classmethod
    def validate(cls, spec: StrategySpec, chains: ChainRegistry) -> list[Violation]: ...

    def on_market_update(self, market: MarketView, changed: Changed) -> list[Candidate]: ...


P = TypeVar("P", bound=type[StrategyPlugin])

_registered: dict[str, type[StrategyPlugin]] = {}
_entry_points_loaded: list[bool] = []


def register_plugin(cls: P) -> P:
    """Class decorator: make `cls` available under its `type_name`."""
    existing = _registered.get(cls.type_name)
    if existing is not None and existing is not cls:
        raise ValueError(f"strategy plugin {cls.type_name!r} is already registered by {existing!r}")
    _registered[cls.type_name] = cls
    return cls


def _load_entry_points() -> None:
    if _entry_points_loaded:
        return
    _entry_points_loaded.append(True)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        cls = entry.load()
        if getattr(cls, "type_name", None) != entry.name:
            raise TypeError(f"entry point {entry.name} names {cls!r}, whose type_name differs")
        register_plugin(cls)


def plugin_for(name: str) -> type[StrategyPlugin] | None:
    _load_entry_points()
    return _registered.get(name)


def registered_plugins() -> dict[str, type[StrategyPlugin]]:
    _load_entry_points()
    return dict(_registered)
