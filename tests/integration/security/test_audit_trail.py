"""One audit trail (issue 10, item 7): walking every service's RPC role-policy table, each mutating
RPC called leaves a record of one shape (actor, tenant, action = the RPC's full name, target,
outcome, request id) that ListAuditRecords returns, and so does a denied call."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import grpc
import pytest
from eth_account import Account

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc
from mevaas_execution.protection.rpc import SEND_ACTION
from mevaas_local.devnet import Devnet
from mevaas_sdk import MevaasClient
from tests.fixtures.execution import ExecutionHarness, fund
from tests.fixtures.fleet import Fleet
from tests.integration.protection.helpers import call, signed
from tests.integration.security.test_revocation import exchange, mint_key
from tests.integration.tenancy.helpers import create_tenant

pytestmark = pytest.mark.integration


async def call_raw(fleet: Fleet, service: str, method: str, token: str, request_id: str) -> grpc.StatusCode:
    """Call `method` with an empty request (valid bytes for every message type)."""
    async with fleet.channel(service) as channel:
        stub = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            await stub(b"", metadata=[("authorization", f"Bearer {token}"), ("x-request-id", request_id)])
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


async def trail(fleet: Fleet, token: str) -> list[events_pb2.AuditRecord]:
    records: list[events_pb2.AuditRecord] = []
    page_token = ""
    async with fleet.channel("tenancy") as channel:
        stub = tenancy_pb2_grpc.TenantServiceStub(channel)
        while True:
            reply = await stub.ListAuditRecords(
                tenancy_pb2.ListAuditRecordsRequest(
                    page=common_pb2.PageRequest(page_size=100, page_token=page_token)
                ),
                metadata=[("authorization", f"Bearer {token}")],
            )
            records.extend(reply.records)
            page_token = reply.page.next_page_token
            if not page_token:
                return records


async def wait_for_records(
    fleet: Fleet, token: str, request_ids: set[str]
) -> dict[str, events_pb2.AuditRecord]:
    deadline = time.monotonic() + 15
    while True:
        found = {r.request_id: r for r in await trail(fleet, token) if r.request_id in request_ids}
        if len(found) == len(request_ids) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


async def test_every_mutating_rpc_of_every_service_leaves_an_audit_record(
    fleet: Fleet, admin_client: MevaasClient
) -> None:
    tenant = await create_tenant(admin_client)
    token = await exchange(fleet, tenant.owner_key)
    called: dict[str, tuple[str, str, grpc.StatusCode]] = {}
    reads = 0
    for service, runtime in fleet.runtimes.items():
        assert runtime.grpc is not None
        for method, policy in runtime.grpc.policies.items():
            if not policy.mutates:
                reads += 1
                continue
            request_id = f"walk-{uuid.uuid4().hex}"
            called[request_id] = (service, method, await call_raw(fleet, service, method, token, request_id))
    assert len(called) >= 25 and reads >= 25  # every service's table was walked

    found = await wait_for_records(fleet, token, set(called))
    missing = sorted(method for request_id, (_, method, _) in called.items() if request_id not in found)
    assert missing == []
    for request_id, (service, method, code) in called.items():
        record = found[request_id]
        assert record.action == method
        assert record.service == service
        assert record.tenant_id == tenant.tenant.tenant_id
        assert record.actor.id == tenant.owner_key.split("_")[1]
        assert record.actor.tenant_id == tenant.tenant.tenant_id
        assert record.event_id and record.occurred_at.seconds > 0
        expected = {
            grpc.StatusCode.OK: events_pb2.AUDIT_OUTCOME_SUCCEEDED,
            grpc.StatusCode.PERMISSION_DENIED: events_pb2.AUDIT_OUTCOME_DENIED,
            grpc.StatusCode.UNAUTHENTICATED: events_pb2.AUDIT_OUTCOME_DENIED,
        }.get(code, events_pb2.AUDIT_OUTCOME_FAILED)
        assert record.outcome == expected, (method, code)


async def test_a_denied_call_and_a_recorded_change_are_in_the_trail(
    fleet: Fleet, admin_client: MevaasClient
) -> None:
    tenant = await create_tenant(admin_client)
    owner = await exchange(fleet, tenant.owner_key)
    viewer = await exchange(fleet, await mint_key(fleet, owner, roles=[common_pb2.ROLE_VIEWER]))
    # A viewer may not start executions (denied, at the policy check) ...
    denied = await call_raw(
        fleet, "execution", "/mevaas.execution.v1.ExecutionService/StartExecution", viewer, "denied-1"
    )
    assert denied == grpc.StatusCode.PERMISSION_DENIED
    # ... nor read another tenant's limits (denied by the handler): reads are audited when denied.
    other = await create_tenant(admin_client)
    async with fleet.channel("risk") as channel:
        stub = channel.unary_unary(
            "/mevaas.risk.v1.RiskService/GetLimits",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        from mevaas.risk.v1 import risk_pb2

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub(
                risk_pb2.GetLimitsRequest(tenant_id=other.tenant.tenant_id).SerializeToString(),
                metadata=[("authorization", f"Bearer {viewer}"), ("x-request-id", "denied-2")],
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    found = await wait_for_records(fleet, owner, {"denied-1", "denied-2"})
    assert {r.outcome for r in found.values()} == {events_pb2.AUDIT_OUTCOME_DENIED}
    assert found["denied-1"].action == "/mevaas.execution.v1.ExecutionService/StartExecution"
    assert found["denied-2"].action == "/mevaas.risk.v1.RiskService/GetLimits"
    assert common_pb2.ROLE_VIEWER in found["denied-1"].actor.roles
    # The owner's key creation is in the trail once, written in its transaction with its target.
    created = [
        r
        for r in await trail(fleet, owner)
        if r.action == "/mevaas.tenancy.v1.TenantService/CreateApiKey"
        and r.actor.id == tenant.owner_key.split("_")[1]
    ]
    assert len(created) == 1 and created[0].resource.startswith("api_keys/")
    assert created[0].outcome == events_pb2.AUDIT_OUTCOME_SUCCEEDED


async def test_transactions_sent_through_the_protect_rpc_are_in_the_trail(
    fleet: Fleet,
    admin_client: MevaasClient,
    execution_harness: ExecutionHarness,
    tenancy_service: Any,
    devnet: Devnet,
) -> None:
    """The Protect RPC is JSON-RPC, not gRPC: its one mutation (eth_sendRawTransaction) is audited
    by the endpoint itself, accepted, refused and denied alike."""
    runtime = await execution_harness.start(
        http_port=0, tenancy_address=f"127.0.0.1:{tenancy_service.grpc_port}", protect_max_blocks=25
    )
    try:
        tenant = await create_tenant(admin_client)
        owner = await exchange(fleet, tenant.owner_key)
        viewer_key = await mint_key(fleet, owner, roles=[common_pb2.ROLE_VIEWER])
        base = f"http://127.0.0.1:{runtime.protect_rpc_port}/rpc/{devnet.main.spec.chain_id}"
        user = Account.create()
        await fund(devnet.main, user.address)
        raw = await signed(devnet.main, user, nonce=0, to=user.address, value=1, gas=21_000)
        sent = await call(
            f"{base}/{tenant.owner_key}", "eth_sendRawTransaction", [raw], headers={"X-Request-Id": "p-ok"}
        )
        assert "result" in sent, sent
        denied = await call(
            f"{base}/{viewer_key}", "eth_sendRawTransaction", [raw], headers={"X-Request-Id": "p-denied"}
        )
        assert "error" in denied, denied
        refused = await call(
            f"{base}/{tenant.owner_key}",
            "eth_sendRawTransaction",
            ["0x00"],
            headers={"X-Request-Id": "p-bad"},
        )
        assert "error" in refused, refused
        # A read through the same endpoint leaves nothing.
        await call(f"{base}/{tenant.owner_key}", "eth_chainId", [], headers={"X-Request-Id": "p-read"})

        found = await wait_for_records(fleet, owner, {"p-ok", "p-denied", "p-bad"})
        assert set(found) == {"p-ok", "p-denied", "p-bad"}
        assert {r.action for r in found.values()} == {SEND_ACTION}
        assert found["p-ok"].outcome == events_pb2.AUDIT_OUTCOME_SUCCEEDED
        assert found["p-ok"].resource == f"protected_transactions/{sent['result']}"
        assert found["p-denied"].outcome == events_pb2.AUDIT_OUTCOME_DENIED
        assert common_pb2.ROLE_VIEWER in found["p-denied"].actor.roles
        assert found["p-bad"].outcome == events_pb2.AUDIT_OUTCOME_FAILED
        assert all(
            r.service == "execution" and r.tenant_id == tenant.tenant.tenant_id for r in found.values()
        )
        assert "p-read" not in {r.request_id for r in await trail(fleet, owner)}
    finally:
        await execution_harness.stop(runtime)
