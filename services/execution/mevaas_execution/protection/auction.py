"""The order-flow auction of protected transactions (MEV-Share style), the auctioneer's side.

When a protected transaction is accepted, `OrderFlowAuction.open` opens a lot: it simulates the
transaction once at the relay (``eth_callBundle`` at the next block: its exact gas), publishes an
`OrderFlowHint` on ``protect.<tenant>.hint`` with what the hint level allows searchers to see
(``none``; ``to_selector``; ``pool``: the pools it swaps through; ``amounts``: the decoded swap)
and the refund share (the tenant plan's ``backrun_refund_bps``, recorded on the transaction when
it was accepted; the platform default when the plan sets none), and keeps the lot (raw
transaction, sender, share) in `LOTS`.

Searchers (the platform's and tenants' ``backrun`` strategies, in the strategy service) answer
with an Opportunity whose action is a `BackrunAction` naming the lot's transaction; risk decides
on it as on any other; the ``backrun`` executor (`executors/backrun.py`) then bundles the user's
raw transaction first and the backrun right after it, and the executor contract pays the refund
to the lot's sender in the same transaction, with the lot's share whatever the searcher wrote.
The relay prefers a bundle that extends another (the user's transaction plus its backrun over the
user's transaction alone), so the matched bundle wins the block.

`LOTS` lives in the process that accepted the transaction: with several execution replicas a
backrun decided on another replica finds no lot and is refused (FAILED, "no open auction").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_chain import abi
from mevaas_chain.client import RpcError, TransientRpcError
from mevaas_chain.rawtx import DecodedTransaction
from mevaas_chain.swaps import decode_router_swap
from mevaas_core.bus import Bus
from mevaas_core.message_rules import BIGINT_MAX
from mevaas_execution.chains import ChainGateway
from mevaas_execution.domain.planning import next_base_fee

log = logging.getLogger(__name__)

HINT_LEVELS = ("none", "to_selector", "pool", "amounts")
DEFAULT_REFUND_BPS = 9_000


def refund_share(plan: common_pb2.Plan | None, default_bps: int) -> int:
    """The share of a backrun's profit a tenant's protected transaction is refunded (basis points):
    its plan's ``backrun_refund_bps`` when set (tenancy validated it, 0-10000), else the platform's."""
    if plan is not None and plan.HasField("backrun_refund_bps"):
        return plan.backrun_refund_bps
    return default_bps


@dataclass(frozen=True, slots=True)
class Lot:
    tenant_id: str
    chain_id: int
    tx_hash: str
    raw: bytes
    sender: str
    refund_bps: int
    # The transaction's gas used at the top of the next block, and the fees it offers.
    gas_used: int
    max_fee: int
    tip: int
    # gas_used at the next block's base fee as estimated now (what the hint shows).
    gas_cost_wei: int
    max_block: int


class AuctionBook:
    def __init__(self) -> None:
        self._lots: dict[str, Lot] = {}

    def open(self, lot: Lot) -> None:
        self._lots[lot.tx_hash.lower()] = lot

    def get(self, tx_hash: str) -> Lot | None:
        return self._lots.get(tx_hash.lower())

    def close_before(self, chain_id: int, head: int) -> None:
        """Forget the lots of ``chain_id`` whose window ended before ``head``."""
        for key in [k for k, lot in self._lots.items() if lot.chain_id == chain_id and lot.max_block < head]:
            del self._lots[key]


# The lots of the transactions this process accepted, read by the backrun executor.
LOTS = AuctionBook()


def hint_message(
    lot: Lot, decoded: DecodedTransaction, level: str, pools: list[str]
) -> events_pb2.OrderFlowHint:
    occurred = Timestamp()
    occurred.FromDatetime(datetime.now(UTC))
    message = events_pb2.OrderFlowHint(
        event_id=f"{lot.chain_id}:{lot.tx_hash}:hint",
        tenant_id=lot.tenant_id,
        occurred_at=occurred,
        chain_id=lot.chain_id,
        tx_hash=lot.tx_hash,
        level=level,
        refund_bps=lot.refund_bps,
        gas_cost_wei=str(lot.gas_cost_wei),
        max_block_number=lot.max_block,
    )
    swap = decode_router_swap(decoded.to, decoded.value, decoded.data)
    if level != "none":
        message.to = decoded.to
        message.selector = "0x" + decoded.data[:4].hex()
    if level in ("pool", "amounts"):
        message.pools.extend(pools)
    if level == "amounts" and swap is not None:
        message.swap.CopyFrom(
            events_pb2.PendingSwap(
                router=swap.router,
                function=swap.function,
                path=list(swap.path),
                exact_in=swap.exact_in,
                amount=str(swap.amount),
                bound=str(swap.bound),
                recipient=swap.recipient,
                # A router deadline of type(uint256).max means never; the bus refuses a uint64 past BIGINT.
                deadline=min(swap.deadline, BIGINT_MAX),
                eth_in=swap.eth_in,
            )
        )
    return message


class OrderFlowAuction:
    def __init__(
        self,
        bus: Bus,
        gateway: ChainGateway,
        *,
        refund_bps: int = DEFAULT_REFUND_BPS,
        hint_level: str = "amounts",
        book: AuctionBook = LOTS,
    ) -> None:
        if hint_level not in HINT_LEVELS:
            raise ValueError(f"hint level must be one of {HINT_LEVELS}, not {hint_level!r}")
        if not 0 <= refund_bps <= 10_000:
            raise ValueError("refund_bps must be in [0, 10000]")
        self.bus = bus
        self.gateway = gateway
        self.refund_bps = refund_bps
        self.hint_level = hint_level
        self.book = book

    async def gas(self, chain_id: int, decoded: DecodedTransaction, raw: bytes) -> tuple[int, int]:
        """(gas used, its cost in wei) of the transaction at the top of the next block, as the
        relay simulates it, the cost at the next block's base fee as estimated now ((0, 0) when
        the relay cannot simulate)."""
        chain = self.gateway.chain(chain_id)
        if chain.relay is None:
            return 0, 0
        try:
            latest = await self.gateway.latest_block(chain_id)
            result = await chain.relay.request("eth_callBundle", [{"txs": ["0x" + raw.hex()]}])
        except (RpcError, TransientRpcError, OSError, TimeoutError) as exc:
            log.info("auction: no gas simulation for %s: %r", decoded.tx_hash, exc)
            return 0, 0
        used = int(result["results"][0].get("gasUsed") or 0) if result.get("results") else 0
        return used, used * decoded.effective_gas_price(next_base_fee(latest))

    async def open(
        self,
        tenant_id: str,
        chain_id: int,
        decoded: DecodedTransaction,
        raw: bytes,
        max_block: int,
        *,
        refund_bps: int | None = None,
    ) -> Lot:
        """``refund_bps``: the share recorded on the transaction when it was accepted (the tenant's
        plan's); None = this auction's default."""
        swap = decode_router_swap(decoded.to, decoded.value, decoded.data)
        pools = []
        if swap is not None:
            config = self.gateway.chain(chain_id).config
            dex = next(
                (d for d in config.dexes if d.router and d.router.lower() == swap.router.lower()), None
            )
            if dex is not None:
                pools = [
                    abi.pair_address(dex.factory, dex.init_code_hash, a, b)
                    for a, b in zip(swap.path, swap.path[1:], strict=False)
                ]
        gas_used, gas_cost = await self.gas(chain_id, decoded, raw)
        lot = Lot(
            tenant_id=tenant_id,
            chain_id=chain_id,
            tx_hash=decoded.tx_hash.lower(),
            raw=raw,
            sender=decoded.sender,
            refund_bps=self.refund_bps if refund_bps is None else refund_bps,
            gas_used=gas_used,
            max_fee=decoded.max_fee_per_gas,
            tip=decoded.max_priority_fee_per_gas,
            gas_cost_wei=gas_cost,
            max_block=max_block,
        )
        self.book.open(lot)
        message = hint_message(lot, decoded, self.hint_level, pools)
        await self.bus.publish(
            f"protect.{tenant_id}.hint", message, msg_id=message.event_id, tenant_id=tenant_id
        )
        return lot
