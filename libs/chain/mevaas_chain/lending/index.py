"""Live index of an Aave V3 market: every reserve, every user's position, the oracle's prices.

``load()`` pins a snapshot to one block: the reserves list and each ``getReserveData``; users are
every address an aToken or variable debt token ``Transfer`` ever named (the protocol mints, burns
and moves both with a Transfer), each read as ``getUserConfiguration`` plus its scaled balances.
``sync()`` then follows the chain block by block: the logs of each block *hash* name what changed
(``ReserveDataUpdated`` -> that reserve; a token ``Transfer`` or ``ReserveUsedAsCollateral*`` ->
that user; any configurator log -> every reserve's configuration), and only those are read again,
as ``eth_call``s pinned to the same block hash, so a block's state always belongs to that block.
Prices are read every block (one ``getAssetsPrices``), since oracle sources may change without a
log the index knows.

Reorg safety is the pool index's: the last ``depth`` blocks are kept with an undo log (each
reserve, position and the prices as they were before the block); a changed head rewinds to the
newest common ancestor and reports a ``Reorg``; deeper than ``depth`` reloads.

Health factors and liquidation sizes are computed with Aave's own integer math (``math``), at a
given block time, so they equal the Pool's answers to the wei.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from mevaas_chain import abi
from mevaas_chain.client import BlockId, ChainClient, RpcError
from mevaas_chain.lending.math import AccountData, Position, Reserve, account_data

TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
RESERVE_DATA_UPDATED_TOPIC = (
    "0x" + keccak(text="ReserveDataUpdated(address,uint256,uint256,uint256,uint256,uint256)").hex()
)
COLLATERAL_ENABLED_TOPIC = "0x" + keccak(text="ReserveUsedAsCollateralEnabled(address,address)").hex()
COLLATERAL_DISABLED_TOPIC = "0x" + keccak(text="ReserveUsedAsCollateralDisabled(address,address)").hex()
LIQUIDATION_CALL_TOPIC = (
    "0x" + keccak(text="LiquidationCall(address,address,address,uint256,uint256,address,bool)").hex()
)
ZERO_ADDRESS = "0x" + "00" * 20
_RESERVE_DATA_TYPES = (
    ["uint256", "uint128", "uint128", "uint128", "uint128", "uint128", "uint40", "uint16"]
    + ["address"] * 4
    + ["uint128"] * 3
)


@dataclass(frozen=True)
class LendingMarket:
    """Where a market lives (from the chain registry's ``contracts``)."""

    pool: str
    oracle: str
    configurator: str | None = None

    @classmethod
    def from_contracts(cls, contracts: Mapping[str, str]) -> LendingMarket | None:
        if "aave_pool" not in contracts or "aave_oracle" not in contracts:
            return None
        return cls(contracts["aave_pool"], contracts["aave_oracle"], contracts.get("aave_pool_configurator"))


@dataclass(frozen=True)
class LendingUpdate:
    number: int
    hash: str
    parent_hash: str
    timestamp: int
    users: frozenset[str]
    reserves: frozenset[str]
    prices_changed: bool


@dataclass(frozen=True)
class LendingReorg:
    ancestor_number: int
    ancestor_hash: str
    orphaned: tuple[str, ...]
    full_reload: bool = False


LendingEvent = LendingUpdate | LendingReorg


@dataclass
class _Block:
    number: int
    hash: str
    parent_hash: str
    timestamp: int
    reserves: dict[str, Reserve | None] = field(default_factory=dict)
    positions: dict[str, Position | None] = field(default_factory=dict)
    prices: dict[str, int] | None = None
    # The flash-loan premium before this block changed it.
    flash_loan_premium: int | None = None


def _topic_address(topic: str) -> str:
    return to_checksum_address("0x" + topic[-40:])


class LendingIndex:
    def __init__(
        self, client: ChainClient, market: LendingMarket, *, depth: int = 64, max_blocks_per_sync: int = 200
    ) -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.client = client
        self.market = market
        self.depth = depth
        self.max_blocks_per_sync = max_blocks_per_sync
        self._reserves: dict[str, Reserve] = {}
        self._positions: dict[str, Position] = {}
        self._prices: dict[str, int] = {}
        self._blocks: deque[_Block] = deque()
        self._tokens: dict[str, str] = {}  # aToken / debt token -> asset
        self._flash_loan_premium = 0

    # -- views ------------------------------------------------------------------------------
    @property
    def head(self) -> tuple[int, str]:
        if not self._blocks:
            raise RuntimeError("index not loaded")
        return self._blocks[-1].number, self._blocks[-1].hash

    @property
    def head_timestamp(self) -> int:
        return self._blocks[-1].timestamp

    @property
    def reserves(self) -> Mapping[str, Reserve]:
        return MappingProxyType(self._reserves)

    @property
    def positions(self) -> Mapping[str, Position]:
        return MappingProxyType(self._positions)

    @property
    def prices(self) -> Mapping[str, int]:
        return MappingProxyType(self._prices)

    @property
    def flash_loan_premium(self) -> int:
        """The pool's ``FLASHLOAN_PREMIUM_TOTAL`` (PercentageMath units: 5 = 0.05%)."""
        return self._flash_loan_premium

    def account(self, user: str, now: int | None = None) -> AccountData:
        """The user's account data at block time ``now`` (default: the head block's)."""
        position = self._positions[to_checksum_address(user)]
        return account_data(
            position, self._reserves, self._prices, self.head_timestamp if now is None else now
        )

    def borrowers(self) -> list[Position]:
        return [p for p in self._positions.values() if p.has_debt]

    # -- reads pinned to a block hash -------------------------------------------------------
    async def _calls(self, calls: Sequence[tuple[str, bytes]], block_hash: str) -> list[bytes]:
        replies = await self.client.batch(
            [
                ("eth_call", [{"to": to, "data": "0x" + data.hex()}, {"blockHash": block_hash}])
                for to, data in calls
            ]
        )
        out: list[bytes] = []
        for (to, _), reply in zip(calls, replies, strict=True):
            if isinstance(reply, RpcError) or not isinstance(reply, str):
                raise RpcError(-32000, f"eth_call to {to} failed at {block_hash}: {reply}")
            out.append(bytes.fromhex(reply[2:]))
        return out

    async def _read_reserves(self, assets: Sequence[str], block_hash: str) -> dict[str, Reserve]:
        raws = await self._calls(
            [(self.market.pool, abi.encode_call("getReserveData(address)", a)) for a in assets], block_hash
        )
        out: dict[str, Reserve] = {}
        for asset, raw in zip(assets, raws, strict=True):
            v = abi.decode_result(_RESERVE_DATA_TYPES, raw)
            out[asset] = Reserve(
                asset=asset,
                id=v[7],
                configuration=v[0],
                liquidity_index=v[1],
                liquidity_rate=v[2],
                variable_borrow_index=v[3],
                variable_borrow_rate=v[4],
                last_update=v[6],
                a_token=to_checksum_address(v[8]),
                variable_debt_token=to_checksum_address(v[10]),
            )
        return out

    async def _read_positions(self, users: Sequence[str], block_hash: str) -> dict[str, Position]:
        reserves = list(self._reserves.values())
        calls: list[tuple[str, bytes]] = []
        for user in users:
            calls.append((self.market.pool, abi.encode_call("getUserConfiguration(address)", user)))
            for r in reserves:
                calls.append((r.a_token, abi.encode_call("scaledBalanceOf(address)", user)))
                calls.append((r.variable_debt_token, abi.encode_call("scaledBalanceOf(address)", user)))
        raws = await self._calls(calls, block_hash)
        width = 1 + 2 * len(reserves)
        out: dict[str, Position] = {}
        for i, user in enumerate(users):
            chunk = raws[i * width : (i + 1) * width]
            collateral = {r.asset: abi.decode_uint(chunk[1 + 2 * j]) for j, r in enumerate(reserves)}
            debt = {r.asset: abi.decode_uint(chunk[2 + 2 * j]) for j, r in enumerate(reserves)}
            out[user] = Position(
                user,
                abi.decode_uint(chunk[0]),
                {a: v for a, v in collateral.items() if v},
                {a: v for a, v in debt.items() if v},
            )
        return out

    async def _read_prices(self, block_hash: str) -> dict[str, int]:
        assets = list(self._reserves)
        (raw,) = await self._calls(
            [(self.market.oracle, abi.encode_call("getAssetsPrices(address[])", assets))], block_hash
        )
        return dict(zip(assets, abi.decode_result(["uint256[]"], raw)[0], strict=True))

    async def _read_flash_loan_premium(self, block_hash: str) -> int:
        (raw,) = await self._calls(
            [(self.market.pool, abi.encode_call("FLASHLOAN_PREMIUM_TOTAL()"))], block_hash
        )
        return int(abi.decode_result(["uint128"], raw)[0])

    # -- snapshot and follow ----------------------------------------------------------------
    async def load(self, block: BlockId = "latest") -> int:
        header = await self.client.get_block(block)
        if header is None:
            raise RpcError(-32000, "no head block")
        block_hash, number = header["hash"], int(header["number"], 16)
        (raw,) = await self._calls([(self.market.pool, abi.encode_call("getReservesList()"))], block_hash)
        assets = [to_checksum_address(a) for a in abi.decode_result(["address[]"], raw)[0]]
        self._reserves = await self._read_reserves(assets, block_hash)
        self._index_tokens()
        logs = await self.client.request(
            "eth_getLogs",
            [
                {
                    "fromBlock": "0x0",
                    "toBlock": hex(number),
                    "address": list(self._tokens),
                    "topics": [TRANSFER_TOPIC],
                }
            ],
        )
        users: set[str] = set()
        for log in logs:
            users.update(_topic_address(t) for t in log["topics"][1:3])
        users.discard(to_checksum_address(ZERO_ADDRESS))
        self._positions = await self._read_positions(sorted(users), block_hash)
        self._prices = await self._read_prices(block_hash)
        self._flash_loan_premium = await self._read_flash_loan_premium(block_hash)
        self._blocks = deque([_Block(number, block_hash, header["parentHash"], int(header["timestamp"], 16))])
        return number

    def _index_tokens(self) -> None:
        self._tokens = {}
        for r in self._reserves.values():
            self._tokens[r.a_token] = r.asset
            self._tokens[r.variable_debt_token] = r.asset

    @property
    def loaded(self) -> bool:
        return bool(self._blocks)

    async def sync(self, until: int | None = None) -> list[LendingEvent]:
        """Apply every block up to the current head, or to block ``until`` (a follower of another
        index's blocks: the chain may be further on already), at most ``max_blocks_per_sync`` per
        call."""
        if not self._blocks:
            await self.load("latest" if until is None else until)
            return []
        events: list[LendingEvent] = []
        reorg = await self._check_head()
        if reorg is not None:
            events.append(reorg)
        head = await self.client.block_number()
        if until is not None:
            head = min(head, until)
        for number in range(self.head[0] + 1, min(head, self.head[0] + self.max_blocks_per_sync) + 1):
            header = await self.client.get_block(number)
            if header is None or header["parentHash"] != self.head[1]:
                break  # the chain moved under us; the next sync's head check resolves it
            logs = await self.client.request("eth_getLogs", [{"blockHash": header["hash"]}])
            try:
                events.append(await self._apply(header, logs))
            except RpcError:
                break  # reads at a block hash that was just orphaned
        return events

    async def _apply(self, header: dict[str, Any], logs: Iterable[dict[str, Any]]) -> LendingUpdate:
        block_hash = header["hash"]
        users: set[str] = set()
        reserves: set[str] = set()
        config_changed = False
        for log in logs:
            if log.get("removed"):
                continue
            address, topics = to_checksum_address(log["address"]), log["topics"]
            if not topics:
                continue
            if address == self.market.pool and topics[0] == RESERVE_DATA_UPDATED_TOPIC:
                reserves.add(_topic_address(topics[1]))
            elif address == self.market.pool and topics[0] in (
                COLLATERAL_ENABLED_TOPIC,
                COLLATERAL_DISABLED_TOPIC,
            ):
                users.add(_topic_address(topics[2]))
            elif address in self._tokens and topics[0] == TRANSFER_TOPIC:
                users.update(_topic_address(t) for t in topics[1:3])
            elif self.market.configurator is not None and address == self.market.configurator:
                config_changed = True
        users.discard(to_checksum_address(ZERO_ADDRESS))
        if config_changed:
            reserves |= set(self._reserves)
        reserves &= set(self._reserves)
        block = _Block(
            int(header["number"], 16), block_hash, header["parentHash"], int(header["timestamp"], 16)
        )
        new_reserves = await self._read_reserves(sorted(reserves), block_hash) if reserves else {}
        new_positions = await self._read_positions(sorted(users), block_hash) if users else {}
        new_prices = await self._read_prices(block_hash)
        # The configurator sets the premium too (updateFlashloanPremiumTotal).
        premium = await self._read_flash_loan_premium(block_hash) if config_changed else None
        if premium is not None and premium != self._flash_loan_premium:
            block.flash_loan_premium = self._flash_loan_premium
            self._flash_loan_premium = premium
        for asset, reserve in new_reserves.items():
            block.reserves[asset] = self._reserves.get(asset)
            self._reserves[asset] = reserve
        for user, position in new_positions.items():
            block.positions[user] = self._positions.get(user)
            self._positions[user] = position
        prices_changed = new_prices != self._prices
        if prices_changed:
            block.prices = self._prices
            self._prices = new_prices
        self._blocks.append(block)
        while len(self._blocks) > self.depth:
            self._blocks.popleft()
        return LendingUpdate(
            block.number,
            block_hash,
            block.parent_hash,
            block.timestamp,
            frozenset(users),
            frozenset(reserves),
            prices_changed,
        )

    async def _check_head(self) -> LendingReorg | None:
        head = await self.client.get_block(self._blocks[-1].number)
        if head is not None and head["hash"] == self._blocks[-1].hash:
            return None
        orphaned: list[str] = []
        while self._blocks:
            top = self._blocks[-1]
            canonical = await self.client.get_block(top.number)
            if canonical is not None and canonical["hash"] == top.hash:
                break
            self._blocks.pop()
            orphaned.append(top.hash)
            self._undo(top)
        if not self._blocks:
            await self.load()
            return LendingReorg(self.head[0], self.head[1], tuple(orphaned), full_reload=True)
        return LendingReorg(self.head[0], self.head[1], tuple(orphaned))

    def _undo(self, block: _Block) -> None:
        for asset, reserve in block.reserves.items():
            if reserve is None:
                self._reserves.pop(asset, None)
            else:
                self._reserves[asset] = reserve
        for user, position in block.positions.items():
            if position is None:
                self._positions.pop(user, None)
            else:
                self._positions[user] = position
        if block.prices is not None:
            self._prices = block.prices
        if block.flash_loan_premium is not None:
            self._flash_loan_premium = block.flash_loan_premium
