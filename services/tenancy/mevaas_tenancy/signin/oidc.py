"""Talking to a tenant's OIDC provider over HTTP: its discovery document and JWKS (cached, the
JWKS fetched again when a token names a key it does not hold: key rotation), and the token
endpoint that redeems an authorization code with its PKCE verifier."""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import aiohttp

from mevaas_core.errors import Unauthenticated, Unavailable

TIMEOUT = aiohttp.ClientTimeout(total=10)
CACHE_SECONDS = 300.0
MAX_DOCUMENT_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Discovery:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


class OidcClient:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._discovery: dict[str, tuple[float, Discovery]] = {}
        self._jwks: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = asyncio.Lock()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._http().get(url, allow_redirects=False) as reply:
                if reply.status != 200:
                    raise Unavailable(f"the identity provider answered {reply.status} for {url}")
                data = await reply.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unavailable(f"the identity provider cannot be reached ({type(exc).__name__})") from None
        if not isinstance(data, dict):
            raise Unavailable(f"the identity provider sent no JSON object from {url}")
        return data

    async def discovery(self, issuer: str) -> Discovery:
        cached = self._discovery.get(issuer)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        data = await self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
        try:
            found = Discovery(
                issuer=str(data["issuer"]),
                authorization_endpoint=str(data["authorization_endpoint"]),
                token_endpoint=str(data["token_endpoint"]),
                jwks_uri=str(data["jwks_uri"]),
            )
        except KeyError as exc:
            raise Unavailable(f"the identity provider's discovery document lacks {exc}") from None
        if found.issuer != issuer:
            # OIDC Discovery 4.3: the document must be the configured issuer's own.
            raise Unavailable("the identity provider's discovery document names another issuer")
        self._discovery[issuer] = (time.monotonic() + CACHE_SECONDS, found)
        return found

    async def jwks(self, jwks_uri: str, *, kid: str) -> dict[str, Any]:
        """The provider's key set, fetched again when it does not hold `kid` (at most once per call)."""
        cached = self._jwks.get(jwks_uri)
        if cached is not None and cached[0] > time.monotonic() and _has_kid(cached[1], kid):
            return cached[1]
        async with self._lock:
            data = await self._get_json(jwks_uri)
        if not isinstance(data.get("keys"), list):
            raise Unavailable("the identity provider's JWKS has no keys")
        self._jwks[jwks_uri] = (time.monotonic() + CACHE_SECONDS, data)
        return data

    async def redeem(
        self,
        discovery: Discovery,
        *,
        code: str,
        code_verifier: str,
        redirect_uri: str,
        client_id: str,
        client_secret: str,
    ) -> str:
        """The ID token for an authorization code; UNAUTHENTICATED when the provider refuses it."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
            "client_id": client_id,
        }
        headers = {"Authorization": basic_auth(client_id, client_secret)} if client_secret else {}
        try:
            async with self._http().post(
                discovery.token_endpoint, data=form, headers=headers, allow_redirects=False
            ) as reply:
                data = await reply.json(content_type=None)
                status = reply.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unavailable(f"the identity provider cannot be reached ({type(exc).__name__})") from None
        if status != 200 or not isinstance(data, dict):
            error = data.get("error", "") if isinstance(data, dict) else ""
            raise Unauthenticated(f"the identity provider refused the code ({error or status})")
        token = data.get("id_token")
        if not isinstance(token, str) or not token:
            raise Unauthenticated("the identity provider sent no ID token")
        return token


def basic_auth(client_id: str, client_secret: str) -> str:
    """client_secret_basic (RFC 6749 section 2.3.1: both parts form-encoded first)."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def _has_kid(jwks: dict[str, Any], kid: str) -> bool:
    return not kid or any(isinstance(k, dict) and k.get("kid") == kid for k in jwks.get("keys", []))
