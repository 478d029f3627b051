"""SignInService on a running tenancy: enrolment (otpauth URI, password policy, the TOTP code
checked), password + TOTP sign-in (a code counts once; one message for every wrong part), the
lockout with backoff, sessions exchanged for tokens and ended (tokens revoked), and the audit
trail of every attempt."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import grpc
import pyotp
import pytest
from google.rpc import error_details_pb2, status_pb2

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc
from mevaas_core.runtime import ServiceRuntime
from mevaas_sdk import MevaasClient
from tests.integration.tenancy.helpers import create_tenant, field_violations

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"


def code_at(secret: str, offset_steps: int) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


async def enrol(admin: MevaasClient, signin: Any, tenant_id: str, email: str, role: Any) -> tuple[str, str]:
    """A new user with password and TOTP; returns (user id, TOTP secret). Enrolment spends step 0."""
    user = await admin.tenants.CreateUser(
        tenancy_pb2.CreateUserRequest(
            idempotency_key=str(uuid.uuid4()), tenant_id=tenant_id, email=email, roles=[role]
        )
    )
    enrolment = await signin.CreateEnrolment(
        tenancy_pb2.CreateEnrolmentRequest(user_id=user.user.user_id), metadata=await admin_metadata(admin)
    )
    begun = await signin.BeginEnrolment(
        tenancy_pb2.BeginEnrolmentRequest(enrolment_token=enrolment.enrolment_token)
    )
    await signin.CompleteEnrolment(
        tenancy_pb2.CompleteEnrolmentRequest(
            enrolment_token=enrolment.enrolment_token,
            password=PASSWORD,
            totp_code=code_at(begun.totp_secret, 0),
        )
    )
    return user.user.user_id, begun.totp_secret


async def admin_metadata(admin: MevaasClient) -> tuple[tuple[str, str], ...]:
    reply = await admin.auth.WhoAmI(tenancy_pb2.WhoAmIRequest())
    assert reply.tenant_id
    return (("authorization", f"Bearer {admin._token}"),)


def retry_seconds(error: grpc.aio.AioRpcError) -> float:
    metadata: Any = error.trailing_metadata() or ()
    for key, value in metadata:
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return 0.0


async def test_enrol_sign_in_with_totp_session_and_audit(
    tenancy_service: ServiceRuntime[Any], admin_client: MevaasClient
) -> None:
    tenant = await create_tenant(admin_client)
    slug, tenant_id = tenant.tenant.slug, tenant.tenant.tenant_id
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tenancy_service.grpc_port}") as channel:
        signin = tenancy_pb2_grpc.SignInServiceStub(channel)
        auth = tenancy_pb2_grpc.AuthServiceStub(channel)
        user = await admin_client.tenants.CreateUser(
            tenancy_pb2.CreateUserRequest(
                idempotency_key=str(uuid.uuid4()),
                tenant_id=tenant_id,
                email="Trader@Example.com",
                roles=[common_pb2.ROLE_TRADER],
            )
        )
        user_id = user.user.user_id
        enrolment = await signin.CreateEnrolment(
            tenancy_pb2.CreateEnrolmentRequest(user_id=user_id), metadata=await admin_metadata(admin_client)
        )
        token = enrolment.enrolment_token
        assert token.startswith("mve_")
        begun = await signin.BeginEnrolment(tenancy_pb2.BeginEnrolmentRequest(enrolment_token=token))
        assert begun.email == "Trader@Example.com" and begun.tenant_slug == slug
        assert begun.otpauth_uri.startswith("otpauth://totp/")
        assert f"secret={begun.totp_secret}" in begun.otpauth_uri
        again = await signin.BeginEnrolment(tenancy_pb2.BeginEnrolmentRequest(enrolment_token=token))
        assert again.totp_secret == begun.totp_secret  # the same secret until it is confirmed
        secret = begun.totp_secret

        # Bad inputs: every field named at once; a wrong code is refused and nothing is spent.
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await signin.CompleteEnrolment(
                tenancy_pb2.CompleteEnrolmentRequest(enrolment_token=token, password="short", totp_code="12")
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert sorted(field_violations(bad.value)) == ["password", "totp_code"]
        wrong = "000000" if code_at(secret, 0) != "000000" else "111111"
        with pytest.raises(grpc.aio.AioRpcError) as wrong_code:
            await signin.CompleteEnrolment(
                tenancy_pb2.CompleteEnrolmentRequest(
                    enrolment_token=token, password=PASSWORD, totp_code=wrong
                )
            )
        assert wrong_code.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(wrong_code.value) == ["totp_code"]
        done = await signin.CompleteEnrolment(
            tenancy_pb2.CompleteEnrolmentRequest(
                enrolment_token=token, password=PASSWORD, totp_code=code_at(secret, 0)
            )
        )
        assert done.user_id == user_id
        with pytest.raises(grpc.aio.AioRpcError) as spent:
            await signin.BeginEnrolment(tenancy_pb2.BeginEnrolmentRequest(enrolment_token=token))
        assert spent.value.code() == grpc.StatusCode.UNAUTHENTICATED

        def attempt(password: str, code: str, email: str = "trader@example.com") -> Any:
            return signin.SignIn(
                tenancy_pb2.SignInRequest(tenant_slug=slug, email=email, password=password, totp_code=code)
            )

        # The code of the enrolment's step counts once: it does not sign in again.
        with pytest.raises(grpc.aio.AioRpcError) as replayed:
            await attempt(PASSWORD, code_at(secret, 0))
        assert replayed.value.code() == grpc.StatusCode.UNAUTHENTICATED
        messages = {replayed.value.details()}
        for password, code, email in (
            ("wrong password here", code_at(secret, 1), "trader@example.com"),
            (PASSWORD, code_at(secret, 1), "nobody@example.com"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await attempt(password, code, email)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            messages.add(refused.value.details())
        assert messages == {"wrong email, password or code"}  # nothing tells which part was wrong

        # Email case-insensitively, the next step's code: a session.
        session = await attempt(PASSWORD, code_at(secret, 1), "TRADER@example.com")
        assert session.session_token.startswith("mvu_") and session.user_id == user_id
        assert list(session.roles) == [common_pb2.ROLE_TRADER]
        with pytest.raises(grpc.aio.AioRpcError) as reused:
            await attempt(PASSWORD, code_at(secret, 1))
        assert reused.value.code() == grpc.StatusCode.UNAUTHENTICATED

        exchanged = await signin.ExchangeSession(
            tenancy_pb2.ExchangeSessionRequest(session_token=session.session_token)
        )
        bearer = (("authorization", f"Bearer {exchanged.access_token}"),)
        who = await auth.WhoAmI(tenancy_pb2.WhoAmIRequest(), metadata=bearer)
        assert who.user_id == user_id and who.tenant_id == tenant_id
        assert list(who.roles) == [common_pb2.ROLE_TRADER]

        # Signing out ends the session and revokes its tokens (through the revocation feed).
        await signin.EndSession(tenancy_pb2.EndSessionRequest(session_token=session.session_token))
        await signin.EndSession(tenancy_pb2.EndSessionRequest(session_token=session.session_token))
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await signin.ExchangeSession(
                tenancy_pb2.ExchangeSessionRequest(session_token=session.session_token)
            )
        assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for _ in range(100):
            try:
                await auth.WhoAmI(tenancy_pb2.WhoAmIRequest(), metadata=bearer)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
                break
            await _sleep()
        else:
            pytest.fail("the ended session's token was still accepted")

    records = await admin_client.tenants.ListAuditRecords(
        tenancy_pb2.ListAuditRecordsRequest(
            tenant_id=tenant_id,
            action_prefix="/mevaas.tenancy.v1.SignInService/",
            page=common_pb2.PageRequest(page_size=100),
        )
    )
    seen = [(r.action.rsplit("/", 1)[1], r.outcome, r.actor.id) for r in records.records]
    assert ("SignIn", events_pb2.AUDIT_OUTCOME_SUCCEEDED, user_id) in seen
    failed = [
        r
        for r in records.records
        if r.action.endswith("/SignIn") and r.outcome == events_pb2.AUDIT_OUTCOME_FAILED
    ]
    assert {r.details["refused"] for r in failed} == {"code", "password"}
    assert all(r.actor.kind == events_pb2.ACTOR_KIND_USER and r.actor.id == user_id for r in failed)
    assert ("CompleteEnrolment", events_pb2.AUDIT_OUTCOME_SUCCEEDED, user_id) in seen
    assert ("EndSession", events_pb2.AUDIT_OUTCOME_SUCCEEDED, user_id) in seen


async def _sleep() -> None:
    await asyncio.sleep(0.05)


async def test_lockout_after_repeated_failures_even_with_the_right_password(
    tenancy_service: ServiceRuntime[Any], admin_client: MevaasClient
) -> None:
    tenant = await create_tenant(admin_client)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tenancy_service.grpc_port}") as channel:
        signin = tenancy_pb2_grpc.SignInServiceStub(channel)
        _, secret = await enrol(
            admin_client, signin, tenant.tenant.tenant_id, "ops@example.com", common_pb2.ROLE_VIEWER
        )

        def attempt(password: str) -> Any:
            return signin.SignIn(
                tenancy_pb2.SignInRequest(
                    tenant_slug=tenant.tenant.slug,
                    email="ops@example.com",
                    password=password,
                    totp_code=code_at(secret, 1),
                )
            )

        for _ in range(5):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await attempt("not the password at all")
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as locked:
            await attempt(PASSWORD)  # right password and code: still locked
        assert locked.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert 0 < retry_seconds(locked.value) <= 30
        # Another user of the same tenant is not affected.
        _, other = await enrol(
            admin_client, signin, tenant.tenant.tenant_id, "desk@example.com", common_pb2.ROLE_VIEWER
        )
        ok = await signin.SignIn(
            tenancy_pb2.SignInRequest(
                tenant_slug=tenant.tenant.slug,
                email="desk@example.com",
                password=PASSWORD,
                totp_code=code_at(other, 1),
            )
        )
        assert ok.session_token
    records = await admin_client.tenants.ListAuditRecords(
        tenancy_pb2.ListAuditRecordsRequest(
            tenant_id=tenant.tenant.tenant_id, action_prefix="/mevaas.tenancy.v1.SignInService/SignIn"
        )
    )
    refusals = [
        r.details.get("refused") for r in records.records if r.outcome == events_pb2.AUDIT_OUTCOME_FAILED
    ]
    assert refusals.count("password") == 5 and refusals.count("locked") == 1
    fifth = [r for r in records.records if r.details.get("failures_in_a_row") == "5"]
    assert fifth and fifth[0].details["locked_for_s"] == "30"
