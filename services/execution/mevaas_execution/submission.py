"""Sending signed transactions: a private bundle for a target block, or the public mempool.

A bundle's target is the block after the head the pipeline saw; when the chain moves on before
the relay receives it, the relay refuses it as "in the past". That refusal is not the bundle's
fault: it is re-targeted at the block after the new head and sent again, for as long as the
window allows (``last_block``). Any other refusal, or one at a target still ahead, is final.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mevaas.common.v1 import common_pb2
from mevaas_chain.client import RpcError
from mevaas_execution.chains import ChainGateway

BUNDLE = common_pb2.SUBMISSION_MODE_PRIVATE_BUNDLE


@dataclass(frozen=True, slots=True)
class Sent:
    target_block: int
    bundle_hash: str


class Submitter:
    def __init__(self, gateway: ChainGateway) -> None:
        self.gateway = gateway

    async def send(
        self, chain_id: int, raws: Sequence[bytes], mode: int, target: int, last_block: int
    ) -> Sent:
        """Send ``raws`` (in order); raises RpcError when refused for good, any other exception
        when the outcome is unknown (the request may have reached the chain)."""
        if mode != BUNDLE:
            for raw in raws:
                await self.gateway.send_raw(chain_id, raw)
            return Sent(target, "")
        while True:
            try:
                return Sent(target, await self.gateway.send_bundle(chain_id, raws, target))
            except RpcError:
                head = await self.gateway.chain(chain_id).rpc.block_number()
                if head < target or head + 1 > last_block:
                    raise
                target = head + 1
