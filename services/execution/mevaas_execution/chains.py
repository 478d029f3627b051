"""The service's view of the configured chains: one JSON-RPC client per chain (public RPC) and one
per bundle relay, a shared nonce manager, signing, and the executor deployment."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode
from eth_utils.address import to_checksum_address

from mevaas_chain.client import ChainClient, RpcError
from mevaas_chain.contracts import load_artifact
from mevaas_chain.keystore import SecretKey
from mevaas_chain.nonces import NonceManager
from mevaas_chain.registry import PRIMARY_RELAY, ChainConfig, ChainRegistry
from mevaas_chain.signer import DynamicFeeTransaction, SignedTransaction, sign_transaction
from mevaas_execution.coalescing import CoalescingRpc
from mevaas_execution.domain.planning import DEFAULT_PRIORITY_FEE_WEI, settled

# The Executor (V2 and V3 cycles, V3/Balancer flash loans, liquidations, deleverage) costs ~4.7M gas
# to deploy (its 21.4 kB of runtime code alone ~4.3M); headroom for more entry points.
DEPLOY_GAS = 6_000_000


class ChainUnavailable(Exception):
    """The chain is not configured here."""


class InsufficientFunds(Exception):
    """The wallet cannot pay for the transaction."""


@dataclass
class Chain:
    config: ChainConfig
    rpc: ChainClient
    relay: ChainClient | None
    # The fast mode's further relays, by name (config.fast_relays).
    fast_relays: dict[str, ChainClient]
    # The pipeline's simulation reads and bundles, sent together with their concurrent peers'.
    reads: CoalescingRpc
    bundles: CoalescingRpc | None

    @property
    def relay_names(self) -> list[str]:
        """Every relay a fast-mode bundle goes to: the primary first, then the configured ones."""
        return ([PRIMARY_RELAY] if self.relay is not None else []) + list(self.fast_relays)


class ChainGateway:
    def __init__(self, registry: ChainRegistry, *, timeout_s: float = 10.0) -> None:
        self.registry = registry
        self._chains: dict[int, Chain] = {}
        for config in registry:
            relay = (
                ChainClient(config.relay_url, chain=config, timeout_s=timeout_s) if config.relay_url else None
            )
            fast = {r.name: ChainClient(r.url, chain=config, timeout_s=timeout_s) for r in config.fast_relays}
            rpc = ChainClient.for_chain(config, timeout_s=timeout_s)
            self._chains[config.chain_id] = Chain(
                config,
                rpc,
                relay,
                fast,
                CoalescingRpc(rpc, dedupe=True),
                CoalescingRpc(relay, dedupe=False) if relay is not None else None,
            )
        self.nonces = NonceManager(self._pending_nonce)
        self._wallet_locks: dict[tuple[int, str], asyncio.Lock] = {}

    @property
    def chain_ids(self) -> list[int]:
        return sorted(self._chains)

    def chain(self, chain_id: int) -> Chain:
        chain = self._chains.get(chain_id)
        if chain is None:
            raise ChainUnavailable(f"chain {chain_id} is not configured")
        return chain

    def wallet_lock(self, chain_id: int, address: str) -> asyncio.Lock:
        """Serialises nonce reservation through submission per account, so nonces land in order."""
        key = (chain_id, address.lower())
        lock = self._wallet_locks.get(key)
        if lock is None:
            lock = self._wallet_locks[key] = asyncio.Lock()
        return lock

    async def close(self) -> None:
        for chain in self._chains.values():
            for coalesced in (chain.reads, chain.bundles):
                if coalesced is not None:
                    await coalesced.close()
            with contextlib.suppress(Exception):
                await chain.rpc.close()
            for relay in [chain.relay, *chain.fast_relays.values()]:
                if relay is not None:
                    with contextlib.suppress(Exception):
                        await relay.close()

    async def _pending_nonce(self, chain_id: int, address: str) -> int:
        return int(
            await self.chain(chain_id).rpc.request("eth_getTransactionCount", [address, "pending"]), 16
        )

    async def send_bundle(
        self, chain_id: int, raw_txs: Sequence[bytes], block_number: int, *, relay: str = PRIMARY_RELAY
    ) -> str:
        """``eth_sendBundle`` to one of the chain's relays (``relay``: a name of ``relay_names``)."""
        chain = self.chain(chain_id)
        # The primary relay's bundles go out with their concurrent peers' (coalescing.py).
        client: ChainClient | CoalescingRpc | None = (
            chain.bundles if relay == PRIMARY_RELAY else chain.fast_relays.get(relay)
        )
        if client is None:
            raise ChainUnavailable(f"chain {chain_id} has no bundle relay {relay!r}")
        result = await client.request(
            "eth_sendBundle",
            [{"txs": ["0x" + raw.hex() for raw in raw_txs], "blockNumber": hex(block_number)}],
        )
        return str(result.get("bundleHash", "")) if isinstance(result, dict) else ""

    async def send_raw(self, chain_id: int, raw: bytes) -> str:
        return str(await self.chain(chain_id).rpc.request("eth_sendRawTransaction", ["0x" + raw.hex()]))

    async def receipts(self, chain_id: int, tx_hashes: Sequence[str]) -> list[dict[str, Any] | None]:
        if not tx_hashes:
            return []
        replies = await self.chain(chain_id).rpc.batch(
            [("eth_getTransactionReceipt", [h]) for h in tx_hashes]
        )
        return [r if isinstance(r, dict) else None for r in replies]

    async def latest_block(self, chain_id: int) -> dict[str, Any]:
        block = await self.chain(chain_id).rpc.get_block("latest")
        if block is None:
            raise RpcError(-32603, "no latest block")
        return block

    async def deploy_executor(
        self, chain_id: int, key: SecretKey, owner: str, *, receipt_timeout_s: float = 120.0
    ) -> tuple[str, str]:
        """Deploy an Executor owned by ``owner`` (signed by its key) that accepts flash callbacks
        from every configured DEX factory of the chain; returns (address, tx hash) once mined."""
        chain = self.chain(chain_id)
        artifact = load_artifact("Executor")
        factories = [dex.factory for dex in chain.config.dexes]
        data = artifact.bytecode + encode(["address", "address[]"], [owner, factories])
        block = await self.latest_block(chain_id)
        base_fee = int(block.get("baseFeePerGas") or "0x0", 16)
        max_fee = 2 * base_fee + DEFAULT_PRIORITY_FEE_WEI
        balance = int(await chain.rpc.request("eth_getBalance", [owner, "latest"]), 16)
        if balance < DEPLOY_GAS * max_fee:
            raise InsufficientFunds(
                f"wallet {owner} holds {balance} wei on chain {chain_id}, "
                f"the executor deployment needs up to {DEPLOY_GAS * max_fee}"
            )
        async with self.wallet_lock(chain_id, owner), self.nonces.lease(chain_id, owner) as nonce:
            signed = sign_transaction(
                DynamicFeeTransaction(
                    chain_id=chain_id,
                    nonce=nonce,
                    max_priority_fee_per_gas=DEFAULT_PRIORITY_FEE_WEI,
                    max_fee_per_gas=max_fee,
                    gas=DEPLOY_GAS,
                    to=None,
                    data=data,
                ),
                key,
            )
            await self.send_raw(chain_id, signed.raw)
        tx_hash = "0x" + signed.hash.hex()
        receipt = await self.wait_receipt(chain_id, tx_hash, receipt_timeout_s)
        if int(receipt["status"], 16) != 1:
            raise RpcError(-32000, f"executor deployment {tx_hash} reverted")
        return str(to_checksum_address(receipt["contractAddress"])), tx_hash

    def confirmations(self, chain_id: int) -> int:
        return self.chain(chain_id).config.confirmations

    async def wait_receipt(self, chain_id: int, tx_hash: str, timeout_s: float) -> dict[str, Any]:
        """The transaction's receipt once it is settled (``planning.settled``)."""
        depth = self.confirmations(chain_id)
        async with asyncio.timeout(timeout_s):
            while True:
                head = await self.chain(chain_id).rpc.block_number()  # before the receipt
                (receipt,) = await self.receipts(chain_id, [tx_hash])
                if receipt is not None and settled(receipt, head, depth):
                    return receipt
                await asyncio.sleep(0.1)


def sign_call(
    *,
    chain_id: int,
    nonce: int,
    key: SecretKey,
    to: str,
    data: bytes,
    gas: int,
    max_fee: int,
    priority_fee: int,
    value: int = 0,
) -> SignedTransaction:
    return sign_transaction(
        DynamicFeeTransaction(
            chain_id=chain_id,
            nonce=nonce,
            max_priority_fee_per_gas=priority_fee,
            max_fee_per_gas=max_fee,
            gas=gas,
            to=to,
            value=value,
            data=data,
        ),
        key,
    )


def sign_executor_call(
    *,
    chain_id: int,
    nonce: int,
    key: SecretKey,
    executor: str,
    data: bytes,
    gas: int,
    max_fee: int,
    priority_fee: int,
) -> SignedTransaction:
    return sign_call(
        chain_id=chain_id,
        nonce=nonce,
        key=key,
        to=executor,
        data=data,
        gas=gas,
        max_fee=max_fee,
        priority_fee=priority_fee,
    )
