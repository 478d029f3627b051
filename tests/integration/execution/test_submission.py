"""Sending a bundle when the chain moved on meanwhile (the crash-recovery flake): the devnet relay
refuses a bundle whose target block is already mined; the submitter re-targets the block after
the new head and sends again within the window, and the transaction lands. Past the window, or
for a refusal at a target still ahead, the refusal stands."""

from __future__ import annotations

import pytest

from mevaas.common.v1 import common_pb2
from mevaas_chain.client import RpcError
from mevaas_chain.keystore import SecretKey
from mevaas_chain.signer import address_from_private_key
from mevaas_execution.chains import ChainGateway, sign_call
from mevaas_execution.submission import Submitter
from mevaas_local.devnet import Devnet
from tests.fixtures.execution import fund

pytestmark = pytest.mark.integration

BUNDLE = common_pb2.SUBMISSION_MODE_PRIVATE_BUNDLE


async def test_a_bundle_for_a_mined_block_is_retargeted_within_its_window(devnet: Devnet) -> None:
    chain = devnet.main
    gateway = ChainGateway(devnet.registry)
    try:
        key = SecretKey.generate()
        sender = address_from_private_key(key)
        await fund(chain, sender)
        chain_id = chain.spec.chain_id
        block = await chain.client.get_block("latest")
        assert block is not None
        base_fee = int(block.get("baseFeePerGas", "0x0"), 16)
        signed = sign_call(
            chain_id=chain_id,
            nonce=0,
            key=key,
            to=sender,
            data=b"",
            gas=21_000,
            max_fee=2 * base_fee + 10**9,
            priority_fee=10**9,
        )
        head = await chain.client.block_number()
        submitter = Submitter(gateway)
        # The target (the current head) is mined already; nothing in the window after it refuses.
        with pytest.raises(RpcError, match="in the past"):
            await submitter.send(chain_id, [signed.raw], BUNDLE, head, head)
        sent = await submitter.send(chain_id, [signed.raw], BUNDLE, head, head + 5)
        assert sent.target_block == head + 1
        await chain.mine()
        (receipt,) = await gateway.receipts(chain_id, ["0x" + signed.hash.hex()])
        assert receipt is not None and int(receipt["blockNumber"], 16) == head + 1
    finally:
        await gateway.close()
