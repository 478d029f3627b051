"""Chains as configuration: every EVM chain the platform talks to is described by data (chain id,
RPC endpoints, DEX deployments, known tokens), so adding a chain needs no code.

Sources, first match wins: an explicit path, ``MEVAAS_CHAINS`` (inline JSON), ``MEVAAS_CHAINS_FILE``
(a JSON or YAML file), then the local devnet's ``.data/devnet/chains.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import yaml
from eth_utils.address import is_address, to_checksum_address
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator


def _checksum(value: str) -> str:
    if not is_address(value):
        raise ValueError(f"not an address: {value!r}")
    return to_checksum_address(value)


def _hash32(value: str) -> str:
    raw = value.removeprefix("0x")
    if len(raw) != 64:
        raise ValueError("expected a 32-byte hex string")
    int(raw, 16)
    return "0x" + raw.lower()


Address = Annotated[str, AfterValidator(_checksum)]
Hash32 = Annotated[str, AfterValidator(_hash32)]

DEFAULT_DEVNET_CONFIG = Path(".data/devnet/chains.json")
# The name of a chain's relay_url among its relays (fast mode's per-relay outcomes).
PRIMARY_RELAY = "primary"


class TokenConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    address: Address
    symbol: str
    decimals: int = Field(ge=0, le=36)


class DexConfig(BaseModel):
    """A Uniswap V2 style deployment: factory, router, fee and the pair init-code hash."""

    model_config = ConfigDict(frozen=True)

    name: str
    factory: Address
    router: Address | None = None
    fee_bps: int = Field(default=30, ge=0, lt=10_000)
    init_code_hash: Hash32


class FlashLenderConfig(BaseModel):
    """A contract the executor may flash-borrow from beyond the DEX pairs and the Aave pool: a
    Uniswap V3 pool (``uniswap_v3``) or the Balancer V2 vault (``balancer_v2``), the kinds of
    ``mevaas_chain.flash_lenders``."""

    model_config = ConfigDict(frozen=True)

    kind: str
    address: Address


class RelayConfig(BaseModel):
    """A further Flashbots-style bundle relay (``eth_sendBundle``) of a chain, by name."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, max_length=64)
    url: str


class ChainConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    chain_id: int = Field(gt=0)
    name: str
    rpc_url: str
    ws_url: str | None = None
    # Flashbots-style bundle endpoint (eth_sendBundle / eth_callBundle), if the chain has one.
    relay_url: str | None = None
    # Further relays a protected transaction in fast mode is sent to as well, concurrently with
    # relay_url (named PRIMARY_RELAY in a transaction's per-relay outcomes).
    fast_relays: list[RelayConfig] = Field(default_factory=list)
    native_symbol: str = "ETH"
    wrapped_native: Address | None = None
    block_time_s: float | None = None
    # Blocks on top of a transaction's block before its receipt is booked: a receipt of the head
    # block may still vanish (a reorg; the devnet relay rebuilding a block without a failing
    # bundle). 0 books at once and trusts the head.
    confirmations: int = Field(default=1, ge=0, le=128)
    dexes: list[DexConfig] = Field(default_factory=list)
    tokens: list[TokenConfig] = Field(default_factory=list)
    # Contracts the deployment knows about by role, e.g. {"executor": "0x..."}.
    contracts: dict[str, Address] = Field(default_factory=dict)
    # Flash lenders the strategies may choose from; at most one Balancer vault (the executor
    # contract is configured with one).
    flash_lenders: list[FlashLenderConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> ChainConfig:
        relay_names = [PRIMARY_RELAY, *(r.name for r in self.fast_relays)]
        if len(set(relay_names)) != len(relay_names):
            raise ValueError(f"chain {self.name}: relay names must be unique and not {PRIMARY_RELAY!r}")
        if self.fast_relays and not self.relay_url:
            raise ValueError(f"chain {self.name}: fast_relays need a relay_url")
        if len({d.name for d in self.dexes}) != len(self.dexes):
            raise ValueError(f"chain {self.name}: duplicate DEX names")
        if len({t.address for t in self.tokens}) != len(self.tokens):
            raise ValueError(f"chain {self.name}: duplicate token addresses")
        if len({f.address for f in self.flash_lenders}) != len(self.flash_lenders):
            raise ValueError(f"chain {self.name}: duplicate flash lenders")
        if sum(f.kind == "balancer_v2" for f in self.flash_lenders) > 1:
            raise ValueError(f"chain {self.name}: more than one Balancer vault among flash_lenders")
        return self

    def dex(self, name: str) -> DexConfig:
        for dex in self.dexes:
            if dex.name == name:
                return dex
        raise KeyError(f"chain {self.name} has no DEX {name!r}")

    def dex_by_factory(self, factory: str) -> DexConfig:
        factory = to_checksum_address(factory)
        for dex in self.dexes:
            if dex.factory == factory:
                return dex
        raise KeyError(f"chain {self.name} has no DEX with factory {factory}")

    def token(self, symbol_or_address: str) -> TokenConfig:
        key = symbol_or_address.lower()
        for token in self.tokens:
            if token.symbol.lower() == key or token.address.lower() == key:
                return token
        raise KeyError(f"chain {self.name} has no token {symbol_or_address!r}")


class ChainRegistry(BaseModel):
    model_config = ConfigDict(frozen=True)

    chains: list[ChainConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> ChainRegistry:
        if len({c.chain_id for c in self.chains}) != len(self.chains):
            raise ValueError("duplicate chain ids")
        return self

    def get(self, chain_id_or_name: int | str) -> ChainConfig:
        for chain in self.chains:
            if chain_id_or_name in (chain.chain_id, chain.name):
                return chain
        raise KeyError(f"unknown chain {chain_id_or_name!r}")

    def __iter__(self) -> Any:
        return iter(self.chains)

    def __len__(self) -> int:
        return len(self.chains)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"

    def write(self, path: Path) -> None:
        """Write atomically so a reader never sees a half-written file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)


def parse_registry(text: str, *, yaml_format: bool = False) -> ChainRegistry:
    data = yaml.safe_load(text) if yaml_format else json.loads(text)
    if isinstance(data, list):
        data = {"chains": data}
    return ChainRegistry.model_validate(data)


def load_registry_file(path: Path) -> ChainRegistry:
    return parse_registry(path.read_text(), yaml_format=path.suffix in (".yaml", ".yml"))


def load_registry(path: Path | str | None = None) -> ChainRegistry:
    """The configured chains (see the module docstring for where they come from)."""
    if path is not None:
        return load_registry_file(Path(path))
    inline = os.environ.get("MEVAAS_CHAINS")
    if inline:
        return parse_registry(inline, yaml_format=not inline.lstrip().startswith(("{", "[")))
    file = os.environ.get("MEVAAS_CHAINS_FILE")
    if file:
        return load_registry_file(Path(file))
    if DEFAULT_DEVNET_CONFIG.is_file():
        return load_registry_file(DEFAULT_DEVNET_CONFIG)
    return ChainRegistry()
