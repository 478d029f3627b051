"""Gateway wiring: the routes from the protos, the HTTP server (API, OpenAPI, live events and
the portal), the upstream channels and the cache's invalidation feed."""

from __future__ import annotations

import json
from importlib import import_module
from types import ModuleType
from typing import Any

from aiohttp import web
from pydantic import model_validator

from mevaas_core.config import ServiceSettings
from mevaas_core.grpckit.ratelimit import TenantRateLimiter
from mevaas_core.runtime import ServiceRuntime, main
from mevaas_core.service import ServiceSpec
from mevaas_gateway.api import HttpApi
from mevaas_gateway.domain.cache import ResponseCache
from mevaas_gateway.domain.openapi import build_document
from mevaas_gateway.domain.routes import Route, routes_from
from mevaas_gateway.events import LiveEvents, watch_invalidations
from mevaas_gateway.portal import Portal
from mevaas_gateway.sessions import SessionSealer
from mevaas_gateway.upstream import Upstreams

# The v1 API: every service package the protos define (events.v1 and common.v1 have none).
API_MODULES = (
    "mevaas.tenancy.v1.tenancy_pb2",
    "mevaas.strategy.v1.strategy_pb2",
    "mevaas.risk.v1.risk_pb2",
    "mevaas.execution.v1.execution_pb2",
    "mevaas.analytics.v1.analytics_pb2",
    "mevaas.portfolio.v1.portfolio_pb2",
)
# Proto packages served by a service of another name.
UPSTREAM_OVERRIDES = {"mevaas.portfolio.v1": "analytics"}
API_VERSION = "v1"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class GatewaySettings(ServiceSettings):
    service_name: str = "gateway"
    http_host: str = "127.0.0.1"
    # 0 = any free port (the local fleet); the chart sets a fixed one.
    http_port: int = 0
    # JSON object: fleet service name -> gRPC address ("default" for one address for all).
    upstreams: str = "{}"
    # 32 random bytes, base64: seals portal session cookies (all replicas share it).
    gateway_session_key: str
    session_ttl_seconds: int = 12 * 3600
    # Replies of read RPCs are cached at most this long (and dropped earlier by events).
    cache_ttl_seconds: float = 5.0
    # The Secure flag on the portal's cookies: on by default, so a session cookie never travels
    # over plain HTTP. Only a gateway bound to loopback (`mevaas up`: http://127.0.0.1) may turn it
    # off; anywhere else TLS is in front of it, and turning it off is refused at start.
    secure_cookies: bool = True
    # Comma-separated hostnames of the shared domain (never looked up as a tenant's custom domain).
    portal_shared_hosts: str = "localhost,127.0.0.1"

    @model_validator(mode="after")
    def _secure_off_loopback(self) -> GatewaySettings:
        if not self.secure_cookies and self.http_host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"SECURE_COOKIES=false is only allowed with a loopback HTTP_HOST "
                f"({', '.join(sorted(LOOPBACK_HOSTS))}), not {self.http_host!r}: serve the portal over "
                "TLS and keep Secure cookies"
            )
        return self

    def upstream_addresses(self) -> dict[str, str]:
        data: Any = json.loads(self.upstreams or "{}")
        return {str(k): str(v) for k, v in data.items()}


def api_modules() -> list[ModuleType]:
    return [import_module(name) for name in API_MODULES]


def api_routes() -> dict[str, Route]:
    return routes_from(api_modules(), UPSTREAM_OVERRIDES)


class GatewayRuntime(ServiceRuntime[GatewaySettings]):
    name = "gateway"
    uses_database = False

    def __init__(self, settings: GatewaySettings) -> None:
        super().__init__(settings)
        self.http_port = 0
        self.api: HttpApi | None = None

    async def setup(self) -> None:
        routes = api_routes()
        upstreams = Upstreams(self.settings.upstream_addresses(), ca_file=self.settings.grpc_tls_ca_file)
        cache = ResponseCache(self.settings.cache_ttl_seconds)
        sealer = SessionSealer.from_base64(
            self.settings.gateway_session_key, self.settings.session_ttl_seconds
        )
        api = HttpApi(routes, upstreams, self.verifier(), sealer, cache, TenantRateLimiter())
        self.api = api
        app = web.Application()
        document = build_document(routes.values(), title="MEVaaS API", version=API_VERSION)

        async def openapi(_: web.Request) -> web.Response:
            return web.json_response(document)

        async def healthz(_: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        app.router.add_get("/openapi.json", openapi)
        app.router.add_get("/healthz", healthz)
        live = LiveEvents(api, self.bus.nc)
        app.router.add_get("/v1/events/{stream}", live.handle)
        api.add_routes(app)
        shared = frozenset(
            h.strip().lower() for h in self.settings.portal_shared_hosts.split(",") if h.strip()
        )
        Portal(api, secure_cookies=self.settings.secure_cookies, shared_hosts=shared).add_routes(app)
        subscriptions = await watch_invalidations(self.bus.nc, cache)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.settings.shutdown_grace_seconds)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.http_host, self.settings.http_port)
        await site.start()
        server: Any = site._server
        self.http_port = int(server.sockets[0].getsockname()[1])

        async def stop() -> None:
            for subscription in subscriptions:
                await subscription.unsubscribe()
            await runner.cleanup()
            await upstreams.close()

        self.on_stop(stop)


SERVICE = ServiceSpec(
    name="gateway",
    module="mevaas_gateway",
    order=90,  # after the services it calls
    needs=("GATEWAY_SESSION_KEY",),
)


def run() -> None:
    main(GatewayRuntime, GatewaySettings)
