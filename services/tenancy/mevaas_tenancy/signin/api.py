"""gRPC servicer of SignInService: validate, call one command, convert."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc
from mevaas_core.auth import Role
from mevaas_core.errors import FieldViolation, InvalidArgument
from mevaas_core.grpckit import current_principal, require_tenant_scope, rpc
from mevaas_core.validation import Validator, require_identifier
from mevaas_tenancy import convert
from mevaas_tenancy.domain.validation import SLUG
from mevaas_tenancy.signin.commands import OpenedSession, SignInCommands
from mevaas_tenancy.signin.domain import credentials, oidc

Ctx = Any
OWNER_ADMIN = (Role.OWNER, Role.ADMIN)
CLAIM_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def _token(value: str, prefix: str, field: str) -> tuple[str, str]:
    try:
        return credentials.split_token(prefix, value)
    except credentials.MalformedToken as exc:
        raise InvalidArgument(FieldViolation(field, str(exc))) from None


def _session_reply(session: OpenedSession) -> tenancy_pb2.SignInResponse:
    return tenancy_pb2.SignInResponse(
        session_token=session.token,
        expires_at=convert.timestamp(session.expires_at),
        tenant_id=session.tenant_id,
        user_id=session.user_id,
        email=session.email,
        roles=convert.roles_to_proto(session.roles),
    )


def _redirect_uri(v: Validator, value: str) -> None:
    parts = urlsplit(value)
    v.check(
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not parts.fragment
        and len(value) <= 2048,
        "redirect_uri",
        "must be an absolute http(s) URL without a fragment",
    )


def _provider(row: Any) -> tenancy_pb2.OidcProvider:
    return tenancy_pb2.OidcProvider(
        issuer=row["issuer"],
        client_id=row["client_id"],
        email_claim=row["email_claim"],
        has_client_secret=bool(row["client_secret"]),
    )


class SignInServicer(tenancy_pb2_grpc.SignInServiceServicer):
    def __init__(self, commands: SignInCommands) -> None:
        self._commands = commands

    @rpc(*OWNER_ADMIN)
    async def CreateEnrolment(
        self, request: tenancy_pb2.CreateEnrolmentRequest, context: Ctx
    ) -> tenancy_pb2.CreateEnrolmentResponse:
        require_identifier(request.user_id, "user_id")
        token, expires = await self._commands.create_enrolment(current_principal(), request.user_id)
        return tenancy_pb2.CreateEnrolmentResponse(
            enrolment_token=token, expires_at=convert.timestamp(expires)
        )

    @rpc(public=True, mutates=False)
    async def BeginEnrolment(
        self, request: tenancy_pb2.BeginEnrolmentRequest, context: Ctx
    ) -> tenancy_pb2.BeginEnrolmentResponse:
        _token(request.enrolment_token, credentials.ENROLMENT_PREFIX, "enrolment_token")
        row, uri = await self._commands.begin_enrolment(request.enrolment_token)
        return tenancy_pb2.BeginEnrolmentResponse(
            email=row["email"], tenant_slug=row["slug"], otpauth_uri=uri, totp_secret=row["totp_secret"]
        )

    @rpc(public=True)
    async def CompleteEnrolment(
        self, request: tenancy_pb2.CompleteEnrolmentRequest, context: Ctx
    ) -> tenancy_pb2.CompleteEnrolmentResponse:
        v = Validator()
        try:
            credentials.split_token(credentials.ENROLMENT_PREFIX, request.enrolment_token)
        except credentials.MalformedToken as exc:
            v.fail("enrolment_token", str(exc))
        problem = credentials.password_problem(request.password)
        v.check(not problem, "password", problem)
        v.check(credentials.is_code_shaped(request.totp_code), "totp_code", "must be 6 digits")
        v.raise_if_any()
        row = await self._commands.complete_enrolment(
            request.enrolment_token, request.password, request.totp_code
        )
        return tenancy_pb2.CompleteEnrolmentResponse(user_id=row["user_id"], email=row["email"])

    @rpc(public=True)
    async def SignIn(self, request: tenancy_pb2.SignInRequest, context: Ctx) -> tenancy_pb2.SignInResponse:
        v = Validator()
        v.pattern(request.tenant_slug, "tenant_slug", SLUG, "the portal's tenant slug")
        v.length(request.email, "email", 1, 254)
        v.length(request.password, "password", 1, credentials.PASSWORD_MAX)
        v.check(credentials.is_code_shaped(request.totp_code), "totp_code", "must be 6 digits")
        v.raise_if_any()
        session = await self._commands.sign_in(
            request.tenant_slug, request.email, request.password, request.totp_code
        )
        return _session_reply(session)

    @rpc(public=True)
    async def ExchangeSession(
        self, request: tenancy_pb2.ExchangeSessionRequest, context: Ctx
    ) -> tenancy_pb2.ExchangeSessionResponse:
        session_id, secret = _token(request.session_token, credentials.SESSION_PREFIX, "session_token")
        issued = await self._commands.exchange_session(session_id, secret)
        return tenancy_pb2.ExchangeSessionResponse(
            access_token=issued.token,
            expires_at=Timestamp(seconds=issued.expires_at),
            tenant_id=issued.tenant_id,
            user_id=issued.user_id,
            roles=convert.roles_to_proto(sorted(issued.roles)),
        )

    @rpc(public=True)
    async def EndSession(
        self, request: tenancy_pb2.EndSessionRequest, context: Ctx
    ) -> tenancy_pb2.EndSessionResponse:
        session_id, secret = _token(request.session_token, credentials.SESSION_PREFIX, "session_token")
        await self._commands.end_session(session_id, secret)
        return tenancy_pb2.EndSessionResponse()

    @rpc(*OWNER_ADMIN)
    async def SetOidcProvider(
        self, request: tenancy_pb2.SetOidcProviderRequest, context: Ctx
    ) -> tenancy_pb2.SetOidcProviderResponse:
        tenant_id = require_tenant_scope(request.tenant_id)
        p = request.provider
        v = Validator()
        email_claim = p.email_claim or "email"
        if p.issuer:
            problem = oidc.issuer_problem(p.issuer)
            v.check(
                not problem and len(p.issuer) <= 1024, "provider.issuer", problem or "at most 1024 characters"
            )
            v.length(p.client_id, "provider.client_id", 1, 256)
            v.length(p.client_secret, "provider.client_secret", 0, 512)
            v.pattern(email_claim, "provider.email_claim", CLAIM_NAME, "a claim name such as email")
        v.raise_if_any()
        row = await self._commands.set_oidc_provider(
            tenant_id,
            issuer=p.issuer,
            client_id=p.client_id,
            client_secret=p.client_secret,
            email_claim=email_claim,
        )
        return tenancy_pb2.SetOidcProviderResponse(
            provider=_provider(row) if row is not None else tenancy_pb2.OidcProvider()
        )

    @rpc(Role.OWNER, Role.ADMIN, Role.COMPLIANCE)
    async def GetOidcProvider(
        self, request: tenancy_pb2.GetOidcProviderRequest, context: Ctx
    ) -> tenancy_pb2.GetOidcProviderResponse:
        row = await self._commands.get_oidc_provider(require_tenant_scope(request.tenant_id))
        return tenancy_pb2.GetOidcProviderResponse(provider=_provider(row) if row is not None else None)

    @rpc(public=True, mutates=False)
    async def StartOidcSignIn(
        self, request: tenancy_pb2.StartOidcSignInRequest, context: Ctx
    ) -> tenancy_pb2.StartOidcSignInResponse:
        v = Validator()
        v.pattern(request.tenant_slug, "tenant_slug", SLUG, "the portal's tenant slug")
        _redirect_uri(v, request.redirect_uri)
        v.raise_if_any()
        start = await self._commands.start_oidc(request.tenant_slug, request.redirect_uri)
        return tenancy_pb2.StartOidcSignInResponse(
            authorization_url=start.authorization_url,
            state=start.state,
            nonce=start.nonce,
            code_verifier=start.code_verifier,
        )

    @rpc(public=True)
    async def CompleteOidcSignIn(
        self, request: tenancy_pb2.CompleteOidcSignInRequest, context: Ctx
    ) -> tenancy_pb2.CompleteOidcSignInResponse:
        v = Validator()
        v.pattern(request.tenant_slug, "tenant_slug", SLUG, "the portal's tenant slug")
        v.length(request.code, "code", 1, 2048)
        v.length(request.code_verifier, "code_verifier", 43, 128)
        v.length(request.nonce, "nonce", 1, 256)
        _redirect_uri(v, request.redirect_uri)
        v.raise_if_any()
        session = await self._commands.complete_oidc(
            request.tenant_slug,
            code=request.code,
            code_verifier=request.code_verifier,
            nonce=request.nonce,
            redirect_uri=request.redirect_uri,
        )
        return tenancy_pb2.CompleteOidcSignInResponse(session=_session_reply(session))
