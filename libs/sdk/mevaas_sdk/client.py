"""`MevaasClient`: one object for the whole platform API.

It exchanges the API key for a short-lived access token on first use and refreshes it before it
expires, attaching `authorization: Bearer` to every call. Each service may live at its own address
(the local fleet) or all behind one (an ingress); `ClientConfig` says which.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from mevaas.analytics.v1 import analytics_pb2_grpc
from mevaas.execution.v1 import execution_pb2_grpc
from mevaas.portfolio.v1 import portfolio_pb2_grpc
from mevaas.risk.v1 import risk_pb2_grpc
from mevaas.strategy.v1 import strategy_pb2_grpc
from mevaas.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc

SERVICES = ("tenancy", "strategy", "risk", "execution", "analytics")
DEFAULT_CONFIG_PATHS = (Path(".data") / "mevaas.json", Path.home() / ".config" / "mevaas" / "config.json")
REFRESH_MARGIN_SECONDS = 60


@dataclass(frozen=True)
class ClientConfig:
    endpoints: dict[str, str] = field(default_factory=dict)
    api_key: str = ""

    def endpoint(self, service: str) -> str:
        address = self.endpoints.get(service) or self.endpoints.get("default")
        if not address:
            raise LookupError(
                f"no endpoint for the {service} service: set MEVAAS_{service.upper()}_ENDPOINT or MEVAAS_ENDPOINT"
            )
        return address

    @classmethod
    def load(cls, path: Path | None = None) -> ClientConfig:
        """Env wins over the config file (`MEVAAS_CONFIG`, then .data/mevaas.json, then ~/.config)."""
        data: dict[str, Any] = {}
        candidates = [Path(os.environ["MEVAAS_CONFIG"])] if "MEVAAS_CONFIG" in os.environ else []
        for candidate in [*([path] if path else []), *candidates, *DEFAULT_CONFIG_PATHS]:
            if candidate.is_file():
                data = json.loads(candidate.read_text())
                break
        endpoints = dict(data.get("endpoints", {}))
        if "MEVAAS_ENDPOINT" in os.environ:
            endpoints["default"] = os.environ["MEVAAS_ENDPOINT"]
        for service in SERVICES:
            value = os.environ.get(f"MEVAAS_{service.upper()}_ENDPOINT")
            if value:
                endpoints[service] = value
        return cls(endpoints=endpoints, api_key=os.environ.get("MEVAAS_API_KEY", data.get("api_key", "")))


class _BearerAuth(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, token: Callable[[], Any]) -> None:
        self._token = token

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        token = await self._token()
        metadata = list(client_call_details.metadata or [])
        if token:
            metadata.append(("authorization", f"Bearer {token}"))
        details = client_call_details._replace(metadata=metadata)
        return await continuation(details, request)


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
            interceptors = [_BearerAuth(self.access_token)] if authenticated else []
            self._channels[key] = grpc.aio.insecure_channel(
                self.config.endpoint(service),
                interceptors=interceptors,  # type: ignore[arg-type]
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


def describe_error(error: grpc.aio.AioRpcError) -> str:
    """One readable line from a gRPC error, including field violations from rich details."""
    line = f"{error.code().name}: {error.details()}"
    metadata: Any = error.trailing_metadata() or ()
    for key, value in metadata:
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                fields = ", ".join(f"{v.field} ({v.description})" for v in bad.field_violations)
                line = f"{error.code().name}: invalid {fields}"
    return line
