"""Strategy types that exist in the API and validate, but find nothing by themselves.

* `custom` names a registered plugin in `CustomStrategy.plugin`; the named plugin's
  `on_market_update` is what runs. Registering one is a class with `type_name` under the
  `mevaas.strategies` entry point group (see `plugins`). Until one is registered the type
  validates its shape and produces nothing.
"""

from __future__ import annotations

import re
from typing import ClassVar

from mevaas_chain.registry import ChainRegistry
from mevaas_strategies.market import MarketView
from mevaas_strategies.model import TYPES_BY_NAME, StrategySpec
from mevaas_strategies.plugins import Candidate, Changed, StrategyPlugin, Violation, plugin_for

PLUGIN_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
PARAM_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_PARAM_VALUE = 4096


class Custom:
    """Runs the plugin named by `CustomStrategy.plugin`."""

    type_name: ClassVar[str] = "custom"

    def __init__(self, spec: StrategySpec) -> None:
        self.spec = spec
        named = _named_plugin(spec.plugin)
        self._inner = named(spec) if named is not None else None
        self.reads_lending = self._inner.reads_lending if self._inner is not None else False

    @classmethod
    def validate(cls, spec: StrategySpec, chains: ChainRegistry) -> list[Violation]:
        violations: list[Violation] = []
        if not PLUGIN_NAME.fullmatch(spec.plugin):
            violations.append(Violation("custom.plugin", "must match ^[a-z][a-z0-9_.-]{0,63}$", "BAD_FORMAT"))
        else:
            named = _named_plugin(spec.plugin)
            if named is None:
                violations.append(
                    Violation(
                        "custom.plugin", f"no strategy plugin {spec.plugin!r} is registered", "UNKNOWN_PLUGIN"
                    )
                )
            else:
                violations += named.validate(spec, chains)
        for key, value in sorted(spec.params.items()):
            if not PARAM_KEY.fullmatch(key):
                violations.append(
                    Violation(f"custom.params[{key}]", "key must match ^[a-z][a-z0-9_]{0,63}$", "BAD_FORMAT")
                )
            if len(value) > MAX_PARAM_VALUE:
                violations.append(
                    Violation(
                        f"custom.params[{key}]", f"value is longer than {MAX_PARAM_VALUE}", "OUT_OF_RANGE"
                    )
                )
        return violations

    def on_market_update(self, market: MarketView, changed: Changed) -> list[Candidate]:
        return self._inner.on_market_update(market, changed) if self._inner is not None else []


def _named_plugin(name: str) -> type[StrategyPlugin] | None:
    """A registered plugin other than the built-in types (a custom strategy cannot name those)."""
    if name in TYPES_BY_NAME:
        return None
    return plugin_for(name)
