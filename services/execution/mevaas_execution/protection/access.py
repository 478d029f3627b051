"""Who is calling the Protect RPC: the tenant's API key (in the URL path or a header), exchanged
once at tenancy's public AuthService for an access token (as any client does), verified locally
like every gRPC call's, cached until shortly before it expires, and checked against the
revocation feed on every call (a revoked key stops working at once).

Tenancy limits ExchangeApiKey per caller address, and here that address is this process's, the
same for every client of the Protect RPC: so that one client sending made-up keys cannot use it
all up and lock every other client's new keys out, each client address gets its own small budget
of checks of keys not seen before, and a key tenancy refused is answered from memory for a while."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from mevaas.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc
from mevaas_core.auth import Principal, TokenVerifier
from mevaas_core.errors import ApiError, ResourceExhausted, Unauthenticated, Unavailable
from mevaas_core.grpckit.channel import client_channel
from mevaas_core.grpckit.ratelimit import TenantRateLimiter
from mevaas_core.revocation import RevocationSet

log = logging.getLogger(__name__)

REFRESH_MARGIN_SECONDS = 60
EXCHANGE_TIMEOUT_SECONDS = 10.0
TENANCY_UNAVAILABLE = "the tenancy service that checks API keys is unavailable; retry later"
# A client needs one key, a few at most: well under tenancy's 20/s (burst 40) for all clients.
NEW_KEYS_PER_SECOND = 2.0
NEW_KEYS_BURST = 10
REFUSED_KEY_SECONDS = 30.0
MAX_REFUSED_KEYS = 10_000


@dataclass(frozen=True, slots=True)
class _Token:
    access_token: str
    expires_at: float


def _fingerprint(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class ApiKeyAccess:
    def __init__(
        self,
        tenancy_address: str,
        verifier: TokenVerifier,
        revocations: RevocationSet,
        *,
        new_keys_per_second: float = NEW_KEYS_PER_SECOND,
        new_keys_burst: int = NEW_KEYS_BURST,
        tls_ca_file: str = "",
    ) -> None:
        self._address = tenancy_address
        self._tls_ca_file = tls_ca_file
        self._verifier = verifier
        self._revocations = revocations
        self._channel: grpc.aio.Channel | None = None
        self._tokens: dict[str, _Token] = {}
        self._exchanges: dict[str, asyncio.Future[_Token]] = {}
        self._new_keys = TenantRateLimiter()
        self._new_keys_rate = new_keys_per_second
        self._new_keys_burst = new_keys_burst
        # Keys tenancy refused: fingerprint -> (until, the refusal).
        self._refused: dict[str, tuple[float, str]] = {}

    async def principal(self, api_key: str, client: str = "") -> Principal:
        """The caller with ``api_key``, calling from address ``client``."""
        if not api_key:
            raise Unauthenticated("an API key is required: /rpc/<chain id>/<API key> or the X-API-Key header")
        principal = self._verifier.verify((await self._token(api_key, client)).access_token)
        kind = self._revocations.revoked_by(principal)
        if kind is not None:
            self._tokens.pop(_fingerprint(api_key), None)
            raise Unauthenticated(f"credential revoked ({kind})")
        return principal

    async def _token(self, api_key: str, client: str) -> _Token:
        fingerprint = _fingerprint(api_key)
        cached = self._tokens.get(fingerprint)
        if cached is not None and time.time() < cached.expires_at - REFRESH_MARGIN_SECONDS:
            return cached
        refused = self._refused.get(fingerprint)
        if refused is not None and time.monotonic() < refused[0]:
            raise Unauthenticated(refused[1])
        # A token in its last minute is refreshed, but while it lasts it still serves when the
        # refresh cannot be made now (throttled, tenancy down).
        usable = cached if cached is not None and time.time() < cached.expires_at else None
        pending = self._exchanges.get(fingerprint)
        if pending is None:
            wait = self._new_keys.try_acquire(f"client:{client}", self._new_keys_rate, self._new_keys_burst)
            if wait > 0:
                if usable is not None:
                    return usable
                raise ResourceExhausted(
                    f"rate limit of {self._new_keys_rate:g} new API keys/s from this address exceeded", wait
                )
            pending = asyncio.ensure_future(self._exchange(api_key))
            self._exchanges[fingerprint] = pending
            pending.add_done_callback(lambda _: self._exchanges.pop(fingerprint, None))
        try:
            token = await asyncio.shield(pending)
        except Unauthenticated as exc:
            self._remember_refusal(fingerprint, exc.message)
            raise
        except (Unavailable, ResourceExhausted):
            if usable is not None:
                return usable
            raise
        self._tokens[fingerprint] = token
        return token

    def _remember_refusal(self, fingerprint: str, message: str) -> None:
        now = time.monotonic()
        if len(self._refused) >= MAX_REFUSED_KEYS:
            self._refused = {k: v for k, v in self._refused.items() if v[0] > now}
            if len(self._refused) >= MAX_REFUSED_KEYS:
                self._refused.clear()  # a flood of made-up keys: the per-address budget holds it
        self._refused[fingerprint] = (now + REFUSED_KEY_SECONDS, message)

    async def _exchange(self, api_key: str) -> _Token:
        if not self._address:
            raise Unauthenticated("this Protect RPC has no tenancy service to check API keys with")
        if self._channel is None:
            self._channel = client_channel(self._address, ca_file=self._tls_ca_file)
        stub = tenancy_pb2_grpc.AuthServiceStub(self._channel)
        try:
            reply = await stub.ExchangeApiKey(
                tenancy_pb2.ExchangeApiKeyRequest(api_key=api_key), timeout=EXCHANGE_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as exc:
            raise _refusal(exc) from None
        return _Token(reply.access_token, float(reply.expires_at.seconds))

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None


def _refusal(exc: grpc.aio.AioRpcError) -> ApiError:
    """Tenancy's answer as the domain error it means here: the key is refused, the caller is
    rate limited (after tenancy's RetryInfo), or checking keys is not possible right now; the Protect
    RPC's error table (failures.py) turns each into what the client sees."""
    code = exc.code()
    if code in (
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
    ):
        return Unauthenticated(f"API key refused: {exc.details()}")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ResourceExhausted(f"API key checks are rate limited: {exc.details()}", _retry_delay(exc))
    # UNAVAILABLE, DEADLINE_EXCEEDED (tenancy down, unreachable or too slow) and tenancy's own
    # INTERNAL alike: nothing the caller did, so retry later; tenancy's text stays in the log.
    log.warning("API key exchange failed: %s %s", code.name, exc.details())
    return Unavailable(TENANCY_UNAVAILABLE)


def _retry_delay(exc: grpc.aio.AioRpcError) -> float:
    """Seconds from the RetryInfo in the status details tenancy sent, else one."""
    metadata: Any = exc.trailing_metadata() or ()
    for key, value in metadata:
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        for detail in status_pb2.Status.FromString(value).details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return 1.0
