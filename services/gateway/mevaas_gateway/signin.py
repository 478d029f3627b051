"""People signing in to the portal: email + password + TOTP code, enrolment (the TOTP secret as
an otpauth URI and its QR code), and single sign-on with the tenant's OIDC provider
(authorization code + PKCE). Tenancy (SignInService) decides everything; the gateway only
carries the browser through it and seals the resulting session token into the session cookie.

Login CSRF: the sign-in endpoints take only `application/json` bodies (a cross-site form cannot
send one without a CORS preflight, which this origin never grants); the OIDC round trip carries
its state, nonce and PKCE verifier in a sealed, short-lived cookie bound to the browser."""

from __future__ import annotations

import secrets
import time
from typing import Any, TypeVar
from urllib.parse import quote

import grpc
import segno
from aiohttp import web
from google.protobuf.message import Message

from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_core import jsoninput
from mevaas_gateway.api import GatewayError, HttpApi, error_response, message_json
from mevaas_gateway.domain import http_errors
from mevaas_gateway.sessions import Session

SIGNIN = "/mevaas.tenancy.v1.SignInService/"
OIDC_COOKIE = "mevaas_oidc"
OIDC_PURPOSE = b"mevaas-oidc"
OIDC_TTL_SECONDS = 600
CALLBACK_PATH = "/portal/oidc/callback"
R = TypeVar("R", bound=Message)


class PortalSignIn:
    def __init__(self, api: HttpApi, portal: Any) -> None:
        self.api = api
        self.portal = portal  # mevaas_gateway.portal.Portal: tenant lookup and cookies

    async def tenancy(self, method: str, message: Message, reply_type: type[R]) -> R:
        try:
            raw = await self.api.upstreams.call("tenancy", SIGNIN + method, message.SerializeToString(), ())
        except grpc.aio.AioRpcError as exc:
            raise GatewayError(http_errors.from_rpc_error(exc)) from None
        except LookupError as exc:
            raise GatewayError(http_errors.error(grpc.StatusCode.UNAVAILABLE, str(exc))) from None
        return reply_type.FromString(raw)

    @staticmethod
    async def json_body(request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise GatewayError(
                http_errors.error(grpc.StatusCode.INVALID_ARGUMENT, "send the body as application/json")
            )
        try:
            data = jsoninput.loads(await request.read())
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise GatewayError(
                http_errors.error(grpc.StatusCode.INVALID_ARGUMENT, "body is not a JSON object")
            )
        return data

    def open(self, response: web.StreamResponse, token: str, slug: str) -> None:
        session = self.api.sealer.open_session(token, slug)
        self.portal.set_cookies(response, self.api.sealer.seal(session), session.csrf)

    # password + TOTP ----------------------------------------------------------------------------

    async def password(self, request: web.Request, data: dict[str, Any]) -> web.StreamResponse:
        slug = str(data.get("slug", ""))
        reply = await self.tenancy(
            "SignIn",
            tenancy_pb2.SignInRequest(
                tenant_slug=slug,
                email=str(data.get("email", "")).strip(),
                password=str(data.get("password", "")),
                totp_code=str(data.get("totp_code", "")).strip(),
            ),
            tenancy_pb2.SignInResponse,
        )
        principal = self.api.verifier.verify(await self.api.upstreams.access_token(reply.session_token))
        response = web.json_response(self.portal.describe(slug, principal.tenant_id, principal.roles))
        self.open(response, reply.session_token, slug)
        return response

    async def end(self, session: Session) -> None:
        """Signing out of a person's session ends it at tenancy too (its tokens are revoked)."""
        if session.credential.startswith("mvu_"):
            await self.tenancy(
                "EndSession",
                tenancy_pb2.EndSessionRequest(session_token=session.credential),
                tenancy_pb2.EndSessionResponse,
            )

    # enrolment ----------------------------------------------------------------------------------

    async def begin_enrolment(self, request: web.Request) -> web.StreamResponse:
        try:
            data = await self.json_body(request)
            reply = await self.tenancy(
                "BeginEnrolment",
                tenancy_pb2.BeginEnrolmentRequest(enrolment_token=str(data.get("token", ""))),
                tenancy_pb2.BeginEnrolmentResponse,
            )
        except GatewayError as exc:
            return error_response(exc.error)
        body = message_json(reply)
        # The QR code is drawn here, from the URI: the secret never goes to a third party.
        body["qrCode"] = segno.make(reply.otpauth_uri, error="m").svg_data_uri(scale=5, border=2)
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def complete_enrolment(self, request: web.Request) -> web.StreamResponse:
        try:
            data = await self.json_body(request)
            reply = await self.tenancy(
                "CompleteEnrolment",
                tenancy_pb2.CompleteEnrolmentRequest(
                    enrolment_token=str(data.get("token", "")),
                    password=str(data.get("password", "")),
                    totp_code=str(data.get("totp_code", "")).strip(),
                ),
                tenancy_pb2.CompleteEnrolmentResponse,
            )
        except GatewayError as exc:
            return error_response(exc.error)
        return web.json_response(message_json(reply))

    # single sign-on (OIDC) ----------------------------------------------------------------------

    def redirect_uri(self, request: web.Request) -> str:
        scheme = (
            "https"
            if self.portal.secure_cookies
            and request.host.split(":")[0]
            not in (
                "127.0.0.1",
                "localhost",
            )
            else request.scheme
        )
        return f"{scheme}://{request.host}{CALLBACK_PATH}"

    async def oidc_start(self, request: web.Request) -> web.StreamResponse:
        slug = request.query.get("slug", "")
        try:
            face = await self.portal.lookup(("slug", slug))
            redirect_uri = self.redirect_uri(request)
            start = await self.tenancy(
                "StartOidcSignIn",
                tenancy_pb2.StartOidcSignInRequest(tenant_slug=face.slug, redirect_uri=redirect_uri),
                tenancy_pb2.StartOidcSignInResponse,
            )
        except GatewayError as exc:
            return error_response(exc.error)
        sealed = self.api.sealer.seal_value(
            {
                "slug": face.slug,
                "state": start.state,
                "nonce": start.nonce,
                "verifier": start.code_verifier,
                "redirect_uri": redirect_uri,
                "e": int(time.time()) + OIDC_TTL_SECONDS,
            },
            OIDC_PURPOSE,
        )
        response = redirect(start.authorization_url)
        # Lax, not Strict: the provider sends the browser back with a cross-site top-level GET.
        response.set_cookie(
            OIDC_COOKIE,
            sealed,
            max_age=OIDC_TTL_SECONDS,
            path=CALLBACK_PATH,
            httponly=True,
            samesite="Lax",
            secure=self.portal.secure_cookies,
        )
        return response

    async def oidc_callback(self, request: web.Request) -> web.StreamResponse:
        pending = self.api.sealer.unseal_value(request.cookies.get(OIDC_COOKIE, ""), OIDC_PURPOSE)
        slug = str(pending.get("slug", ""))
        base = f"/t/{slug}/" if slug else "/"
        state = request.query.get("state", "")
        expired = int(str(pending.get("e", 0))) <= time.time()
        if (
            not pending
            or expired
            or not secrets.compare_digest(state.encode(), str(pending["state"]).encode())
        ):
            return self.back(base, "sso", "the sign-in was not started here or took too long: try again")
        if "error" in request.query:
            return self.back(base, "sso", f"the identity provider said: {request.query['error'][:100]}")
        try:
            reply = await self.tenancy(
                "CompleteOidcSignIn",
                tenancy_pb2.CompleteOidcSignInRequest(
                    tenant_slug=slug,
                    code=request.query.get("code", ""),
                    code_verifier=str(pending["verifier"]),
                    nonce=str(pending["nonce"]),
                    redirect_uri=str(pending["redirect_uri"]),
                ),
                tenancy_pb2.CompleteOidcSignInResponse,
            )
        except GatewayError as exc:
            return self.back(base, "sso", str(exc.error.body.get("message", "single sign-on failed")))
        response = redirect(base)
        self.open(response, reply.session.session_token, slug)
        response.del_cookie(OIDC_COOKIE, path=CALLBACK_PATH)
        return response

    def back(self, base: str, key: str, message: str) -> web.StreamResponse:
        """Back to the portal's sign-in page with a message it shows (never HTML from here)."""
        response = redirect(base + "#/sign-in?" + key + "=" + _quote(message))
        response.del_cookie(OIDC_COOKIE, path=CALLBACK_PATH)
        return response

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/portal/enrolment", self.begin_enrolment)
        app.router.add_post("/portal/enrolment/complete", self.complete_enrolment)
        app.router.add_get("/portal/oidc/start", self.oidc_start)
        app.router.add_get(CALLBACK_PATH, self.oidc_callback)


def redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})


def _quote(text: str) -> str:
    return quote(text, safe="")
