"""`MevaasClient`: one object for the whole platform API.

It exchanges the API key for a short-lived access token on first use and refreshes it before it
expires, attaching `authorization: Bearer` to every call. Each service may live at its own address
(the local fleet) or all behind one (an ingress); `ClientConfig` says which.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from mevaas.analytics.v1 import analytics_pb2_grpc
from mevaas.execution.v1 import execution_pb2_grpc
from mevaas.portfolio.v1 import portfolio_pb2_grpc
from mevaas.risk.v1 import risk_pb2_grpc
from mevaas.strategy.v1 import strategy_pb2_grpc
from mevaas.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc
from mevaas_sdk.config import ConfigError, Overrides, resolve

REFRESH_MARGIN_SECONDS = 60


@dataclass(frozen=True)
class ClientConfig:
    endpoints: dict[str, str] = field(default_factory=dict)
    api_key: str = ""
    # Where the configuration was looked for, named when a setting is missing.
    looked_at: tuple[str, ...] = ()

    def endpoint(self, service: str) -> str:
        address = self.endpoints.get(service) or self.endpoints.get("default")
        if not address:
            where = "; ".join(self.looked_at) or "nowhere"
            raise ConfigError(
                f"no endpoint for the {service} service: pass --endpoint, set "
                f"MEVAAS_{service.upper()}_ENDPOINT or MEVAAS_ENDPOINT, add a profile to "
                f"~/.config/mevaas/config.toml, or run `make run` (it writes .data/mevaas.json); "
                f"looked at: {where}"
            )
        return address

    @classmethod
    def load(cls, overrides: Overrides | None = None) -> ClientConfig:
        """Flags > env (MEVAAS_*) > config file profile > make run's .data/mevaas.json (see config.py)."""
        resolved = resolve(overrides or Overrides())
        return cls(endpoints=resolved.endpoints(), api_key=resolved.api_key, looked_at=resolved.looked_at)


class _BearerAuth(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, token: Callable[[], Any]) -> None:
        self._token = token

    async def _details(self, client_call_details: Any) -> Any:
        token = await self._token()
        metadata = list(client_call_details.metadata or [])
        if token:
            metadata.append(("authorization", f"Bearer {token}"))
        return client_call_details._replace(metadata=metadata)

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(await self._details(client_call_details), request)


class _BearerAuthStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    """The same token on server-streaming calls (WatchProtectionAlerts); grpc files an
    interceptor under one call kind only, so it is a second object."""

    def __init__(self, auth: _BearerAuth) -> None:
        self._auth = auth

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(await self._auth._details(client_call_details), request)


class MevaasClient:
    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._token = ""
        self._token_expires_at = 0.0
        self.last_exchange: tenancy_pb2.ExchangeApiKeyResponse | None = None

    async def __aenter__(self) -> MevaasClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()

    def channel(self, service: str, *, authenticated: bool = True) -> grpc.aio.Channel:
        key = f"{service}:{'auth' if authenticated else 'anon'}"
        if key not in self._channels:
            auth = _BearerAuth(self.access_token)
            interceptors: list[Any] = [auth, _BearerAuthStream(auth)] if authenticated else []
            self._channels[key] = grpc.aio.insecure_channel(
                self.config.endpoint(service),
                interceptors=interceptors,
            )
        return self._channels[key]

    async def access_token(self) -> str:
        if not self.config.api_key:
            return ""
        if time.time() < self._token_expires_at - REFRESH_MARGIN_SECONDS:
            return self._token
        stub: tenancy_pb2_grpc.AuthServiceAsyncStub = tenancy_pb2_grpc.AuthServiceStub(
            self.channel("tenancy", authenticated=False)
        )
        response = await stub.ExchangeApiKey(tenancy_pb2.ExchangeApiKeyRequest(api_key=self.config.api_key))
        self._token = response.access_token
        self._token_expires_at = float(response.expires_at.seconds)
        self.last_exchange = response
        return self._token

    @property
    def tenants(self) -> tenancy_pb2_grpc.TenantServiceAsyncStub:
        return tenancy_pb2_grpc.TenantServiceStub(self.channel("tenancy"))

    @property
    def auth(self) -> tenancy_pb2_grpc.AuthServiceAsyncStub:
        return tenancy_pb2_grpc.AuthServiceStub(self.channel("tenancy"))

    @property
    def strategies(self) -> strategy_pb2_grpc.StrategyServiceAsyncStub:
        return strategy_pb2_grpc.StrategyServiceStub(self.channel("strategy"))

    @property
    def execution(self) -> execution_pb2_grpc.ExecutionServiceAsyncStub:
        return execution_pb2_grpc.ExecutionServiceStub(self.channel("execution"))

    @property
    def risk(self) -> risk_pb2_grpc.RiskServiceAsyncStub:
        return risk_pb2_grpc.RiskServiceStub(self.channel("risk"))

    @property
    def analytics(self) -> analytics_pb2_grpc.AnalyticsServiceAsyncStub:
        return analytics_pb2_grpc.AnalyticsServiceStub(self.channel("analytics"))

    @property
    def portfolio(self) -> portfolio_pb2_grpc.PortfolioServiceAsyncStub:
        """PortfolioService is served by the analytics service."""
        return portfolio_pb2_grpc.PortfolioServiceStub(self.channel("analytics"))

    def stub(self, service: str, stub_class: Callable[[grpc.aio.Channel], Any]) -> Any:
        """A stub of any service, e.g. `client.stub("strategy", StrategyServiceStub)`."""
        return stub_class(self.channel(service))
