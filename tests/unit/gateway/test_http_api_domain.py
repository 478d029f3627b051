"""The gateway's pure rules: routes and OpenAPI from the protos, the HTTP error model, the
per-tenant cache and sealed sessions."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2
from openapi_spec_validator import validate

from mevaas_gateway.domain import http_errors
from mevaas_gateway.domain.cache import ResponseCache
from mevaas_gateway.domain.openapi import build_document
from mevaas_gateway.server import api_modules, api_routes
from mevaas_gateway.sessions import SessionSealer


def test_every_rpc_of_every_service_has_a_route() -> None:
    routes = api_routes()
    expected = {
        f"/v1/{service.full_name}/{method.name}"
        for module in api_modules()
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
        # Streams (WatchProtectionAlerts) are not transcoded: routes_from serves unary RPCs.
        if not (method.server_streaming or method.client_streaming)
    }
    assert expected and set(routes) == expected
    assert routes["/v1/mevaas.portfolio.v1.PortfolioService/GetPositions"].upstream == "analytics"
    assert routes["/v1/mevaas.risk.v1.RiskService/SetKillSwitch"].read_only is False
    assert routes["/v1/mevaas.tenancy.v1.AuthService/WhoAmI"].cacheable is False


def test_openapi_document_validates_and_lists_every_rpc() -> None:
    routes = api_routes()
    document = build_document(routes.values(), title="MEVaaS API", version="v1")
    validate(document)
    assert set(document["paths"]) == set(routes)
    schema = document["components"]["schemas"]["mevaas.strategy.v1.CreateStrategyRequest"]
    assert schema["type"] == "object" and schema["properties"]


def test_field_violations_survive_as_json() -> None:
    bad = error_details_pb2.BadRequest()
    bad.field_violations.add(field="name", description="is required")
    status = status_pb2.Status(code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message="invalid")
    status.details.add().Pack(bad)
    error = http_errors.from_status(status)
    assert error.http_status == 400
    assert error.body["status"] == "INVALID_ARGUMENT"
    assert error.body["details"][0]["fieldViolations"] == [{"field": "name", "description": "is required"}]


def test_rate_limit_is_429_with_retry_after_rounded_up() -> None:
    error = http_errors.rate_limited("rate limit of 5 calls/s exceeded", 1.2)
    assert error.http_status == 429
    assert error.headers["Retry-After"] == "2"


def test_cache_is_per_tenant_and_role_and_drops_on_events() -> None:
    now = [0.0]
    cache = ResponseCache(ttl_seconds=5, clock=lambda: now[0])
    key_a = cache.key("tenant-a", "strategy", ["viewer"], "/v1/x/ListStrategies", b"")
    key_b = cache.key("tenant-b", "strategy", ["viewer"], "/v1/x/ListStrategies", b"")
    key_a_admin = cache.key("tenant-a", "strategy", ["admin"], "/v1/x/ListStrategies", b"")
    cache.put(key_a, b"a", cache.generation(key_a))
    assert cache.get(key_a) == b"a"
    assert cache.get(key_b) is None and cache.get(key_a_admin) is None
    cache.on_event("opp.tenant-b.s1", "_platform")
    assert cache.get(key_a) == b"a"
    cache.on_event("opp.tenant-a.s1", "_platform")
    assert cache.get(key_a) is None
    now[0] = 10.0
    cache.put(key_a, b"a2", cache.generation(key_a))
    now[0] = 16.0
    assert cache.get(key_a) is None  # past the TTL


def test_a_read_started_before_an_invalidation_is_not_stored() -> None:
    cache = ResponseCache(ttl_seconds=5)
    key = cache.key("t", "risk", ["owner"], "/v1/x/GetLimits", b"")
    generation = cache.generation(key)
    cache.on_event("risk.t.breach", "_platform")
    cache.put(key, b"stale", generation)
    assert cache.get(key) is None


def test_sealed_session_round_trips_and_rejects_tampering() -> None:
    sealer = SessionSealer(b"k" * 32, ttl_seconds=60)
    session = sealer.open_session("mvs_id_secret", "acme", now=1000.0)
    sealed = sealer.seal(session)
    assert "mvs_id_secret" not in sealed
    assert sealer.unseal(sealed, now=1001.0) == session
    assert sealer.unseal(sealed, now=2000.0) is None
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    assert sealer.unseal(tampered, now=1001.0) is None
