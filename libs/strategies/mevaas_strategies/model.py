"""A strategy version as plain data (`StrategySpec`), decoded once from its `StrategyConfig` proto so
plugins and the engine never touch protobuf on the hot path."""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_utils.address import is_address, to_checksum_address

from mevaas.common.v1 import common_pb2
from mevaas.strategy.v1 import strategy_pb2

# Proto enum value <-> plugin type name (the `mevaas.strategies` entry point names).
TYPE_NAMES: dict[int, str] = {
    common_pb2.STRATEGY_TYPE_DEX_ARBITRAGE: "dex_arbitrage",
    common_pb2.STRATEGY_TYPE_FLASH_ARBITRAGE: "flash_arbitrage",
    common_pb2.STRATEGY_TYPE_CROSS_CHAIN_ARBITRAGE: "cross_chain_arbitrage",
    common_pb2.STRATEGY_TYPE_LIQUIDATION: "liquidation",
    common_pb2.STRATEGY_TYPE_BACKRUN: "backrun",
    common_pb2.STRATEGY_TYPE_CUSTOM: "custom",
}
TYPES_BY_NAME = {v: k for k, v in TYPE_NAMES.items()}
ARBITRAGE_TYPES = frozenset(
    {
        common_pb2.STRATEGY_TYPE_DEX_ARBITRAGE,
        common_pb2.STRATEGY_TYPE_FLASH_ARBITRAGE,
        common_pb2.STRATEGY_TYPE_CROSS_CHAIN_ARBITRAGE,
    }
)
DEFAULT_MAX_HOPS = 3


@dataclass(frozen=True, slots=True)
class TokenRef:
    """A token on a chain; the address is checksummed (or kept as given when it is not an address)."""

    chain_id: int
    address: str

    @classmethod
    def of(cls, chain_id: int, address: str) -> TokenRef:
        return cls(chain_id, to_checksum_address(address) if is_address(address) else address)


def _int_or_zero(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class StrategySpec:
    """Everything a plugin needs of one strategy version."""

    strategy_id: str
    tenant_id: str
    version: int
    type: int
    chain_ids: tuple[int, ...]
    tokens: tuple[TokenRef, ...]
    dexes: frozenset[str]
    base_token: TokenRef
    allocation: int
    max_position: int
    max_hops: int
    min_profit: int
    max_slippage_bps: int
    max_gas_price_wei: int
    execution_delay_ms: int
    retry_attempts: int
    submission_mode: int
    plugin: str = ""
    params: dict[str, str] = field(default_factory=dict)

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type, "")

    def tokens_on(self, chain_id: int) -> frozenset[str]:
        return frozenset(t.address for t in self.tokens if t.chain_id == chain_id)

    @classmethod
    def from_config(
        cls,
        config: strategy_pb2.StrategyConfig,
        *,
        strategy_id: str = "",
        tenant_id: str = "",
        version: int = 0,
    ) -> StrategySpec:
        """Decode a config (validated or not: unparsable amounts read as 0)."""
        p = config.parameters
        s = p.execution_settings
        return cls(
            strategy_id=strategy_id,
            tenant_id=tenant_id,
            version=version,
            type=config.type,
            chain_ids=tuple(p.chain_ids),
            tokens=tuple(TokenRef.of(t.chain_id, t.address) for t in p.tokens),
            dexes=frozenset(p.dexes),
            base_token=TokenRef.of(config.allocation.token.chain_id, config.allocation.token.address),
            allocation=_int_or_zero(config.allocation.amount),
            max_position=_int_or_zero(p.max_position),
            max_hops=p.max_hops or DEFAULT_MAX_HOPS,
            min_profit=_int_or_zero(s.min_profit_threshold),
            max_slippage_bps=s.max_slippage_bps,
            max_gas_price_wei=_int_or_zero(s.max_gas_price_wei),
            execution_delay_ms=s.execution_delay_ms,
            retry_attempts=s.retry_attempts,
            submission_mode=s.submission_mode,
            plugin=config.custom.plugin,
            params=dict(config.custom.params),
        )
