"""Devnet block producer and Flashbots-style bundle relay.

anvil has no bundles, so the devnet owns block production instead:

* anvil runs with ``--no-mining --order fifo``: a block is mined only on ``evm_mine`` and holds
  pending transactions in arrival order.
* The relay is also the chain's public JSON-RPC endpoint. It forwards every method to anvil except
  transaction submission: ``eth_sendRawTransaction`` is answered at once with the hash and the
  transaction is held; ``eth_sendTransaction`` (anvil's unlocked accounts) is held and answered
  when it is released. So anvil's pool stays empty between blocks.
* At each block (timer, or ``mine_block()`` on demand) the producer takes a snapshot, sends the
  transactions of every bundle targeting that block (bundle by bundle, in arrival order), then
  the held public transactions, and mines. A bundle counts only if all its transactions are in
  the block, succeeded, and sit contiguously before every public transaction. If any bundle
  fails, the block is rewound to the snapshot and rebuilt without it (without every bundle that
  only reverted, in one rebuild: one gap, a hundred searchers, one winner), so a reverting bundle
  is never included and no partial bundle lands (a rebuilt block is visible for a moment, as a
  one-block reorg would be).
* A bundle that extends an earlier one for the same block (its transactions and more) goes
  before it (`extensions_first`): a user's protected transaction with its backrun wins over the
  transaction alone, as a builder would pick the bundle that pays more.
* ``txpool_content`` / ``eth_pendingTransactions`` answer the held public transactions (the
  public mempool a sandwich bot watches).
* ``eth_sendBundle {txs, blockNumber}`` is rejected if ``blockNumber`` is not in the future;
  bundles whose block has passed are discarded. The same bundle for the same block sent again
  (through a second relay: ``DevnetChain.add_relay``, all relays feed the one producer) is held
  once. A relay started with ``refuse_bundles`` refuses every bundle with that reason. ``eth_callBundle`` simulates on a snapshot at
  the next block and rewinds, unseen: reads through the relay wait while a simulation's block
  exists (a builder's simulations are not the chain; a reader that saw one would take it for a
  block that was then reorged away).

Transactions sent straight to anvil's own port bypass all of this and are not ordered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from eth_utils.crypto import keccak

from mevaas_chain.client import ChainClient, RpcError
from mevaas_local.devnet.simulation import BundleRejected, simulate_bundle
from mevaas_local.devnet.txpool import pending_json, txpool_content

log = logging.getLogger(__name__)

Tx = dict[str, Any]
Receipt = dict[str, Any]

INVALID_PARAMS = -32602
BUNDLE_REJECTED = -32000


class TxFailed(RuntimeError):
    pass


def tx_hash(raw: bytes) -> str:
    """Hash of a signed transaction (legacy or typed): keccak of its encoding."""
    return "0x" + keccak(raw).hex()


def parse_raw(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) < 4:
        raise BundleRejected(f"not a raw transaction: {value!r}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError as exc:
        raise BundleRejected("raw transaction is not hex") from exc


@dataclass
class Bundle:
    txs: list[bytes]
    block_number: int
    tx_hashes: list[str] = field(init=False)
    hash: str = field(init=False)

    def __post_init__(self) -> None:
        self.tx_hashes = [tx_hash(t) for t in self.txs]
        self.hash = "0x" + keccak(b"".join(bytes.fromhex(h[2:]) for h in self.tx_hashes)).hex()


@dataclass
class _Public:
    raw: bytes | None = None
    unsigned: Tx | None = None
    future: asyncio.Future[str] | None = None


@dataclass
class BlockResult:
    number: int
    hash: str
    bundles: list[str]
    dropped_bundles: dict[str, str]
    transactions: list[str]


class BlockProducer:
    """Mines blocks on anvil: bundles first and atomically, then public transactions."""

    def __init__(self, client: ChainClient) -> None:
        self.client = client
        self._lock = asyncio.Lock()
        self._public: list[_Public] = []
        self._bundles: dict[int, list[Bundle]] = {}
        self._task: asyncio.Task[None] | None = None
        self.block_time_s: float | None = None
        self.before_block: list[Callable[[int], Awaitable[None]]] = []
        self.after_block: list[Callable[[BlockResult], Awaitable[None]]] = []

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, block_time_s: float) -> None:
        self.block_time_s = block_time_s
        self._task = asyncio.create_task(self._run(block_time_s), name="devnet-block-producer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, block_time_s: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.mine_block()
            except Exception:
                log.exception("block production failed")
            await asyncio.sleep(max(0.0, block_time_s - (loop.time() - started)))

    def submit_raw(self, raw: bytes) -> str:
        self._public.append(_Public(raw=raw))
        return tx_hash(raw)

    def pending_raw(self) -> list[bytes]:
        """The signed public transactions held for the next block, in arrival order (the
        chain's public mempool: a bundle's transactions are never in it)."""
        return [item.raw for item in self._public if item.raw is not None]

    def submit_unsigned(self, tx: Tx) -> asyncio.Future[str]:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._public.append(_Public(unsigned=dict(tx), future=future))
        return future

    async def send_bundle(self, txs: Sequence[bytes], block_number: int) -> Bundle:
        if not txs:
            raise BundleRejected("empty bundle")
        head = await self.client.block_number()
        if block_number <= head:
            raise BundleRejected(f"block {block_number} is in the past (head {head})")
        bundle = Bundle(list(txs), block_number)
        held = self._bundles.setdefault(block_number, [])
        # The same bundle through another relay (a fast-mode send goes to each) is one bundle.
        same = next((b for b in held if b.hash == bundle.hash), None)
        if same is not None:
            return same
        held.append(bundle)
        return bundle

    async def transact(self, txs: Sequence[Tx], *, require_success: bool = False) -> list[Receipt]:
        """Send unsigned transactions from unlocked accounts as public transactions and wait until
        they are mined (mining a block now if no block timer runs)."""
        futures = [self.submit_unsigned(tx) for tx in txs]
        if not self.running:
            await self.mine_block()
        hashes = await asyncio.gather(*futures)
        receipts = await self.wait_receipts(hashes)
        if require_success:
            failed = [r["transactionHash"] for r in receipts if int(r["status"], 16) != 1]
            if failed:
                raise TxFailed(f"transactions reverted: {failed}")
        return receipts

    async def wait_receipts(self, hashes: Sequence[str], timeout_s: float = 30.0) -> list[Receipt]:
        async with asyncio.timeout(timeout_s):
            while True:
                replies = await self.client.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
                if all(isinstance(r, dict) for r in replies):
                    return replies
                if not self.running:
                    raise TxFailed("transactions were not mined")
                await asyncio.sleep(0.05)

    async def mine_block(self) -> BlockResult:
        head = await self.client.block_number()
        for hook in self.before_block:
            await hook(head + 1)
        async with self._lock:
            return await self._mine_locked()

    async def _mine_locked(self) -> BlockResult:
        target = await self.client.block_number() + 1
        for number in [n for n in self._bundles if n < target]:
            del self._bundles[number]
        candidates = extensions_first(self._bundles.pop(target, []))
        public, self._public = self._public, []
        dropped: dict[str, str] = {}
        while True:
            snapshot = await self.client.request("evm_snapshot") if candidates else None
            failures = await self._send_bundles(candidates)
            if not failures:
                public_hashes = await self._send_public(public)
                await self.client.request("evm_mine")
                block = await self._latest()
                failures = await self._check_bundles(candidates, block)
                if not failures:
                    break
            dropped.update(failures)
            candidates = [b for b in candidates if b.hash not in failures]
            await self.client.request("anvil_dropAllTransactions")
            await self.client.request("evm_revert", [snapshot])
        for item, result in zip(public, public_hashes, strict=True):
            if item.future is not None and not item.future.done():
                if isinstance(result, RpcError):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)
        result_block = BlockResult(
            number=int(block["number"], 16),
            hash=block["hash"],
            bundles=[b.hash for b in candidates],
            dropped_bundles=dropped,
            transactions=list(block["transactions"]),
        )
        for bundle_hash, reason in dropped.items():
            log.info("bundle %s not included in block %d: %s", bundle_hash, target, reason)
        for after in self.after_block:
            await after(result_block)
        return result_block

    async def _latest(self) -> dict[str, Any]:
        block = await self.client.get_block("latest")
        if block is None:
            raise RpcError(-32603, "node returned no latest block")
        return block

    async def _send_bundles(self, bundles: Sequence[Bundle]) -> dict[str, str]:
        failures: dict[str, str] = {}
        for bundle in bundles:
            # One at a time: anvil answers a JSON-RPC batch concurrently, so the transactions of a
            # batch reach its FIFO pool in any order, and a bundle's order is the point.
            for tx in bundle.txs:
                try:
                    await self.client.request("eth_sendRawTransaction", ["0x" + tx.hex()])
                except RpcError as exc:
                    failures[bundle.hash] = f"rejected by the node: {exc.message}"
                    break
        return failures

    async def _send_public(self, public: Sequence[_Public]) -> list[str | RpcError]:
        requests: list[tuple[str, list[Any]]] = []
        for item in public:
            if item.raw is not None:
                requests.append(("eth_sendRawTransaction", ["0x" + item.raw.hex()]))
            else:
                requests.append(("eth_sendTransaction", [item.unsigned]))
        if not requests:
            return []
        replies = await self.client.batch(requests)
        for reply in replies:
            if isinstance(reply, RpcError):
                log.info("public transaction rejected: %s", reply.message)
        return replies

    async def _check_bundles(self, bundles: Sequence[Bundle], block: dict[str, Any]) -> dict[str, str]:
        if not bundles:
            return {}
        all_hashes = [h for b in bundles for h in b.tx_hashes]
        receipts = await self.client.batch([("eth_getTransactionReceipt", [h]) for h in all_hashes])
        status = {
            h: r
            for h, r in zip(all_hashes, receipts, strict=True)
            if isinstance(r, dict) and r.get("blockHash") == block["hash"]
        }
        mined = list(block["transactions"])
        failures: dict[str, str] = {}
        position = 0
        for bundle in bundles:
            # Whether each of its transactions is in its place and reverted (then it changed nothing).
            only_reverted = True
            for h in bundle.tx_hashes:
                receipt = status.get(h)
                if receipt is None:
                    failures[bundle.hash], only_reverted = f"transaction {h} was not mined", False
                elif mined[position : position + 1] != [h]:
                    failures[bundle.hash] = f"transaction {h} is not at the top of the block"
                    only_reverted = False
                elif int(receipt["status"], 16) != 1:
                    failures.setdefault(bundle.hash, f"transaction {h} reverted")
                else:
                    only_reverted = False
                position += 1
            # A bundle that only reverted changed nothing the next bundles read (its senders' gas
            # and nonces aside), so they are judged in this same block: one rebuild drops every
            # such bundle (many searchers after one gap: one rebuild, not one per loser). After any
            # other failure the later state and positions mean nothing: the rebuild judges them.
            if bundle.hash in failures and not only_reverted:
                break
        return failures


class RelayServer:
    """HTTP JSON-RPC on 127.0.0.1: Flashbots bundle methods plus the chain's public RPC."""

    def __init__(self, producer: BlockProducer, anvil: ChainClient, *, refuse_bundles: str = "") -> None:
        self.producer = producer
        self.anvil = anvil
        # Non-empty: every eth_sendBundle is refused with this reason (a relay that will not take
        # this sender's bundles, e.g. rate-limiting it), as a second relay of a devnet may be.
        self.refuse_bundles = refuse_bundles
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/", self._handle)
        app.router.add_post("/relay", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
        except ValueError:
            return web.json_response(_error(None, -32700, "parse error"))
        if isinstance(payload, list):
            if not payload:
                return web.json_response(_error(None, -32600, "empty batch"))
            return web.json_response(await self._batch(payload))
        return web.json_response(await self._dispatch(payload))

    async def _batch(self, payload: list[Any]) -> list[dict[str, Any]]:
        """The relay's own methods one by one; everything else in ONE batch to anvil (a wallet's
        or the Protect RPC's simulation batch is a call, a nonce and a balance: one round trip to
        the node, not three)."""
        forwarded = [
            i
            for i, req in enumerate(payload)
            if isinstance(req, dict) and isinstance(req.get("method"), str) and req["method"] not in OWN
        ]
        replies: list[Any] = [None] * len(payload)

        async def forward() -> None:
            if not forwarded:
                return
            results = await self.anvil.batch(
                [(payload[i]["method"], payload[i].get("params") or []) for i in forwarded]
            )
            for i, result in zip(forwarded, results, strict=True):
                rid = payload[i].get("id")
                replies[i] = (
                    _error(rid, result.code, result.message, result.data)
                    if isinstance(result, RpcError)
                    else {"jsonrpc": "2.0", "id": rid, "result": result}
                )

        async def own(i: int) -> None:
            replies[i] = await self._dispatch(payload[i])

        mine = set(forwarded)
        await asyncio.gather(forward(), *(own(i) for i in range(len(payload)) if i not in mine))
        return replies

    async def _dispatch(self, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict) or not isinstance(req.get("method"), str):
            return _error(None, -32600, "invalid request")
        rid = req.get("id")
        method: str = req["method"]
        params = req.get("params") or []
        try:
            result = await self._call(method, params)
        except BundleRejected as exc:
            return _error(rid, BUNDLE_REJECTED if "past" in str(exc) else INVALID_PARAMS, str(exc))
        except RpcError as exc:
            return _error(rid, exc.code, exc.message, exc.data)
        except (KeyError, TypeError, ValueError) as exc:
            return _error(rid, INVALID_PARAMS, f"invalid params: {exc}")
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    async def _call(self, method: str, params: list[Any]) -> Any:
        if method == "eth_sendBundle":
            if self.refuse_bundles:
                raise BundleRejected(self.refuse_bundles)
            args = params[0]
            bundle = await self.producer.send_bundle(
                [parse_raw(t) for t in args["txs"]], _block_number(args["blockNumber"])
            )
            return {"bundleHash": bundle.hash}
        if method == "eth_callBundle":
            args = params[0]
            block = args.get("blockNumber")
            return await simulate_bundle(
                self.anvil,
                [parse_raw(t) for t in args["txs"]],
                None if block is None else _block_number(block),
            )
        if method == "eth_sendRawTransaction":
            return self.producer.submit_raw(parse_raw(params[0]))
        if method == "eth_sendTransaction":
            return await self.producer.submit_unsigned(params[0])
        if method in ("txpool_content", "eth_pendingTransactions"):
            held = [pending_json(raw) for raw in self.producer.pending_raw()]
            txs = [tx for tx in held if tx is not None]
            return txpool_content(txs) if method == "txpool_content" else txs
        return await self.anvil.request(method, params)


# What the relay answers itself (everything else is the node's).
OWN = frozenset(
    {"eth_sendBundle", "eth_callBundle", "eth_sendRawTransaction", "eth_sendTransaction"}
    | {"txpool_content", "eth_pendingTransactions"}
)


def extensions_first(bundles: Sequence[Bundle]) -> list[Bundle]:
    """Arrival order, except that a bundle extending an earlier one (all of its transactions and
    more, e.g. a user's transaction plus its backrun over the transaction alone) takes the earlier
    one's place: a builder includes the bundle that pays more, and both cannot land."""
    ordered = list(bundles)
    for i in range(len(ordered)):
        mine = set(ordered[i].tx_hashes)
        for j in range(i + 1, len(ordered)):
            if mine < set(ordered[j].tx_hashes):
                ordered.insert(i, ordered.pop(j))
                break
    return ordered


def _block_number(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 16) if value.startswith("0x") else int(value)
    raise BundleRejected(f"bad blockNumber {value!r}")


def _error(rid: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": rid, "error": error}
