"""The web portal: a server-rendered shell per tenant (its branding in the HTML, so the sign-in page
is already white-labelled) plus a small script (static/app.js, no build step) that draws every
page from the HTTP/JSON API with the session cookie. The tenant comes from the Host header (its
custom domain) or from the path on the shared domain (`/t/<slug>/`)."""

from __future__ import annotations

import html
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template

import grpc
from aiohttp import web

from mevaas.common.v1 import common_pb2
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_core.errors import ApiError
from mevaas_gateway.api import GatewayError, HttpApi, error_response
from mevaas_gateway.domain import http_errors
from mevaas_gateway.sessions import CSRF_COOKIE, SESSION_COOKIE
from mevaas_gateway.signin import PortalSignIn

ASSETS = Path(__file__).parent / "portal"
GET_PORTAL_PATH = "/mevaas.tenancy.v1.AuthService/GetPortal"
# A tenant's branding changes rarely; a short cache keeps sign-in pages off tenancy's back.
FACE_TTL_SECONDS = 30.0
DEFAULT_PRIMARY = "#1f4e8c"
DEFAULT_SECONDARY = "#e8eef7"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@dataclass(frozen=True, slots=True)
class PortalFace:
    tenant_id: str
    slug: str
    display_name: str
    logo_url: str
    primary_color: str
    secondary_color: str
    onboarding_phase: str
    oidc_enabled: bool = False

    @classmethod
    def from_proto(cls, reply: tenancy_pb2.GetPortalResponse) -> PortalFace:
        return cls(
            tenant_id=reply.tenant_id,
            slug=reply.slug,
            display_name=reply.display_name,
            logo_url=reply.logo_url,
            primary_color=reply.primary_color or DEFAULT_PRIMARY,
            secondary_color=reply.secondary_color or DEFAULT_SECONDARY,
            onboarding_phase=common_pb2.OnboardingPhase.Name(reply.onboarding_phase),
            oidc_enabled=reply.oidc_enabled,
        )


def host_without_port(host: str) -> str:
    if host.startswith("["):  # IPv6 literal
        return host.split("]", maxsplit=1)[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


class Portal:
    def __init__(self, api: HttpApi, *, secure_cookies: bool, shared_hosts: frozenset[str]) -> None:
        self.api = api
        self.secure_cookies = secure_cookies
        # Hosts of the shared domain: never looked up as a tenant's custom domain.
        self.shared_hosts = shared_hosts
        self._faces: dict[tuple[str, str], tuple[float, PortalFace]] = {}
        self._shell = Template((ASSETS / "index.html").read_text())
        self.people = PortalSignIn(api, self)

    # -- which tenant -----------------------------------------------------------------------

    async def face(self, request: web.Request) -> PortalFace | None:
        """The tenant whose portal this request is for, or None on the shared domain's root."""
        slug = request.match_info.get("slug", "")
        host = host_without_port(request.host or "").lower()
        if slug:
            key = ("slug", slug)
        elif host and host not in self.shared_hosts and "." in host:
            key = ("custom_domain", host)
        else:
            return None
        try:
            return await self.lookup(key)
        except GatewayError as exc:
            if exc.error.body.get("status") in ("NOT_FOUND", "INVALID_ARGUMENT"):
                return None
            raise

    async def lookup(self, key: tuple[str, str]) -> PortalFace:
        """GetPortal by ("slug" | "custom_domain", value), cached briefly (only found faces)."""
        cached = self._faces.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        message = tenancy_pb2.GetPortalRequest(**{key[0]: key[1]})
        try:
            raw = await self.api.upstreams.call("tenancy", GET_PORTAL_PATH, message.SerializeToString(), ())
        except grpc.aio.AioRpcError as exc:
            raise GatewayError(http_errors.from_rpc_error(exc)) from None
        except LookupError as exc:
            raise GatewayError(http_errors.error(grpc.StatusCode.UNAVAILABLE, str(exc))) from None
        face = PortalFace.from_proto(tenancy_pb2.GetPortalResponse.FromString(raw))
        self._faces[key] = (time.monotonic() + FACE_TTL_SECONDS, face)
        return face

    # -- pages ------------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        try:
            face = await self.face(request)
        except GatewayError as exc:
            return error_response(exc.error)
        if face is None and request.match_info.get("slug"):
            return web.Response(status=404, text="No portal here: unknown or inactive tenant.")
        nonce = secrets.token_urlsafe(16)
        base = f"/t/{face.slug}/" if face is not None and request.match_info.get("slug") else "/"
        values = {
            "title": html.escape(face.display_name if face else "MEVaaS portal"),
            "primary": face.primary_color if face else DEFAULT_PRIMARY,
            "secondary": face.secondary_color if face else DEFAULT_SECONDARY,
            "logo": (
                f'<img class="logo" src="{html.escape(face.logo_url)}" alt="{html.escape(face.display_name)} logo">'
                if face and face.logo_url
                else ""
            ),
            "slug": html.escape(face.slug if face else ""),
            "phase": html.escape(face.onboarding_phase if face else ""),
            "sso": "true" if face and face.oidc_enabled else "false",
            "base": html.escape(base),
            "nonce": nonce,
        }
        # Colours are validated `#rrggbb` by tenancy; the logo is an https URL (img-src https:).
        csp = (
            "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' https: data:; "
            f"style-src 'self' 'nonce-{nonce}'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        )
        return web.Response(
            text=self._shell.substitute(values),
            content_type="text/html",
            headers={"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff"},
        )

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = ASSETS / "static" / name
        if "/" in name or path.suffix not in STATIC_TYPES or not path.is_file():
            raise web.HTTPNotFound()
        return web.Response(
            body=path.read_bytes(),
            content_type=STATIC_TYPES[path.suffix],
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    # -- sessions ---------------------------------------------------------------------------

    async def sign_in(self, request: web.Request) -> web.StreamResponse:
        """POST {slug, api_key} or {slug, email, password, totp_code}: a session cookie for that
        tenant's portal, if the key (or the person) is its own."""
        try:
            data = await self.people.json_body(request)
            if "api_key" not in data:
                return await self.people.password(request, data)
        except GatewayError as exc:
            return error_response(exc.error)
        except ApiError as exc:
            return error_response(http_errors.error(exc.code, exc.message))
        slug, api_key = str(data.get("slug", "")), str(data.get("api_key", "")).strip()
        if not api_key.startswith("mvs_"):
            return error_response(
                http_errors.error(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "not an API key",
                    ("api_key", "an API key starts with mvs_"),
                )
            )
        try:
            face = await self.lookup(("slug", slug)) if slug else None
            token = await self.api.upstreams.access_token(api_key)
            principal = self.api.verifier.verify(token)
        except GatewayError as exc:
            return error_response(exc.error)
        except grpc.aio.AioRpcError as exc:
            return error_response(http_errors.from_rpc_error(exc))
        except ApiError as exc:
            return error_response(http_errors.error(exc.code, exc.message))
        if face is not None and principal.tenant_id != face.tenant_id and not principal.is_platform_admin:
            # A key of another tenant opens nothing here (and says no more than that).
            return error_response(
                http_errors.error(grpc.StatusCode.PERMISSION_DENIED, "this API key is not for this portal")
            )
        session = self.api.sealer.open_session(api_key, face.slug if face else "")
        response = web.json_response(self.describe(session.tenant_slug, principal.tenant_id, principal.roles))
        self.set_cookies(response, self.api.sealer.seal(session), session.csrf)
        return response

    def set_cookies(self, response: web.StreamResponse, sealed: str, csrf: str) -> None:
        ttl = self.api.sealer.ttl_seconds
        response.set_cookie(
            SESSION_COOKIE,
            sealed,
            max_age=ttl,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.secure_cookies,
        )
        # Readable by the portal's script, which echoes it in X-CSRF-Token (double submit).
        response.set_cookie(
            CSRF_COOKIE,
            csrf,
            max_age=ttl,
            path="/",
            httponly=False,
            samesite="Strict",
            secure=self.secure_cookies,
        )

    @staticmethod
    def describe(slug: str, tenant_id: str, roles: frozenset[object]) -> dict[str, object]:
        return {
            "slug": slug,
            "tenant_id": tenant_id,
            "roles": sorted(str(getattr(r, "value", r)) for r in roles),
        }

    async def me(self, request: web.Request) -> web.StreamResponse:
        """Who the session cookie belongs to (the script's first call); 401 when there is none."""
        try:
            caller = await self.api.caller(request)
        except GatewayError as exc:
            return error_response(exc.error)
        if caller is None or caller.session is None:
            return error_response(http_errors.error(grpc.StatusCode.UNAUTHENTICATED, "not signed in"))
        return web.json_response(
            self.describe(caller.session.tenant_slug, caller.principal.tenant_id, caller.principal.roles)
        )

    async def sign_out(self, request: web.Request) -> web.StreamResponse:
        session = self.api.session_of(request)
        if session is not None:
            self.api.upstreams.forget(session.credential)
            try:
                await self.people.end(session)
            except GatewayError as exc:
                if exc.error.http_status != 401:  # already ended: signing out is done anyway
                    return error_response(exc.error)
        response = web.json_response({})
        response.del_cookie(SESSION_COOKIE, path="/")
        response.del_cookie(CSRF_COOKIE, path="/")
        return response

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.page)
        app.router.add_get("/t/{slug}/", self.page)
        app.router.add_get("/portal/static/{name}", self.static)
        app.router.add_post("/portal/session", self.sign_in)
        app.router.add_get("/portal/session", self.me)
        app.router.add_delete("/portal/session", self.sign_out)
        self.people.add_routes(app)
