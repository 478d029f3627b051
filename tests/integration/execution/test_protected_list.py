"""ListProtectedTransactions through the gRPC API on the devnet: every transaction of the tenant
(accepted and refused at ingress) in pages, newest received first, filtered by status, sender,
chain and time; a page token the RPC did not issue, an unknown status, a bad sender and a time
range ending before it starts are INVALID_ARGUMENT naming the field; a viewer reads the list and
another tenant sees none of it; `mevaas protected list` prints the same list (filtered, paged
through every page) as a table and as JSON."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from eth_account import Account

from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_core.pagination import encode_page_token
from mevaas_local.devnet import Devnet
from mevaas_sdk import MevaasClient
from tests.fixtures.execution import execution_stub, fund
from tests.fixtures.platform import BOOTSTRAP_ADMIN_KEY
from tests.integration.cli.process import for_services
from tests.integration.protection.helpers import signed
from tests.integration.tenancy.helpers import create_tenant, field_violations

pytestmark = pytest.mark.integration

# The devnet demo entry of the shipped sanctions sample (its key is published in docs/protection.md).
SANCTIONED_KEY = "0xac665b474a4107de0d848d98aa00c6fb18da5404b700d4b9788571f807980f38"
Request = execution_pb2.ListProtectedTransactionsRequest


async def _all(stub: Any, request: Request, size: int) -> tuple[list[Any], int]:
    """Every page of ``request`` at ``size`` a page, and how many pages it took."""
    found: list[Any] = []
    token, pages = "", 0
    while True:
        request.page.CopyFrom(common_pb2.PageRequest(page_size=size, page_token=token))
        reply = await stub.ListProtectedTransactions(request)
        pages += 1
        assert len(reply.transactions) <= size
        found.extend(reply.transactions)
        token = reply.page.next_page_token
        if not token:
            return found, pages


async def _invalid(stub: Any, request: Request) -> list[str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListProtectedTransactions(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    return field_violations(caught.value)


async def test_list_pages_filters_and_refuses_bad_input(
    client_for: Callable[..., MevaasClient],
    execution_service: Any,
    tenancy_service: Any,
    devnet: Devnet,
    tmp_path: Path,
) -> None:
    async with client_for(BOOTSTRAP_ADMIN_KEY) as admin:
        tenant = await create_tenant(admin)
        other = await create_tenant(admin)
        viewer_key = (
            await admin.tenants.CreateApiKey(
                tenancy_pb2.CreateApiKeyRequest(
                    idempotency_key=str(uuid.uuid4()),
                    tenant_id=tenant.tenant.tenant_id,
                    name="viewer",
                    roles=[common_pb2.ROLE_VIEWER],
                )
            )
        ).secret
    endpoint = {"execution": f"127.0.0.1:{execution_service.grpc_port}"}
    chain = devnet.main
    sanctioned = Account.from_key(SANCTIONED_KEY)
    users = [Account.create() for _ in range(2)]
    for user in users:
        await fund(chain, user.address)
    async with (
        client_for(tenant.owner_key, **endpoint) as owner,
        client_for(viewer_key, **endpoint) as viewer,
        client_for(other.owner_key, **endpoint) as stranger,
    ):
        stub = execution_stub(owner)
        submitted: list[execution_pb2.ProtectedTransaction] = []
        # Three refused at ingress (a listed sender: recorded FAILED, never sent), two accepted.
        signers = [(sanctioned, 0), (users[0], 0), (sanctioned, 1), (users[1], 0), (sanctioned, 2)]
        for account, nonce in signers:
            raw = await signed(chain, account, nonce=nonce, to=account.address, value=1, gas=21_000)
            reply = await stub.SubmitProtectedTransaction(
                execution_pb2.SubmitProtectedTransactionRequest(
                    idempotency_key=str(uuid.uuid4()),
                    chain_id=chain.spec.chain_id,
                    raw_transaction=raw,
                    mode=execution_pb2.PROTECTION_MODE_PRIVATE_BUNDLE,
                )
            )
            submitted.append(reply.transaction)
        refused = [t for t in submitted if t.status == execution_pb2.PROTECTED_TRANSACTION_STATUS_FAILED]
        assert len(refused) == 3 and all("sanctioned counterparty" in t.error for t in refused)
        ids = {t.protected_transaction_id for t in submitted}

        # Paged two at a time: three pages, each transaction once, newest received first.
        listed, pages = await _all(stub, Request(), 2)
        assert pages == 3
        assert [t.protected_transaction_id for t in listed] == [
            t.protected_transaction_id for t in reversed(submitted)
        ]
        received = [(t.received_at.ToDatetime(), t.protected_transaction_id) for t in listed]
        assert received == sorted(received, reverse=True)
        # The rows are the records GetProtectedTransaction answers (the receipt aside: none here);
        # an accepted one may move on meanwhile (submitted, included), so only its fixed fields.
        fixed = ("protected_transaction_id", "tx_hash", "sender", "nonce", "received_at", "protection_fee")
        for item in listed:
            got = await stub.GetProtectedTransaction(
                execution_pb2.GetProtectedTransactionRequest(
                    protected_transaction_id=item.protected_transaction_id
                )
            )
            if item.status == execution_pb2.PROTECTED_TRANSACTION_STATUS_FAILED:
                assert got.transaction == item
            assert [getattr(got.transaction, f) for f in fixed] == [getattr(item, f) for f in fixed]
        accepted = [
            t
            for t in listed
            if t.protected_transaction_id not in {r.protected_transaction_id for r in refused}
        ]
        assert {(t.protection_fee.currency_code, t.protection_fee.amount) for t in accepted} == {
            ("USD", "2.00")
        }
        assert all(not t.HasField("protection_fee") for t in refused)  # refused: not billed

        # Filters: status, sender (any case), chain, and the time received.
        failed, _ = await _all(stub, Request(status=execution_pb2.PROTECTED_TRANSACTION_STATUS_FAILED), 2)
        assert {t.protected_transaction_id for t in failed} == {t.protected_transaction_id for t in refused}
        by_sender, _ = await _all(stub, Request(sender=sanctioned.address.lower()), 10)
        assert {t.protected_transaction_id for t in by_sender} == {
            t.protected_transaction_id for t in refused
        }
        one, _ = await _all(stub, Request(sender=users[1].address), 10)
        assert [t.tx_hash for t in one] == [submitted[3].tx_hash]
        assert len((await _all(stub, Request(chain_id=chain.spec.chain_id), 10))[0]) == 5
        assert (await _all(stub, Request(chain_id=chain.spec.chain_id + 999_999), 10))[0] == []
        start = listed[2].received_at  # the third newest: it and the two after it
        since, _ = await _all(stub, Request(time_range=common_pb2.TimeRange(start=start)), 10)
        assert [t.protected_transaction_id for t in since] == [t.protected_transaction_id for t in listed[:3]]
        before, _ = await _all(
            stub, Request(time_range=common_pb2.TimeRange(start=listed[-1].received_at, end=start)), 10
        )
        assert [t.protected_transaction_id for t in before] == [
            t.protected_transaction_id for t in listed[3:]
        ]

        # Bad input: INVALID_ARGUMENT naming each field, nothing listed.
        assert await _invalid(stub, Request(page=common_pb2.PageRequest(page_token="not a token!"))) == [
            "page.page_token"
        ]
        foreign = encode_page_token("yesterday", "x")  # decodes, but holds no time
        assert await _invalid(stub, Request(page=common_pb2.PageRequest(page_token=foreign))) == [
            "page.page_token"
        ]
        assert await _invalid(
            stub, Request(status=execution_pb2.ProtectedTransactionStatus.ValueType(99))
        ) == ["status"]
        assert await _invalid(stub, Request(sender="0x1234")) == ["sender"]
        backwards = common_pb2.TimeRange(start=start, end=listed[-1].received_at)
        assert await _invalid(stub, Request(time_range=backwards)) == ["time_range.end"]
        assert await _invalid(stub, Request(time_range=common_pb2.TimeRange(end=start))) == [
            "time_range.start"
        ]
        assert await _invalid(stub, Request(page=common_pb2.PageRequest(page_size=100_000))) == [
            "page.page_size"
        ]

        # A viewer of the tenant reads the same list; another tenant sees none of it.
        seen, _ = await _all(execution_stub(viewer), Request(), 100)
        assert [t.protected_transaction_id for t in seen] == [t.protected_transaction_id for t in listed]
        theirs, _ = await _all(execution_stub(stranger), Request(), 100)
        assert not ids & {t.protected_transaction_id for t in theirs}

    # The CLI: every page (200 a call, more than there are), the filter, ids and hashes whole.
    mevaas = for_services(tmp_path, tenant.owner_key, tenancy=tenancy_service, execution=execution_service)
    everything = await mevaas.json("protected", "list")
    assert [t["protected_transaction_id"] for t in everything["transactions"]] == [
        t.protected_transaction_id for t in listed
    ]
    only_failed = await mevaas.json("protected", "list", "--status", "failed", "--limit", "2")
    assert [t["protected_transaction_id"] for t in only_failed["transactions"]] == [
        t.protected_transaction_id for t in failed[:2]
    ]
    text = (await mevaas.ok("protected", "list", "--sender", users[0].address)).stdout
    assert submitted[1].tx_hash in text and submitted[1].protected_transaction_id in text
    assert "2.00 USD" in text and submitted[0].tx_hash not in text
    bad = await mevaas("protected", "list", "--sender", "0x12")
    assert bad.code == 1 and "sender" in bad.error
