"""Calls into the services' gRPC APIs: one channel per upstream, raw bytes in and out (the
gateway never re-implements a handler; auth, RBAC, rate limits and validation are the services'),
and the API-key (or user session) -> access-token exchange, cached per credential until shortly before expiry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc

from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_core.grpckit.channel import client_channel
from mevaas_gateway.sessions import credential_fingerprint

REFRESH_MARGIN_SECONDS = 60
EXCHANGE_PATH = "/mevaas.tenancy.v1.AuthService/ExchangeApiKey"
EXCHANGE_SESSION_PATH = "/mevaas.tenancy.v1.SignInService/ExchangeSession"
# A person's session token (SignInService) rather than an API key.
USER_SESSION_PREFIX = "mvu_"
CALL_TIMEOUT_SECONDS = 30.0
FORWARDED_HEADERS = ("traceparent", "tracestate")


def _identity(data: bytes) -> bytes:
    return data


@dataclass(frozen=True, slots=True)
class Token:
    access_token: str
    expires_at: float


class Upstreams:
    def __init__(self, addresses: Mapping[str, str], *, ca_file: str = "") -> None:
        """``ca_file``: the CA the services' TLS certificates chain to (plaintext channels without)."""
        self._addresses = dict(addresses)
        self._ca_file = ca_file
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._tokens: dict[str, Token] = {}
        self._exchanges: dict[str, asyncio.Future[Token]] = {}

    def address(self, upstream: str) -> str:
        address = self._addresses.get(upstream) or self._addresses.get("default")
        if not address:
            raise LookupError(f"no address configured for the {upstream} service")
        return address

    def channel(self, upstream: str) -> grpc.aio.Channel:
        if upstream not in self._channels:
            self._channels[upstream] = client_channel(self.address(upstream), ca_file=self._ca_file)
        return self._channels[upstream]

    async def call(
        self, upstream: str, grpc_path: str, request: bytes, metadata: Sequence[tuple[str, str]]
    ) -> bytes:
        """One unary call with the caller's metadata; raises grpc.aio.AioRpcError as the service did."""
        method = self.channel(upstream).unary_unary(
            grpc_path, request_serializer=_identity, response_deserializer=_identity
        )
        reply: bytes = await method(request, metadata=tuple(metadata), timeout=CALL_TIMEOUT_SECONDS)
        return reply

    async def access_token(self, credential: str) -> str:
        """An access token for an API key (one exchange in flight per key, however many callers)."""
        fingerprint = credential_fingerprint(credential)
        cached = self._tokens.get(fingerprint)
        if cached is not None and time.time() < cached.expires_at - REFRESH_MARGIN_SECONDS:
            return cached.access_token
        pending = self._exchanges.get(fingerprint)
        if pending is None:
            pending = asyncio.ensure_future(self._exchange(credential))
            self._exchanges[fingerprint] = pending
            pending.add_done_callback(lambda _: self._exchanges.pop(fingerprint, None))
        token = await asyncio.shield(pending)
        self._tokens[fingerprint] = token
        return token.access_token

    async def _exchange(self, credential: str) -> Token:
        if credential.startswith(USER_SESSION_PREFIX):
            message = tenancy_pb2.ExchangeSessionRequest(session_token=credential).SerializeToString()
            session = tenancy_pb2.ExchangeSessionResponse.FromString(
                await self.call("tenancy", EXCHANGE_SESSION_PATH, message, ())
            )
            return Token(session.access_token, float(session.expires_at.seconds))
        request = tenancy_pb2.ExchangeApiKeyRequest(api_key=credential).SerializeToString()
        raw = await self.call("tenancy", EXCHANGE_PATH, request, ())
        reply = tenancy_pb2.ExchangeApiKeyResponse.FromString(raw)
        return Token(reply.access_token, float(reply.expires_at.seconds))

    def forget(self, credential: str) -> None:
        self._tokens.pop(credential_fingerprint(credential), None)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()
