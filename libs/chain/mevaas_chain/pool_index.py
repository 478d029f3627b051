"""Live index of every Uniswap V2 pool of the configured factories.

``load()`` takes a snapshot pinned to one block: ``allPairsLength``/``allPairs`` per factory, then
``token0``/``token1``/``getReserves`` of every pair, all as JSON-RPC batches. ``sync()`` then
follows the chain block by block from ``Sync`` (reserves) and ``PairCreated`` (new pools) logs,
fetched per block *hash*, so logs always belong to the block being applied.

Reorg safety: the index keeps the last ``depth`` blocks with, for each, the previous state of
every pool that block touched (an undo log). When the canonical block at the index's head no
longer matches, or a new block's parent hash differs from the stored head hash, it finds the
newest common ancestor among the kept blocks, undoes the orphaned blocks newest-first, reports a
``Reorg``, and applies the new canonical blocks. A reorg deeper than ``depth`` reloads the snapshot.

Uniswap V3 pools of the configured V3 factories are indexed alongside (``v3_pools``), with the
whole state the exact swap math needs: ``load()`` finds them from their factory's ``PoolCreated``
logs and reads each with ``read_pool_state`` at the snapshot block; ``sync()`` then applies their
``Swap`` (the price, tick and liquidity after it), ``Mint``/``Burn`` (replayed through
``modify_position``: ticks, bitmap, in-range liquidity) and ``Initialize`` logs in log order, and
``PoolCreated`` for new pools. They share the undo log, so reorgs rewind them like V2 pools.

Every applied block yields a ``BlockUpdate`` naming the pools it changed (V2 and V3), so scans can be
incremental.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from eth_utils.address import to_checksum_address

from mevaas_chain import abi
from mevaas_chain.amm.v3 import V3PoolState
from mevaas_chain.client import Call, ChainClient, RpcError
from mevaas_chain.registry import DexConfig, V3DexConfig
from mevaas_chain.v3_pools import (
    V3_POOL_CREATED_TOPIC,
    V3_STATE_TOPICS,
    apply_state_log,
    decode_pool_created_log,
    read_pool_state,
)


@dataclass(frozen=True)
class Pool:
    address: str
    dex: str
    token0: str
    token1: str
    fee_bps: int
    reserve0: int
    reserve1: int

    def reserves_for(self, token_in: str) -> tuple[int, int]:
        """(reserve_in, reserve_out) for a swap selling ``token_in``."""
        if token_in == self.token0:
            return self.reserve0, self.reserve1
        if token_in == self.token1:
            return self.reserve1, self.reserve0
        raise KeyError(f"{token_in} is not in pool {self.address}")


@dataclass(frozen=True)
class V3Pool:
    """A Uniswap V3 pool and its exact state (``fee`` in pips, as the pool stores it)."""

    address: str
    dex: str
    token0: str
    token1: str
    state: V3PoolState

    @property
    def fee(self) -> int:
        return self.state.fee


@dataclass(frozen=True)
class BlockUpdate:
    number: int
    hash: str
    parent_hash: str
    changed: frozenset[str]
    new_pools: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Reorg:
    """The blocks above ``ancestor_number`` were orphaned and undone; ``rewound`` pools were restored
    to their state at the ancestor (new canonical blocks follow as ``BlockUpdate``s)."""

    ancestor_number: int
    ancestor_hash: str
    orphaned: tuple[str, ...]
    rewound: frozenset[str]
    full_reload: bool = False


IndexEvent = BlockUpdate | Reorg


@dataclass
class _Block:
    number: int
    hash: str
    parent_hash: str
    # Pool address -> its state before this block (None: created in this block).
    undo: dict[str, Pool | None] = field(default_factory=dict)
    undo_v3: dict[str, V3Pool | None] = field(default_factory=dict)


class PoolIndex:
    def __init__(
        self,
        client: ChainClient,
        dexes: Sequence[DexConfig],
        *,
        v3_dexes: Sequence[V3DexConfig] = (),
        depth: int = 64,
        max_blocks_per_sync: int = 200,
    ) -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.client = client
        self.dexes = list(dexes)
        self.depth = depth
        self.max_blocks_per_sync = max_blocks_per_sync
        self.v3_dexes = list(v3_dexes)
        self._by_factory = {d.factory: d for d in self.dexes}
        self._v3_by_factory = {d.factory: d for d in self.v3_dexes}
        self._pools: dict[str, Pool] = {}
        self._v3_pools: dict[str, V3Pool] = {}
        self._blocks: deque[_Block] = deque()

    @property
    def head(self) -> tuple[int, str]:
        if not self._blocks:
            raise RuntimeError("index not loaded")
        last = self._blocks[-1]
        return last.number, last.hash

    @property
    def pools(self) -> Mapping[str, Pool]:
        """Read-only live view; entries are immutable, replaced as blocks arrive."""
        return MappingProxyType(self._pools)

    @property
    def v3_pools(self) -> Mapping[str, V3Pool]:
        """Read-only live view of the V3 pools; entries are immutable, replaced as blocks arrive."""
        return MappingProxyType(self._v3_pools)

    def snapshot(self) -> dict[str, Pool]:
        """A copy of the current state that later blocks do not change."""
        return dict(self._pools)

    def pool(self, address: str) -> Pool:
        return self._pools[to_checksum_address(address)]

    def recent_blocks(self) -> list[tuple[int, str]]:
        return [(b.number, b.hash) for b in self._blocks]

    async def load(self, block: int | None = None) -> int:
        """Snapshot every pool at ``block`` (default: the current head). Returns the block number."""
        header = await self._header(block if block is not None else "latest")
        if header is None:
            raise RpcError(-32000, f"block {block} not found")
        number = int(header["number"], 16)
        pools: dict[str, Pool] = {}
        lengths = await self.client.batch_call(
            [Call(d.factory, abi.ALL_PAIRS_LENGTH) for d in self.dexes], number
        )
        pair_calls: list[Call] = []
        pair_dex: list[DexConfig] = []
        for dex, raw in zip(self.dexes, lengths, strict=True):
            if raw is None:
                raise RpcError(-32000, f"{dex.name}: allPairsLength reverted at block {number}")
            count = abi.decode_uint(raw)
            pair_calls += [Call(dex.factory, abi.all_pairs(i)) for i in range(count)]
            pair_dex += [dex] * count
        addresses = [
            abi.decode_address(r) if r else "" for r in await self.client.batch_call(pair_calls, number)
        ]
        detail_calls = [
            Call(a, data) for a in addresses for data in (abi.TOKEN0, abi.TOKEN1, abi.GET_RESERVES)
        ]
        details = await self.client.batch_call(detail_calls, number)
        for i, (address, dex) in enumerate(zip(addresses, pair_dex, strict=True)):
            t0, t1, reserves = details[3 * i : 3 * i + 3]
            if not address or t0 is None or t1 is None or reserves is None:
                raise RpcError(-32000, f"{dex.name}: could not read pair #{i} at block {number}")
            r0, r1 = abi.decode_reserves(reserves)
            pools[address] = Pool(
                address, dex.name, abi.decode_address(t0), abi.decode_address(t1), dex.fee_bps, r0, r1
            )
        self._v3_pools = await self._load_v3(number)
        self._pools = pools
        self._blocks = deque([_Block(number, header["hash"], header["parentHash"])])
        return number

    async def _load_v3(self, number: int) -> dict[str, V3Pool]:
        """Every pool the V3 factories created up to ``number``, with its state at ``number``."""
        if not self.v3_dexes:
            return {}
        created = await self.client.request(
            "eth_getLogs",
            [
                {
                    "fromBlock": "0x0",
                    "toBlock": hex(number),
                    "address": [d.factory for d in self.v3_dexes],
                    "topics": [V3_POOL_CREATED_TOPIC],
                }
            ],
        )
        events = [e for e in map(decode_pool_created_log, created) if e is not None]
        states = await asyncio.gather(*(read_pool_state(self.client, e.pool, number) for e in events))
        return {
            e.pool: V3Pool(e.pool, self._v3_by_factory[e.factory].name, e.token0, e.token1, state)
            for e, state in zip(events, states, strict=True)
        }

    async def sync(self) -> list[IndexEvent]:
        """Apply every block up to the current head (at most ``max_blocks_per_sync`` per call)."""
        if not self._blocks:
            await self.load()
            return []
        events: list[IndexEvent] = []
        reorg = await self._check_head()
        if reorg is not None:
            events.append(reorg)
        head = await self.client.block_number()
        start = self.head[0] + 1
        stop = min(head, start + self.max_blocks_per_sync - 1)
        if stop < start:
            return events
        headers = await self.client.batch(
            [("eth_getBlockByNumber", [hex(n), False]) for n in range(start, stop + 1)]
        )
        valid = [h for h in headers if isinstance(h, dict)]
        logs = await self.client.batch(
            [
                (
                    "eth_getLogs",
                    [{"blockHash": h["hash"], "topics": [self._topics]}],
                )
                for h in valid
            ]
        )
        for header, block_logs in zip(valid, logs, strict=True):
            if header["parentHash"] != self.head[1] or isinstance(block_logs, RpcError):
                # The chain moved under us; the next sync resolves it from the head check.
                break
            events.append(self._apply(header, block_logs))
        return events

    async def follow(self, poll_interval_s: float = 0.25) -> AsyncIterator[IndexEvent]:
        """Yield index events forever, polling the head."""
        while True:
            for event in await self.sync():
                yield event
            await asyncio.sleep(poll_interval_s)

    async def verify(self, block: int | str | None = None) -> list[str]:
        """Pools whose indexed reserves (V2) or state (V3) differ from the chain at the index head
        (empty if in sync)."""
        at: int | str = self.head[0] if block is None else block
        addresses = list(self._pools)
        results = await self.client.batch_call([Call(a, abi.GET_RESERVES) for a in addresses], at)
        v3_addresses = list(self._v3_pools)
        v3_states = await asyncio.gather(
            *(read_pool_state(self.client, a, at if isinstance(at, int) else None) for a in v3_addresses)
        )
        return [
            a
            for a, raw in zip(addresses, results, strict=True)
            if raw is None or abi.decode_reserves(raw) != (self._pools[a].reserve0, self._pools[a].reserve1)
        ] + [a for a, state in zip(v3_addresses, v3_states, strict=True) if state != self._v3_pools[a].state]

    @property
    def _topics(self) -> list[str]:
        """The log topics a block is fetched with (V3 ones only when V3 factories are configured)."""
        v2 = [abi.SYNC_TOPIC, abi.PAIR_CREATED_TOPIC]
        return v2 + ([V3_POOL_CREATED_TOPIC, *V3_STATE_TOPICS] if self.v3_dexes else [])

    async def _header(self, block: int | str) -> dict[str, Any] | None:
        return await self.client.get_block(block)

    async def _check_head(self) -> Reorg | None:
        head = await self._header(self._blocks[-1].number)
        if head is not None and head["hash"] == self._blocks[-1].hash:
            return None
        numbers = [b.number for b in self._blocks]
        headers = await self.client.batch(
            [("eth_getBlockByNumber", [hex(n), False]) for n in reversed(numbers)]
        )
        canonical = {int(h["number"], 16): h["hash"] for h in headers if isinstance(h, dict)}
        orphaned: list[str] = []
        rewound: set[str] = set()
        while self._blocks and canonical.get(self._blocks[-1].number) != self._blocks[-1].hash:
            block = self._blocks.pop()
            orphaned.append(block.hash)
            for address, previous in block.undo.items():
                rewound.add(address)
                if previous is None:
                    self._pools.pop(address, None)
                else:
                    self._pools[address] = previous
            for address, previous_v3 in block.undo_v3.items():
                rewound.add(address)
                if previous_v3 is None:
                    self._v3_pools.pop(address, None)
                else:
                    self._v3_pools[address] = previous_v3
        if not self._blocks:
            # Deeper than the kept history: start over from a fresh snapshot.
            number = await self.load()
            everything = frozenset(self._pools) | frozenset(self._v3_pools)
            return Reorg(number, self.head[1], tuple(orphaned), everything, full_reload=True)
        ancestor = self._blocks[-1]
        return Reorg(ancestor.number, ancestor.hash, tuple(orphaned), frozenset(rewound))

    def _apply(self, header: dict[str, Any], logs: Iterable[dict[str, Any]]) -> BlockUpdate:
        block = _Block(int(header["number"], 16), header["hash"], header["parentHash"])
        changed: set[str] = set()
        created: set[str] = set()
        for log in sorted(logs, key=lambda entry: int(entry["logIndex"], 16)):
            if log.get("removed"):
                continue
            topics = log["topics"]
            address = to_checksum_address(log["address"])
            data = bytes.fromhex(log["data"][2:])
            if topics[0] == abi.PAIR_CREATED_TOPIC and address in self._by_factory:
                dex = self._by_factory[address]
                pair = to_checksum_address(data[12:32])
                if pair not in self._pools:
                    block.undo.setdefault(pair, None)
                    t0 = to_checksum_address(bytes.fromhex(topics[1][2:])[12:])
                    t1 = to_checksum_address(bytes.fromhex(topics[2][2:])[12:])
                    self._pools[pair] = Pool(pair, dex.name, t0, t1, dex.fee_bps, 0, 0)
                    created.add(pair)
            elif topics[0] == abi.SYNC_TOPIC and address in self._pools:
                block.undo.setdefault(address, self._pools[address])
                r0, r1 = abi.decode_sync(data)
                self._pools[address] = replace(self._pools[address], reserve0=r0, reserve1=r1)
                changed.add(address)
            elif topics[0] == V3_POOL_CREATED_TOPIC and address in self._v3_by_factory:
                event = decode_pool_created_log(log)
                if event is not None and event.pool not in self._v3_pools:
                    block.undo_v3.setdefault(event.pool, None)
                    dex_name = self._v3_by_factory[address].name
                    self._v3_pools[event.pool] = V3Pool(
                        event.pool, dex_name, event.token0, event.token1, event.empty_state()
                    )
                    created.add(event.pool)
            elif address in self._v3_pools:
                pool = self._v3_pools[address]
                block.undo_v3.setdefault(address, pool)
                self._v3_pools[address] = replace(pool, state=apply_state_log(pool.state, log))
                changed.add(address)
        self._blocks.append(block)
        while len(self._blocks) > self.depth:
            self._blocks.popleft()
        return BlockUpdate(
            block.number, block.hash, block.parent_hash, frozenset(changed | created), frozenset(created)
        )
